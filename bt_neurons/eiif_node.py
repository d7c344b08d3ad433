r"""EIIFNode: the EI_IF neuron as a SpikingJelly node."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor

from . import _checks
from ._parameters import learnable_set, register_tensor
from ._two_path_node import TwoPathNode
from .functional.eiif import eiif_count, eiif_multi_step, eiif_step, eiif_thresholds
from .functional.staircase import Staircase, constant_input_staircase, evaluate_staircase

__all__ = ["EIIFNode"]


class EIIFNode(TwoPathNode):
    r"""Excitatory-inhibitory integrate-and-fire neuron (BrainTransformers eq. 1).

    Signed spikes, an adaptive threshold and membrane attenuation. For step
    ``t`` counted from the last `reset` (``functional.reset_net``):

    $$
        H_t = V_{t-1} + X_t, \quad \theta_t = \theta_0 + \alpha t, \quad
        S_t = [H_t \ge \theta_t] - [H_t \le -\theta_t], \quad
        V_t = (1 - r)\,(H_t - \sigma\,\theta_t S_t)
    $$
    where $\sigma = 0$ by default (the paper: with ``r < 1`` the
    membrane is only attenuated, nothing is subtracted after a spike) and
    $\sigma = 1$ with ``soft_reset=True`` (subtract the threshold the
    spike crossed, then attenuate). ``r = 1`` (default) empties the membrane
    after every step. Firing is inclusive (``>=``), as in SpikingJelly.

    **Two paths.** ``path="spike"`` (default) simulates the neuron step by
    step: single-step input ``[N, *]`` or multi-step input ``[T, N, *]``,
    output spikes of the same shape in {-1, 0, +1}, gradients through
    ``surrogate_function``. ``path="count"`` treats its input ``x`` (``[N, *]``,
    any step mode) as a constant drive over ``T`` steps and returns the spike
    count ``sum_t S_t`` directly, without stepping; with ``r = 1`` it is the
    closed form `eiif_count` (for the
    defaults ``round(x)`` with halves away from zero, clipped to
    ``[-T, T]``), with ``r < 1`` an exact staircase lookup. Both paths give
    identical counts; the count path's gradient is a straight-through
    estimate.

    Args:
        theta_0: base threshold $\theta_0 > 0$. Default 0.5.
        alpha: threshold increase per step $\alpha \ge 0$. Default 1.0.
        r: attenuation rate in ``[0, 1]``. Default 1.0.
        soft_reset: subtract $\theta_t S_t$ before attenuating. Default False.
        T: number of time steps of the count path (required for ``path="count"``).
        path: ``"spike"`` or ``"count"``.
        learnable: ``True``, ``False`` or names among ``"theta_0", "alpha", "r"``
            to make ``nn.Parameter`` s. Default False.
        surrogate_function: SpikingJelly surrogate used on both thresholds.
            Default ``surrogate.Sigmoid()``.
        detach_reset: cut the gradient through the soft reset.
        step_mode: ``"s"`` or ``"m"``.
        store_v_seq: keep the membrane of every step in ``v_seq`` (step mode ``"m"``).
        check_finite: raise on NaN / Inf inputs (one reduction per call). Default True.

    Memories: ``v`` (membrane, float32 for half inputs) and ``t`` (steps since reset).

    Example:
        >>> import torch
        >>> from spikingjelly.activation_based import functional
        >>> from bt_neurons import EIIFNode
        >>> node = EIIFNode(step_mode="m")
        >>> x = torch.tensor([2.3, -0.7, 0.2])
        >>> node(x.expand(4, 3)).sum(0)
        tensor([ 2., -1.,  0.])
        >>> functional.reset_net(node)
        >>> EIIFNode(T=4, path="count")(x)
        tensor([ 2., -1.,  0.])
    """

    def __init__(
        self,
        theta_0: float = 0.5,
        alpha: float = 1.0,
        r: float = 1.0,
        *,
        soft_reset: bool = False,
        T: int | None = None,
        path: str = "spike",
        learnable: bool | Iterable[str] = False,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        check_finite: bool = True,
    ) -> None:
        for name, value in (("theta_0", theta_0), ("alpha", alpha), ("r", r)):
            _checks.check_number(name, value)  # one real number: TypeError for '0.5', True, None
        _checks.check_positive("theta_0", theta_0)
        _checks.check_nonnegative("alpha", alpha)
        _checks.check_unit_interval("r", r)
        if T is not None:
            T = _checks.check_timesteps("T", T)
        _checks.check_choice("path", path, ("spike", "count"))
        if path == "count" and T is None:
            raise ValueError("T must be given for path='count' (the number of time steps)")
        _checks.check_choice("step_mode", step_mode, ("s", "m"))
        for name, flag in (
            ("soft_reset", soft_reset),
            ("detach_reset", detach_reset),
            ("store_v_seq", store_v_seq),
            ("check_finite", check_finite),
        ):
            _checks.check_bool(name, flag)
        if surrogate_function is not None:
            _checks.check_callable("surrogate_function", surrogate_function)
        chosen = learnable_set("learnable", learnable, ("theta_0", "alpha", "r"))
        super().__init__(
            v_threshold=float(theta_0),
            v_reset=None,
            surrogate_function=surrogate_function if surrogate_function is not None else surrogate.Sigmoid(),
            detach_reset=bool(detach_reset),
            step_mode=step_mode,
            store_v_seq=bool(store_v_seq),
        )
        register_tensor(self, "theta_0", theta_0, "theta_0" in chosen)
        register_tensor(self, "alpha", alpha, "alpha" in chosen)
        register_tensor(self, "r", r, "r" in chosen)
        self._register_step_memory()
        self.soft_reset = bool(soft_reset)
        self.T = T
        self.path = path
        self.check_finite = bool(check_finite)
        self._staircase_cache: tuple[tuple, Staircase] | None = None
        self.register_load_state_dict_post_hook(TwoPathNode._forget_derived)
        self._r_is_one = "r" not in chosen and float(r) == 1.0

    def extra_repr(self) -> str:
        return (
            f"theta_0={self.theta_0.item():g}, alpha={self.alpha.item():g}, r={self.r.item():g}, "
            f"soft_reset={self.soft_reset}, T={self.T}, path={self.path!r}, step_mode={self.step_mode!r}"
        )

    # ------------------------------------------------------------------ checks
    def _check_parameters(self) -> None:
        if any(p.requires_grad for p in (self.theta_0, self.alpha, self.r)):
            _checks.check_positive("theta_0", self.theta_0)
            _checks.check_nonnegative("alpha", self.alpha)
            _checks.check_unit_interval("r", self.r)

    # -------------------------------------------------------------- spike path
    def step(
        self, x: Tensor, v: Tensor, t: int | Tensor, *, zero_reset: bool = False
    ) -> tuple[Tensor, Tensor]:
        """One spike-path step at step ``t`` from the membrane ``v``: ``(S_t, V_t)`` in ``v``'s dtype.

        ``zero_reset`` empties the membrane of a neuron that fired instead of
        the configured reset (snnTorch's ``reset_mechanism="zero"``, for the
        snnTorch face).
        """
        cdt = v.dtype
        steps = t.to(cdt) if isinstance(t, Tensor) else t  # theta_0 + alpha t, as eiif_thresholds computes it
        theta = self.theta_0.to(cdt) + self.alpha.to(cdt) * steps
        return eiif_step(
            x.to(cdt),
            v,
            theta,
            1 - self.r.to(cdt),
            self.surrogate_function,
            soft_reset=self.soft_reset and not zero_reset,
            detach_reset=self.detach_reset,
            zero_reset=zero_reset,
        )

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0]
        v, t = states[0], states[1]
        cdt = v.dtype
        T = x_seq.shape[0]
        thresholds = eiif_thresholds(T, self.theta_0, self.alpha, start=t, dtype=cdt, device=x_seq.device)
        spike_seq, v = eiif_multi_step(
            x_seq.to(cdt),
            v,
            thresholds,
            1 - self.r.to(cdt),
            self.surrogate_function,
            soft_reset=self.soft_reset,
            detach_reset=self.detach_reset,
        )
        return (spike_seq.to(x_seq.dtype),), (v, t + T, *states[2:])

    # -------------------------------------------------------------- count path
    def _staircase_key(self) -> tuple:
        return (self.theta_0.device, self.soft_reset) + tuple(
            (p._version, p.item()) for p in (self.theta_0, self.alpha, self.r)
        )

    def _build_staircase(self, T: int, dtype: torch.dtype) -> Staircase:
        thr = eiif_thresholds(T, self.theta_0, self.alpha, dtype=dtype, device=self.theta_0.device)
        keep = (1 - self.r.to(dtype)).reshape(1)
        return constant_input_staircase(thr.detach().unsqueeze(0), keep, reset=self.soft_reset)

    def _closed_form(self) -> bool:
        """Whether the count path is the closed form (``r = 1``, not learnable).

        Read from ``r`` in eager mode and remembered, so that a traced graph
        (``torch.compile``, ``torch.export``) takes the branch of the last
        eager call without reading a tensor.
        """
        if not _checks.tracing():
            self._r_is_one = not self.r.requires_grad and self.r.item() == 1.0
        return self._r_is_one

    def _count(self, x: Tensor, T: int) -> Tensor:
        """Closed form for ``r = 1``; exact staircase lookup otherwise."""
        if self._closed_form():
            return eiif_count(x, T, self.theta_0, self.alpha)
        cdt = _checks.compute_dtype(x.dtype)
        st = self.staircase(T, cdt)
        values = st.patterns[0].sum(-1).to(cdt)
        return evaluate_staircase(x.to(cdt), st, values, values).to(x.dtype)
