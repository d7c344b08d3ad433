"""EIIF: the EI_IF neuron as an snnTorch neuron."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import check_bool, check_number
from ..eiif_node import EIIFNode
from ._inclusive_spike import spike_function
from ._stateful import SnnTorchShell

__all__ = ["EIIF"]


class EIIF(SnnTorchShell):
    r"""EI_IF neuron for snnTorch networks (BrainTransformers eq. 1), an ``snntorch.Leaky``.

    $$
        U_t = \beta U_{t-1} + X_t, \quad \theta_t = \theta_0 + \alpha t, \quad
        S_t = [U_t \ge \theta_t] - [U_t \le -\theta_t]
    $$
    where $\beta = 1 - r$ is the fraction of the membrane kept from one
    step to the next (snnTorch's ``beta``; ``r = 1``, the paper's default,
    empties it after every step). After a spike, ``reset_mechanism="none"``
    (the paper's default) keeps the membrane, ``"subtract"`` subtracts the
    threshold the spike crossed, ``"zero"`` empties it; the reset happens in
    the step that fired (snnTorch's ``reset_delay=False``). ``t`` counts steps
    since the state was started. Spikes are in {-1, 0, +1}, times
    ``graded_spikes_factor``, and fire on ``>=`` (snnTorch's own neurons fire
    on ``>``); stepping this neuron ``T`` times gives bit-identical spikes to
    `EIIFNode`, whose parameters it holds in ``self.node``.

    Being an ``snntorch.Leaky``, it is reset by ``snntorch.utils.reset(net)``
    and trained by ``snntorch.backprop.BPTT`` / ``TBPTT``. Usage follows
    ``snntorch.Leaky``::

        eiif = EIIF()
        mem = eiif.reset_mem()  # or init_leaky() / init_eiif()
        for step in range(T):
            spk, mem = eiif(x[step], mem)

    Args:
        threshold: base threshold $\theta_0$ (> 0). Default 0.5.
        alpha: threshold increase per step (>= 0). Default 1.0.
        r: attenuation rate in [0, 1]. Default 1.0. Give ``r`` or ``beta``.
        beta: snnTorch's name for ``1 - r`` (in [0, 1]); default None (use ``r``).
        spike_grad: snnTorch surrogate (default ``snntorch.surrogate.atan()``).
        surrogate_disable: no surrogate gradient (a plain Heaviside), as in snnTorch.
        init_hidden: keep the state inside the module. Default False.
        inhibition: per sample, only the neuron with the largest charge fires (snnTorch's).
        learn_threshold: make $\theta_0$ learnable.
        learn_alpha: make $\alpha$ learnable.
        learn_r: make ``r`` learnable.
        learn_beta: snnTorch's name for ``learn_r``.
        reset_mechanism: ``"none"`` (paper), ``"subtract"`` or ``"zero"``.
        output: return ``(spk, mem)`` when ``init_hidden=True``.
        graded_spikes_factor: spike amplitude (snnTorch's). Default 1.0.
        learn_graded_spikes_factor: make it learnable.
        check_finite: raise on NaN / Inf inputs.
    """

    init_method = "init_eiif"

    def __init__(
        self,
        threshold: float = 0.5,
        alpha: float = 1.0,
        r: float | None = None,
        spike_grad: Callable[[Tensor], Tensor] | None = None,
        init_hidden: bool = False,
        output: bool = False,
        learn_threshold: bool = False,
        learn_alpha: bool = False,
        learn_r: bool = False,
        reset_mechanism: str = "none",
        check_finite: bool = True,
        *,
        beta: float | None = None,
        learn_beta: bool = False,
        surrogate_disable: bool = False,
        inhibition: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
    ) -> None:
        for name, flag in (
            ("learn_threshold", learn_threshold),
            ("learn_alpha", learn_alpha),
            ("learn_r", learn_r),
            ("learn_beta", learn_beta),
            ("surrogate_disable", surrogate_disable),
        ):
            check_bool(name, flag)
        if r is not None and beta is not None:
            raise ValueError(f"give r or beta (= 1 - r), not both: got r={r!r}, beta={beta!r}")
        if beta is not None:
            b = check_number("beta", beta)
            if not 0.0 <= b <= 1.0:
                raise ValueError(f"beta must lie in [0, 1] (it is 1 - r), got {b}")
            r = 1.0 - b
        learnable = [
            name
            for name, flag in (
                ("theta_0", learn_threshold),
                ("alpha", learn_alpha),
                ("r", learn_r or learn_beta),
            )
            if flag
        ]
        node = EIIFNode(
            theta_0=threshold,
            alpha=alpha,
            r=1.0 if r is None else r,
            soft_reset=reset_mechanism == "subtract",
            learnable=learnable,
            surrogate_function=spike_function(spike_grad, disable=surrogate_disable),
            check_finite=check_finite,
        )
        super().__init__(
            node,
            spike_grad=spike_grad,
            surrogate_disable=surrogate_disable,
            init_hidden=init_hidden,
            inhibition=inhibition,
            reset_mechanism=reset_mechanism,
            output=output,
            graded_spikes_factor=graded_spikes_factor,
            learn_graded_spikes_factor=learn_graded_spikes_factor,
        )

    def _apply_reset_mechanism(self, value: str) -> None:
        self.node.soft_reset = value == "subtract"

    @property
    def threshold(self) -> Tensor:
        r"""Base threshold $\theta_0$ (``node.theta_0``)."""
        return self.node.theta_0

    @property
    def alpha(self) -> Tensor:
        """Threshold increase per step (``node.alpha``)."""
        return self.node.alpha

    @property
    def r(self) -> Tensor:
        """Attenuation rate (``node.r``)."""
        return self.node.r

    @property
    def beta(self) -> Tensor:
        """The fraction of the membrane kept per step, ``1 - r`` (snnTorch's name)."""
        return 1 - self.node.r

    def init_eiif(self) -> Tensor:
        """Start a new sequence: returns the empty initial ``mem`` (like ``init_leaky``)."""
        return self.reset_mem()

    def _charge(self, x: Tensor, mem: Tensor) -> Tensor:
        return mem + x

    def _step(self, x: Tensor, mem: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return self.node.step(x, mem, step, zero_reset=self.reset_mechanism == "zero")
