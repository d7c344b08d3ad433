"""The shipped approximators as constants of a converted model, loaded once per device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from bt_neurons.approximators import load_pretrained
from torch import Tensor, nn

__all__ = ["ShippedApproximator", "shipped_overrides"]

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


@contextmanager
def shipped_overrides(
    approximators: dict[str, nn.Module], device: str | torch.device = "cpu"
) -> Iterator[None]:
    """Use ``approximators`` (name -> module) instead of the shipped ones inside the block.

    For ablations (``benchmarks/approximators_in_llm.py``): every converted model
    on ``device`` evaluates the given modules; the shipped ones are back afterwards.
    """
    keys = {(name, str(torch.device(device))): module for name, module in approximators.items()}
    saved = {key: _SHIPPED.get(key) for key in keys}
    _SHIPPED.update(keys)
    try:
        yield
    finally:
        for key, module in saved.items():
            if module is None:
                _SHIPPED.pop(key, None)
            else:
                _SHIPPED[key] = module
