"""The snnTorch faces of the spike-train operators: Synapsis, SNNMatmul, SNNMultiply, SpikeTrainOperator.

Each wraps the SpikingJelly node of the same operator (`SynapsisNode`,
`SNNMatmulNode`, `SNNMultiplyNode`, `bt_neurons.SpikeTrainOperator`) in single-step mode and speaks snnTorch's
convention, one step per call in the user's time loop::

    syn = bt_neurons.snntorch.Synapsis(nn.Linear(64, 32), T, scale=s)
    mem = syn.init_synapsis()
    for step in range(num_steps):
        spk_out, mem = syn(spk_in[step], mem)

``mem`` is the postsynaptic neurons' drive $y / s_{post}$ of the window
they are firing (zeros before the first window is integrated); the
accumulators of the window being integrated live in ``node``. Passing back
the ``mem`` a call returned continues the sequence; an empty ``mem``
(``init_synapsis()`` / ``reset_mem()``) or any other tensor starts a new one.
Windows work as in the SpikingJelly face: the spikes of steps
``kT .. kT + T - 1`` are fired during the next ``T`` steps, so a network of
``L`` such layers answers after ``L`` windows.

They are ``snntorch.Leaky`` subclasses like bt's neurons (a synapse with its
postsynaptic neurons), so ``snntorch.utils.reset(net)`` restarts them and
``init_hidden=True`` keeps the state inside; every step is bit-identical to
the SpikingJelly node's.
"""

from __future__ import annotations

from typing import Any

from spikingjelly.activation_based import functional
from torch import Tensor, nn

from .. import _checks
from .._spike_train_node import SpikeTrainNode
from ..snn_matmul_node import SNNMatmulNode
from ..snn_multiply_node import SNNMultiplyNode
from ..spike_train_operator import SpikeTrainOperator as SpikeTrainOperatorNode
from ..synapsis import Synapsis as FloatSynapsis
from ..synapsis_node import SynapsisNode
from ._stateful import SnnTorchShell

__all__ = ["Synapsis", "SNNMatmul", "SNNMultiply", "SpikeTrainOperator"]


def _single_step(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The node's options for the snnTorch face: one step per call (``step_mode`` is not the user's)."""
    if "step_mode" in kwargs:
        raise TypeError("the snnTorch face steps one call at a time: it takes no step_mode")
    return {**kwargs, "step_mode": "s"}


class _SpikeTrainShell(SnnTorchShell):
    """An snnTorch neuron around a spike-train node stepped in single-step mode."""

    init_method = "init_synapsis"

    def __init__(self, node: SpikeTrainNode, *, init_hidden: bool, output: bool) -> None:
        functional.set_step_mode(node, "s")
        super().__init__(
            node,
            spike_grad=None,
            surrogate_disable=False,
            init_hidden=init_hidden,
            inhibition=False,
            reset_mechanism="none",
            output=output,
            graded_spikes_factor=1.0,
            learn_graded_spikes_factor=False,
        )

    def _apply_reset_mechanism(self, value: str) -> None:
        if value != "none":
            raise ValueError(
                f"reset_mechanism={value!r}: the postsynaptic neurons of a {type(self).__name__} are "
                "driven by a constant for one window (r = 1): no membrane to reset, it must stay 'none'"
            )

    @property
    def T(self) -> int:
        """Steps of one window."""
        return self.node.T

    @property
    def output_scale(self) -> Tensor | None:
        """The scale of the spikes fired now (what the next layer's ``scale=`` reads)."""
        return self.node.output_scale

    def reset_mem(self) -> Tensor:
        """Start a new sequence: an empty ``mem`` and the node's memories reset."""
        functional.reset_net(self.node)
        return super().reset_mem()

    def init_synapsis(self) -> Tensor:
        """Start a new sequence (snnTorch style, like ``init_leaky``): returns the empty ``mem``."""
        return self.reset_mem()

    def detach_hidden(self) -> None:
        """Detach the state from the graph (truncated BPTT), keeping its value."""
        super().detach_hidden()
        self.node.detach()

    def _advance(self, inputs: tuple[Tensor, ...], mem: Tensor | None, scales: dict):
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        if mem is not None:
            _checks.check_floating("mem", mem)
            if mem is not self._written:  # an empty mem, or one this module did not return: a new sequence
                functional.reset_net(self.node)
        elif self.mem is not self._written:  # replaced from outside (snntorch.utils.reset): a new sequence
            functional.reset_net(self.node)
        out = self.node(*inputs, **scales)
        drive = self.node.drive
        self.mem = drive if drive is not None else out.new_zeros(out.shape)
        self.step = int(self.node.t)  # also marks mem as this module's own
        if self.output or not self.init_hidden:
            return out, self.mem
        return out

    def extra_repr(self) -> str:
        return f"init_hidden={self.init_hidden}, output={self.output}"


class Synapsis(_SpikeTrainShell):
    """`SynapsisNode` for snnTorch: ``spk_out, mem = syn(spk_in, mem)``, one step per call.

    Args:
        layer: the ``nn.Linear``.
        timesteps: ``T``, steps of a window. Default 15.
        init_hidden: keep the state inside (``spk_out = syn(spk_in)``). Default False.
        output: return ``(spk_out, mem)`` even with ``init_hidden=True``.
        **kwargs: the options of `SynapsisNode` (``scale``, ``post``,
            ``post_timesteps``, ``post_quantizer``, ``activation``, ``path``,
            ``surrogate_function``).

    ``scale=`` may also be given in each call (per token); a window uses
    the scale given with its first step.
    """

    def __init__(
        self,
        layer: nn.Linear,
        timesteps: int = 15,
        *,
        init_hidden: bool = False,
        output: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            SynapsisNode(layer, timesteps, **_single_step(kwargs)), init_hidden=init_hidden, output=output
        )

    @classmethod
    def from_synapsis(
        cls, synapsis: FloatSynapsis, *, init_hidden: bool = False, output: bool = False, **kwargs
    ):
        """The snnTorch spike-train face of a float `bt_neurons.Synapsis` (its layer, T, quantizers, path)."""
        face = cls.__new__(cls)
        node = SynapsisNode.from_synapsis(synapsis, **_single_step(kwargs))
        _SpikeTrainShell.__init__(face, node, init_hidden=init_hidden, output=output)
        return face

    def forward(self, input_: Tensor, mem: Tensor | None = None, *, scale: Tensor | float | None = None):
        return self._advance((input_,), mem, {} if scale is None else {"scale": scale})


class _ProductShell(_SpikeTrainShell):
    _node_class: type[SpikeTrainNode]

    def __init__(
        self, timesteps: int = 15, *, init_hidden: bool = False, output: bool = False, **kwargs: Any
    ):
        node = self._node_class(timesteps, **_single_step(kwargs))
        super().__init__(node, init_hidden=init_hidden, output=output)

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        mem: Tensor | None = None,
        *,
        x_scale: Tensor | float | None = None,
        y_scale: Tensor | float | None = None,
    ):
        scales = {k: v for k, v in (("x_scale", x_scale), ("y_scale", y_scale)) if v is not None}
        return self._advance((x, y), mem, scales)


