"""Resetting and detaching the hidden state of a whole snnTorch network."""

from __future__ import annotations

from torch import nn

from ._stateful import SnnTorchShell

__all__ = ["reset", "detach_hidden", "register_resettable"]

_RESETTABLE: list[type] = [SnnTorchShell]


def register_resettable(cls: type) -> type:
    """Make :func:`reset` and :func:`detach_hidden` handle ``cls`` (which must have
    ``reset_hidden()`` and ``detach_hidden()``); used by the upper layers'
    snnTorch faces, e.g. the approximators'."""
    if cls not in _RESETTABLE:
        _RESETTABLE.append(cls)
    return cls


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
        if isinstance(module, tuple(_RESETTABLE)):
            module.reset_hidden()
    return net


def detach_hidden(net: nn.Module) -> nn.Module:
    """Detach the hidden state of every bt-neurons neuron in ``net`` (truncated BPTT)."""
    for module in net.modules():
        if isinstance(module, tuple(_RESETTABLE)):
            module.detach_hidden()
    return net
