"""CustomNeuron with snnTorch's calling convention."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import check_choice
from ..custom_neuron_node import CustomNeuronNode
from ._inclusive_spike import inclusive_spike
from ._stateful import SnnTorchShell

__all__ = ["CustomNeuron"]


class CustomNeuron(SnnTorchShell):
    r"""The paper's approximation neuron (eq. 14) for snnTorch networks.

    $$
        U_t = \beta U_{t-1} + X_t, \quad \theta_t = \theta_{base} + \alpha t + \delta_t,
        \quad O_t = A^+_t [U_t \ge \theta_t] - A^-_t [U_t \le -\theta_t]
    $$
    and, with ``reset_mechanism="subtract"`` (default, as in the paper), the
    threshold is subtracted after a positive spike and added after a negative
    one. ``beta`` is the paper's $\lambda$. The returned ``spk`` is the
    amplitude-weighted output $O_t$. The parameters live in
    ``self.node``, a `CustomNeuronNode`, and stepping this
    neuron gives bit-identical outputs to it.

    Args:
        threshold: base threshold (every $\theta_t$ must stay > 0). Default 1.0.
        alpha: threshold change per step. Default 0.0.
        beta: membrane decay (>= 0). Default 1.0.
        amp_pos: spike amplitudes. Default 1.0.
        amp_neg: spike amplitudes. Default 1.0.
        T: number of steps (required with ``per_step=True``).
        per_step: one threshold offset and amplitude pair per step.
        learnable: make every parameter learnable. Default True.
        spike_grad: snnTorch surrogate (default ``snntorch.surrogate.atan()``).
        init_hidden: as in snnTorch.
        output: as in snnTorch.
        reset_mechanism: ``"subtract"`` (paper) or ``"none"``.
        check_finite: raise on NaN / Inf inputs.
    """

    init_method = "init_custom"

    def __init__(
        self,
        threshold: float = 1.0,
        alpha: float = 0.0,
        beta: float = 1.0,
        amp_pos: float = 1.0,
        amp_neg: float = 1.0,
        T: int | None = None,
        per_step: bool = False,
        learnable: bool = True,
        spike_grad: Callable[[Tensor], Tensor] | None = None,
        init_hidden: bool = False,
        output: bool = False,
        reset_mechanism: str = "subtract",
        check_finite: bool = True,
    ) -> None:
        check_choice("reset_mechanism", reset_mechanism, ("none", "subtract"))
        node = CustomNeuronNode(
            theta_base=threshold,
            alpha=alpha,
            decay=beta,
            amp_pos=amp_pos,
            amp_neg=amp_neg,
            reset=reset_mechanism == "subtract",
            T=T,
            per_step=per_step,
            learnable=learnable,
            surrogate_function=inclusive_spike(spike_grad),
            check_finite=check_finite,
        )
        super().__init__(node, init_hidden=init_hidden, output=output)
        self.reset_mechanism = reset_mechanism

    @property
    def threshold(self) -> Tensor:
        """Base threshold (``node.theta_base``)."""
        return self.node.theta_base

    @property
    def beta(self) -> Tensor:
        r"""Membrane decay $\lambda$ (``node.decay``)."""
        return self.node.decay

    def init_custom(self) -> Tensor:
        """Start a new sequence: returns the empty initial ``mem``."""
        return self.init_mem()