class SNNMatmul(_ProductShell):
    """`SNNMatmulNode` for snnTorch: ``spk_out, mem = mm(spk_x, spk_y, mem)``, one step per call.

    Args:
        timesteps: ``T``, steps of a window. Default 15.
        init_hidden: keep the state inside. Default False.
        output: return ``(spk_out, mem)`` even with ``init_hidden=True``.
        **kwargs: the options of `SNNMatmulNode` (``transpose_y``, ``groups``,
            ``x_scale``, ``y_scale``, ``post``, ``post_timesteps``,
            ``post_quantizer``, ``path``, ``surrogate_function``).
    """

    _node_class = SNNMatmulNode


class SNNMultiply(_ProductShell):
    """`SNNMultiplyNode` for snnTorch: ``spk_out, mem = mul(spk_x, spk_y, mem)``, one step per call.

    Args:
        timesteps: ``T``, steps of a window. Default 15.
        init_hidden: keep the state inside. Default False.
        output: return ``(spk_out, mem)`` even with ``init_hidden=True``.
        **kwargs: the options of `SNNMultiplyNode` (``x_scale``, ``y_scale``,
            ``post``, ``post_timesteps``, ``post_quantizer``, ``path``,
            ``surrogate_function``).
    """

    _node_class = SNNMultiplyNode


class SpikeTrainOperator(_SpikeTrainShell):
    """`bt_neurons.SpikeTrainOperator` for snnTorch: ``spk_out, mem = op(spk_in, mem)``, one step per call.

    Args:
        operator: the float-input operator applied to each decoded window
            (``SNNSoftmax``, ``SNNRMSNorm``, an approximator, ...).
        timesteps: ``T``, steps of a window. Default 15.
        init_hidden: keep the state inside. Default False.
        output: return ``(spk_out, mem)`` even with ``init_hidden=True``.
        **kwargs: the options of `bt_neurons.SpikeTrainOperator` (``scale``,
            ``post_timesteps``, ``post_quantizer``, ``surrogate_function``).
    """

    def __init__(
        self,
        operator: nn.Module,
        timesteps: int = 15,
        *,
        init_hidden: bool = False,
        output: bool = False,
        **kwargs: Any,
    ) -> None:
        node = SpikeTrainOperatorNode(operator, timesteps, **_single_step(kwargs))
        super().__init__(node, init_hidden=init_hidden, output=output)

    def forward(self, input_: Tensor, mem: Tensor | None = None, *, scale: Tensor | float | None = None):
        return self._advance((input_,), mem, {} if scale is None else {"scale": scale})
