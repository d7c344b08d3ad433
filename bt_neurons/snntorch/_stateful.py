"""The snnTorch calling convention around a bt-neurons SpikingJelly node."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import _checks

__all__ = ["SnnTorchShell"]


class SnnTorchShell(nn.Module):
    """Holds the hidden state of one neuron layer the way snnTorch neurons do.

    ``node`` is the bt-neurons SpikingJelly node that owns the parameters and
    the dynamics; this shell only keeps ``mem`` and the step counter ``step``
    and follows snnTorch's conventions:

    * ``init_hidden=False``: ``spk, mem = neuron(x, mem)``; start every
      sequence with ``mem = neuron.init_mem()`` (an empty tensor, which also
      restarts the step counter that drives the adaptive threshold).
    * ``init_hidden=True``: ``spk = neuron(x)``, state kept inside; reset it
      with `reset_hidden` or `reset`.
    * ``output=True``: return ``(spk, mem)`` even with ``init_hidden=True``.
    """

    #: the name of the method that starts a new explicit state (``init_eiif``, ...), for messages
    init_method = "init_mem"

    def __init__(self, node: nn.Module, *, init_hidden: bool, output: bool) -> None:
        super().__init__()
        _checks.check_bool("init_hidden", init_hidden)
        _checks.check_bool("output", output)
        self.node = node
        self.init_hidden = bool(init_hidden)
        self.output = bool(output)
        self.register_buffer("mem", torch.zeros(0), persistent=False)
        self.step = 0

    def init_mem(self) -> Tensor:
        """Restart the state: an empty ``mem`` (materialised at the next call) and ``step = 0``."""
        self.step = 0
        self.mem = torch.zeros(0, device=self.mem.device)
        return self.mem

    def reset_hidden(self) -> None:
        """Reset this neuron's hidden state (the snnTorch ``reset_hidden`` of this instance)."""
        self.init_mem()

    def _restart_hint(self) -> str:
        if self.init_hidden:
            return "neuron.reset_hidden(), or bt_neurons.snntorch.reset(net) for a whole network"
        return f"mem = neuron.{self.init_method}(), then pass that mem"

    def detach_hidden(self) -> None:
        """Detach the hidden state from the graph (truncated BPTT), keeping its value."""
        self.mem = self.mem.detach()

    def forward(self, input_: Tensor, mem: Tensor | None = None):
        if self.init_hidden and mem is not None:
            raise TypeError("mem should not be passed as an argument while init_hidden=True")
        _checks.check_floating("input_", input_)  # [N, *] or [] (one neuron), as snnTorch's neurons
        if self.node.check_finite:
            _checks.check_finite("input_", input_)
        self.node._check_parameters()
        if mem is not None:
            _checks.check_floating("mem", mem)
            if mem.shape != input_.shape and mem.numel() > 0:  # an empty mem starts a new sequence
                raise ValueError(
                    f"mem must have the shape of input_ {tuple(input_.shape)}, got {tuple(mem.shape)}; "
                    f"start a new sequence with an empty mem ({self._restart_hint()})"
                )
            _checks.check_same_device("mem", mem, "input_", input_)
            if self.node.check_finite:
                _checks.check_finite("mem", mem)
            self.mem = mem
        cdt = _checks.compute_dtype(input_.dtype)
        if self.mem.shape != input_.shape:  # an empty mem, or the hidden state of an earlier shape
            self.mem = torch.zeros(input_.shape, dtype=cdt, device=input_.device)
            self.step = 0
        limit = self.node.step_limit
        if limit is not None and self.step >= limit:
            raise ValueError(
                f"this neuron has per-step parameters for T={limit} steps, but step {self.step} was "
                f"requested; start a new sequence first: {self._restart_hint()}"
            )
        (spk,), (mem_next, step, *_) = self.node.single_step_functional_forward(
            (input_,), (self.mem.to(cdt), self.step)
        )
        self.mem, self.step = mem_next, step
        if self.output or not self.init_hidden:
            return spk, self.mem
        return spk
