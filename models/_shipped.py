"""The shipped approximators as constants of a converted model, loaded once per device."""

from __future__ import annotations

import torch
from bt_neurons.approximators import load_pretrained
from torch import Tensor, nn

__all__ = ["ShippedApproximator"]

_SHIPPED: dict[tuple[str, str], nn.Module] = {}


class ShippedApproximator:
    """A callable for one shipped approximator, loaded once per device and frozen.

    It is deliberately not an ``nn.Module``: the approximators are constants of
    the model, so they stay out of its state dict and its parameters.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def module(self, device: torch.device) -> nn.Module:
        key = (self.name, str(device))
        if key not in _SHIPPED:
            approx = load_pretrained(self.name).requires_grad_(False).to(device)
            _SHIPPED[key] = approx
        return _SHIPPED[key]

    def __call__(self, x: Tensor) -> Tensor:
        return self.module(x.device)(x)

    def spikes_per_input(self, x: Tensor) -> Tensor:
        return self.module(x.device).spikes_per_input(x)

    def __repr__(self) -> str:
        return f"ShippedApproximator({self.name!r})"
