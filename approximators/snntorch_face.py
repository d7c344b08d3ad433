"""Approximators with snnTorch's calling convention."""

from __future__ import annotations

from torch import Tensor, nn

from bt_neurons import _checks
from bt_neurons.snntorch import register_resettable

from .neuron_array import NeuronArrayApproximator

__all__ = ["SnnTorchApproximator"]


class SnnTorchApproximator(nn.Module):
    """Step an approximator inside an snnTorch time loop.

    Wraps any `NeuronArrayApproximator` (e.g. ``SiLUApproximator()``); each
    call is one time step and returns that step's output spikes (amplitudes).
    Summed over the approximator's ``T`` steps, for a constant input, they
    equal its count path. Follows snnTorch's conventions:

    * ``init_hidden=False``: ``spk, step = approx(x, step)``, starting from
      ``step = approx.init_approximator()`` (0);
    * ``init_hidden=True``: ``spk = approx(x)``, the step kept inside; restart
      with `reset_hidden` or ``bt_neurons.snntorch.reset(net)``.

    Args:
        approximator: the approximator to step (its parameters are shared).
        init_hidden: keep the step counter inside the module.
    """

    def __init__(self, approximator: NeuronArrayApproximator, init_hidden: bool = False) -> None:
        super().__init__()
        if not isinstance(approximator, NeuronArrayApproximator):
            raise TypeError(
                f"approximator must be a NeuronArrayApproximator (e.g. SiLUApproximator()), "
                f"got {type(approximator).__name__}"
            )
        self.approximator = approximator
        self.init_hidden = _checks.check_bool("init_hidden", init_hidden)
        self.step = 0

    def init_approximator(self) -> int:
        """Start a new sequence; returns the initial step (0)."""
        self.step = 0
        return 0

    def reset_hidden(self) -> None:
        """Restart the step counter (the hidden state of this module)."""
        self.step = 0

    def detach_hidden(self) -> None:
        """Nothing to detach: the neurons have no membrane memory (decay 0)."""

    def forward(self, input_: Tensor, step: int | None = None):
        if self.init_hidden and step is not None:
            raise TypeError("step should not be passed as an argument while init_hidden=True")
        # [N, *] or [] (one neuron), on the approximator's device, finite unless check_finite=False
        self.approximator._check_input(input_, 0, "[N, *] or [] (one time step)", name="input_")
        if step is not None:
            self.step = _checks.check_int("step", step, minimum=0)
        restart = (
            "start a new sequence first: approx.reset_hidden(), "
            "or bt_neurons.snntorch.reset(net) for a network"
            if self.init_hidden
            else "start a new sequence first: step = approx.init_approximator(), then pass that step"
        )
        self.approximator._check_step(self.step, restart)
        (spk,), (nxt, *_) = self.approximator.single_step_functional_forward((input_,), (self.step,))
        self.step = nxt
        return spk if self.init_hidden else (spk, nxt)

    def extra_repr(self) -> str:
        return f"init_hidden={self.init_hidden}"


# the network-wide reset of bt_neurons.snntorch knows this class too
register_resettable(SnnTorchApproximator)
