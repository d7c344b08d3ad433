"""EIIF: the EI_IF neuron with snnTorch's calling convention."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor

from .._checks import check_bool, check_choice
from ..eiif_node import EIIFNode
from ._inclusive_spike import inclusive_spike
from ._stateful import SnnTorchShell

__all__ = ["EIIF"]


class EIIF(SnnTorchShell):
    r"""EI_IF neuron for snnTorch networks (BrainTransformers eq. 1).

    $$
        U_t = U_{t-1} + X_t, \quad \theta_t = \theta_0 + \alpha t, \quad
        S_t = [U_t \ge \theta_t] - [U_t \le -\theta_t], \quad
        U_t \leftarrow (1 - r)(U_t - \sigma \theta_t S_t)
    $$
    with $\sigma = 1$ for ``reset_mechanism="subtract"`` and 0 for
    ``"none"`` (the paper's default). ``t`` counts steps since the state was
    started (`init_eiif`, `reset_hidden`). Spikes are in
    {-1, 0, +1} and fire on ``>=`` (snnTorch's own neurons fire on ``>``);
    stepping this neuron ``T`` times gives bit-identical spikes to
    `EIIFNode`, whose parameters it holds in ``self.node``.

    Usage follows ``snntorch.Leaky``::

        eiif = EIIF()
        mem = eiif.init_eiif()
        for step in range(T):
            spk, mem = eiif(x[step], mem)

    Args:
        threshold: base threshold $\theta_0$ (> 0). Default 0.5.
        alpha: threshold increase per step (>= 0). Default 1.0.
        r: attenuation rate in [0, 1]. Default 1.0.
        spike_grad: snnTorch surrogate (default ``snntorch.surrogate.atan()``).
        init_hidden: keep the state inside the module. Default False.
        output: return ``(spk, mem)`` when ``init_hidden=True``.
        learn_threshold: make the parameter learnable.
        learn_alpha: make the parameter learnable.
        learn_r: make the parameter learnable.
        reset_mechanism: ``"none"`` (paper) or ``"subtract"`` (soft reset).
        check_finite: raise on NaN / Inf inputs.
    """

    init_method = "init_eiif"

    def __init__(
        self,
        threshold: float = 0.5,
        alpha: float = 1.0,
        r: float = 1.0,
        spike_grad: Callable[[Tensor], Tensor] | None = None,
        init_hidden: bool = False,
        output: bool = False,
        learn_threshold: bool = False,
        learn_alpha: bool = False,
        learn_r: bool = False,
        reset_mechanism: str = "none",
        check_finite: bool = True,
    ) -> None:
        check_choice("reset_mechanism", reset_mechanism, ("none", "subtract"))
        for name, flag in (
            ("learn_threshold", learn_threshold),
            ("learn_alpha", learn_alpha),
            ("learn_r", learn_r),
        ):
            check_bool(name, flag)
        learnable: Iterable[str] = [
            name
            for name, flag in (("theta_0", learn_threshold), ("alpha", learn_alpha), ("r", learn_r))
            if flag
        ]
        node = EIIFNode(
            theta_0=threshold,
            alpha=alpha,
            r=r,
            soft_reset=reset_mechanism == "subtract",
            learnable=learnable,
            surrogate_function=inclusive_spike(spike_grad),
            check_finite=check_finite,
        )
        super().__init__(node, init_hidden=init_hidden, output=output)
        self.reset_mechanism = reset_mechanism

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

    def init_eiif(self) -> Tensor:
        """Start a new sequence: returns the empty initial ``mem`` (like ``init_leaky``)."""
        return self.init_mem()
