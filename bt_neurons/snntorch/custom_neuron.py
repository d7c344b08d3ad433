"""CustomNeuron as an snnTorch neuron."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from .._checks import check_bool
from ..custom_neuron_node import CustomNeuronNode
from ._inclusive_spike import spike_function
from ._stateful import SnnTorchShell

__all__ = ["CustomNeuron"]


class CustomNeuron(SnnTorchShell):
    r"""The paper's approximation neuron (eq. 14) for snnTorch networks, an ``snntorch.Leaky``.

    $$
        U_t = \beta U_{t-1} + X_t, \quad \theta_t = \theta_{base} + \alpha t + \delta_t,
        \quad O_t = A^+_t [U_t \ge \theta_t] - A^-_t [U_t \le -\theta_t]
    $$
    With ``reset_mechanism="subtract"`` (default, as in the paper) the
    threshold is subtracted after a positive spike and added after a negative
    one; ``"zero"`` empties the membrane of a neuron that fired; ``"none"``
    keeps it. The reset happens in the step that fired. ``beta`` is the
    paper's $\lambda$. The returned ``spk`` is the amplitude-weighted
    output $O_t$ (times ``graded_spikes_factor``). The parameters live in
    ``self.node``, a `CustomNeuronNode`, and stepping this neuron gives
    bit-identical outputs to it.

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
        reset_mechanism: ``"subtract"`` (paper), ``"zero"`` or ``"none"``.
        check_finite: raise on NaN / Inf inputs.
        learn_threshold: with ``learnable=False``, make the base threshold learnable alone.
        learn_beta: with ``learnable=False``, make the decay learnable alone.
        surrogate_disable: no surrogate gradient, as in snnTorch.
        inhibition: per sample, only the neuron with the largest charge fires (snnTorch's).
        graded_spikes_factor: output scale (snnTorch's). Default 1.0.
        learn_graded_spikes_factor: make it learnable.
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
        *,
        learn_threshold: bool = False,
        learn_beta: bool = False,
        surrogate_disable: bool = False,
        inhibition: bool = False,
        graded_spikes_factor: float | Tensor = 1.0,
        learn_graded_spikes_factor: bool = False,
    ) -> None:
        for name, flag in (
            ("learnable", learnable),
            ("learn_threshold", learn_threshold),
            ("learn_beta", learn_beta),
            ("surrogate_disable", surrogate_disable),
        ):
            check_bool(name, flag)
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
            surrogate_function=spike_function(spike_grad, disable=surrogate_disable),
            check_finite=check_finite,
        )
        if learn_threshold:
            node.theta_base.requires_grad_(True)
        if learn_beta:
            node.decay.requires_grad_(True)
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
        self.node.reset_after_spike = value == "subtract"

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
        return self.reset_mem()

    def _charge(self, x: Tensor, mem: Tensor) -> Tensor:
        return self.node.decay.to(mem.dtype) * mem + x

    def _step(self, x: Tensor, mem: Tensor, step: int) -> tuple[Tensor, Tensor]:
        return self.node.step(x, mem, step, zero_reset=self.reset_mechanism == "zero")
