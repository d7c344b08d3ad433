"""Resetting and detaching the hidden state of a whole snnTorch network."""

from __future__ import annotations

from torch import nn

from ._stateful import SnnTorchShell

__all__ = ["reset", "detach_hidden"]


def reset(net: nn.Module) -> nn.Module:
    """Reset every neuron of ``net``: snnTorch's own and bt-neurons'.

    ``snntorch.utils.reset(net)`` only knows snnTorch's classes; call this in
    its place (once per batch, before the time loop) in a net that mixes
    ``snn.Leaky`` and `EIIF` or
    `CustomNeuron` layers.

    Returns:
        ``net``, so that it can be chained.
    """
    from snntorch import utils

    utils.reset(net)
    for module in net.modules():
        if isinstance(module, SnnTorchShell):
            module.reset_hidden()
    return net


def detach_hidden(net: nn.Module) -> nn.Module:
    """Detach the hidden state of every bt-neurons neuron in ``net`` (truncated BPTT)."""
    for module in net.modules():
        if isinstance(module, SnnTorchShell):
            module.detach_hidden()
    return net
