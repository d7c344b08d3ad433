r"""CustomNeuronNode: the paper's approximation neuron as a SpikingJelly node."""

from __future__ import annotations

import math

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor, nn

from . import _checks
from ._two_path_node import TwoPathNode
from .functional.custom_neuron import (
    custom_neuron_multi_step,
    custom_neuron_step,
    custom_neuron_thresholds,
    step_indices,
)
from .functional.staircase import Staircase, constant_input_staircase, evaluate_staircase

__all__ = ["CustomNeuronNode"]


class CustomNeuronNode(TwoPathNode):
    r"""The CustomNeuron of BrainTransformers (sections 2.5.1, 2.8.1, eq. 14).

    A neuron built for function approximation, every parameter learnable:

    $$
        H_t = \lambda V_{t-1} + X_t, \qquad
        \theta_t = \theta_{base} + \alpha t + \delta_t, \\
        P_t = [H_t \ge \theta_t], \quad N_t = [H_t \le -\theta_t], \qquad
        O_t = A^+_t P_t - A^-_t N_t, \\
        V_t = H_t - \theta_t (P_t - N_t) \ \text{(reset=True)} \quad\text{or}\quad V_t = H_t.
    $$
    ``t`` counts steps since the last reset. The output ``O_t`` is a positive
    spike of amplitude $A^+_t$, a negative spike of amplitude
    $-A^-_t$, or 0. With ``per_step=True`` the threshold offsets
    $\delta_t$ and the amplitudes are separate learnable values for each
    of the ``T`` steps (the few-spike neuron idea); otherwise
    $\delta_t = 0$ and the amplitudes are shared by all steps.

    **Two paths.** ``path="spike"`` simulates: input ``[N, *]`` (step mode
    ``"s"``) or ``[T, N, *]`` (``"m"``), output ``O`` of the same shape.
    ``path="count"`` treats its input ``x`` (``[N, *]``) as constant over
    ``T`` steps and returns $\sum_t O_t$ directly: the output is a
    staircase in ``x`` whose breakpoints are found once per parameter set
    (`constant_input_staircase`) and
    evaluated by a sorted search. It equals the spike path exactly.
    Count-path gradients are exact for the amplitudes and a straight-through
    estimate for ``x``; thresholds and decay are trained on the spike path.

    Args:
        theta_base: base threshold (every $\theta_t$ must stay > 0). Default 1.0.
        alpha: threshold change per step. Default 0.0.
        decay: membrane decay $\lambda \ge 0$. Default 1.0 (no leak).
        amp_pos: amplitude $A^+$ of a positive spike. Default 1.0.
        amp_neg: amplitude $A^-$ of a negative spike (output $-A^-$). Default 1.0.
        reset: subtract $\theta_t$ after a spike (eq. 14). Default True.
        T: number of time steps; required for ``path="count"`` and ``per_step=True``.
        per_step: learn one threshold offset and one pair of amplitudes per step.
        path: ``"spike"`` or ``"count"``.
        learnable: make the parameters ``nn.Parameter`` s. Default True.
        surrogate_function: SpikingJelly surrogate. Default ``surrogate.Sigmoid()``.
        detach_reset: as in `EIIFNode`.
        step_mode: as in `EIIFNode`.
        store_v_seq: as in `EIIFNode`.
        check_finite: as in `EIIFNode`.

    Example:
        >>> import torch
        >>> from bt_neurons import CustomNeuronNode
        >>> node = CustomNeuronNode(theta_base=1.0, amp_pos=0.25, T=8, path="count")
        >>> node(torch.tensor([0.5, 1.0, -3.0])).detach()  # 4 and 8 spikes of 0.25; 8 of -1
        tensor([ 1.,  2., -8.])
    """

    def __init__(
        self,
        theta_base: float = 1.0,
        alpha: float = 0.0,
        decay: float = 1.0,
        amp_pos: float = 1.0,
        amp_neg: float = 1.0,
        *,
        reset: bool = True,
        T: int | None = None,
        per_step: bool = False,
        path: str = "spike",
        learnable: bool = True,
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        detach_reset: bool = False,
        step_mode: str = "s",
        store_v_seq: bool = False,
        check_finite: bool = True,
    ) -> None:
        values = {}
        for name, val in (
            ("theta_base", theta_base),
            ("alpha", alpha),
            ("decay", decay),
            ("amp_pos", amp_pos),
            ("amp_neg", amp_neg),
        ):
            values[name] = _checks.check_number(name, val)  # one real number: TypeError for '0.5', True
        _checks.check_positive("theta_base", theta_base)
        _checks.check_nonnegative("decay", decay)
        for name in ("alpha", "amp_pos", "amp_neg"):
            if not math.isfinite(values[name]):
                raise ValueError(f"{name} must be finite, got {values[name]}")
        if T is not None:
            T = _checks.check_timesteps("T", T)
        _checks.check_choice("path", path, ("spike", "count"))
        _checks.check_choice("step_mode", step_mode, ("s", "m"))
        for name, flag in (
            ("reset", reset),
            ("per_step", per_step),
            ("learnable", learnable),
            ("detach_reset", detach_reset),
            ("store_v_seq", store_v_seq),
            ("check_finite", check_finite),
        ):
            _checks.check_bool(name, flag)
        if surrogate_function is not None:
            _checks.check_callable("surrogate_function", surrogate_function)
        if path == "count" and T is None:
            raise ValueError("T must be given for path='count' (the number of time steps)")
        if per_step and T is None:
            raise ValueError("T must be given for per_step=True (one value per step)")
        super().__init__(
            v_threshold=float(theta_base),
            v_reset=None,
            surrogate_function=surrogate_function if surrogate_function is not None else surrogate.Sigmoid(),
            detach_reset=bool(detach_reset),
            step_mode=step_mode,
            store_v_seq=bool(store_v_seq),
        )
        shape = (T,) if per_step else ()

        def make(value: float, shp: tuple[int, ...]) -> nn.Parameter:
            return nn.Parameter(torch.full(shp, float(value)), requires_grad=bool(learnable))

        self.theta_base = make(theta_base, ())
        self.alpha = make(alpha, ())
        self.decay = make(decay, ())
        self.amp_pos = make(amp_pos, shape)
        self.amp_neg = make(amp_neg, shape)
        self.offsets = make(0.0, (T,)) if per_step else None
        self._register_step_memory()
        self.reset_after_spike = bool(reset)
        self.T = T
        self.per_step = bool(per_step)
        self.path = path
        self.check_finite = bool(check_finite)
        self._staircase_cache: tuple[tuple, Staircase] | None = None
        self.register_load_state_dict_post_hook(TwoPathNode._forget_derived)

    def extra_repr(self) -> str:
        return (
            f"theta_base={self.theta_base.item():g}, alpha={self.alpha.item():g}, "
            f"decay={self.decay.item():g}, reset={self.reset_after_spike}, T={self.T}, "
            f"per_step={self.per_step}, path={self.path!r}, step_mode={self.step_mode!r}"
        )

    @property
    def step_limit(self) -> int | None:
        """``T`` with per-step parameters (a reset is needed after ``T`` steps), else None."""
        return self.T if self.per_step else None

    # --------------------------------------------------------------- helpers
    def thresholds(self, T: int, *, start: int | Tensor = 0, dtype: torch.dtype = torch.float32) -> Tensor:
        r"""$\theta_t$ for ``t = start .. start+T-1`` (shape ``[T]``), validated > 0 in eager mode.

        ``start`` is an int or the 0-d step memory ``t``.
        """
        if self.per_step and not _checks.tracing() and int(start) + T > self.T:
            raise ValueError(
                f"this neuron has per-step parameters for T={self.T} steps, "
                f"but step {int(start) + T - 1} was requested; call functional.reset_net(net) first"
            )
        offsets = self.offsets.to(dtype) if self.offsets is not None else None
        thr = custom_neuron_thresholds(
            T, self.theta_base.to(dtype), self.alpha.to(dtype), offsets, start=start
        )
        if not _checks.tracing() and not bool((thr.detach() > 0).all()):
            raise ValueError(
                "thresholds theta_t = theta_base + alpha * t (+ offsets) must stay > 0 for "
                f"every step, got min {thr.detach().min().item():g}"
            )
        return thr

    def amplitudes(
        self, T: int, *, start: int | Tensor = 0, dtype: torch.dtype = torch.float32
    ) -> tuple[Tensor, Tensor]:
        """``(A+, A-)`` for steps ``start .. start+T-1``, each of shape ``[T]``."""
        if self.per_step:
            steps = step_indices(T, start, self.amp_pos.device)
            return self.amp_pos.to(dtype)[steps], self.amp_neg.to(dtype)[steps]
        return self.amp_pos.to(dtype).expand(T), self.amp_neg.to(dtype).expand(T)

    def _check_parameters(self) -> None:
        if self.decay.requires_grad:
            _checks.check_nonnegative("decay", self.decay)

    # ------------------------------------------------------------ spike path
    def step(
        self, x: Tensor, v: Tensor, t: int | Tensor, *, zero_reset: bool = False
    ) -> tuple[Tensor, Tensor]:
        """One spike-path step at step ``t`` from the membrane ``v``: ``(O_t, V_t)`` in ``v``'s dtype.

        ``zero_reset`` empties the membrane of a neuron that fired instead of
        the configured reset (snnTorch's ``reset_mechanism="zero"``, for the
        snnTorch face).
        """
        cdt = v.dtype
        theta = self.thresholds(1, start=t, dtype=cdt)[0]
        a_pos, a_neg = self.amplitudes(1, start=t, dtype=cdt)
        out, _, v = custom_neuron_step(
            x.to(cdt),
            v,
            theta,
            self.decay.to(cdt),
            a_pos[0],
            a_neg[0],
            self.surrogate_function,
            reset=self.reset_after_spike and not zero_reset,
            detach_reset=self.detach_reset,
            zero_reset=zero_reset,
        )
        return out, v

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        x_seq = inputs[0]
        v, t = states[0], states[1]
        cdt = v.dtype
        T = x_seq.shape[0]
        thresholds = self.thresholds(T, start=t, dtype=cdt)
        a_pos, a_neg = self.amplitudes(T, start=t, dtype=cdt)
        out_seq, _, v = custom_neuron_multi_step(
            x_seq.to(cdt),
            v,
            thresholds,
            self.decay.to(cdt),
            a_pos,
            a_neg,
            self.surrogate_function,
            reset=self.reset_after_spike,
            detach_reset=self.detach_reset,
        )
        return (out_seq.to(x_seq.dtype),), (v, t + T, *states[2:])

    # ------------------------------------------------------------ count path
    def _staircase_key(self) -> tuple:
        params = [self.theta_base, self.alpha, self.decay]
        if self.offsets is not None:
            params.append(self.offsets)
        return (self.theta_base.device, self.reset_after_spike) + tuple(
            (p._version, p.data_ptr(), tuple(p.detach().reshape(-1).tolist())) for p in params
        )

    def _build_staircase(self, T: int, dtype: torch.dtype) -> Staircase:
        thr = self.thresholds(T, dtype=dtype).detach().unsqueeze(0)
        return constant_input_staircase(
            thr, self.decay.detach().to(dtype).reshape(1), reset=self.reset_after_spike
        )

    def _count(self, x: Tensor, T: int) -> Tensor:
        """Exact staircase lookup; amplitudes weight each segment's spike pattern."""
        if self.per_step and T > self.T:
            raise ValueError(f"T must be <= {self.T} (the per-step parameters' length), got {T}")
        cdt = _checks.compute_dtype(x.dtype)
        st = self.staircase(T, cdt)
        a_pos, a_neg = self.amplitudes(T, dtype=cdt)
        pats = st.patterns[0].to(cdt)
        return evaluate_staircase(x.to(cdt), st, pats @ a_pos, pats @ a_neg).to(x.dtype)
