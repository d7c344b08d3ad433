"""Registration of a neuron's scalar and per-step parameters."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["register_tensor", "learnable_set"]


def register_tensor(
    module: nn.Module,
    name: str,
    value: float | torch.Tensor,
    learnable: bool,
) -> None:
    """Register ``value`` on ``module`` as a parameter (learnable) or a buffer.

    Floats become float32 tensors; tensors are copied (and detached).
    """
    t = torch.as_tensor(value, dtype=torch.float32).detach().clone()
    if learnable:
        module.register_parameter(name, nn.Parameter(t))
    else:
        module.register_buffer(name, t)


def learnable_set(name: str, learnable: Iterable[str] | bool, allowed: Iterable[str]) -> set[str]:
    """Normalise a ``learnable`` argument: ``True`` (all), ``False`` (none) or names."""
    allowed = tuple(allowed)
    if learnable is True:
        return set(allowed)
    if learnable is False or learnable is None:
        return set()
    if isinstance(learnable, str):
        learnable = (learnable,)
    try:
        chosen = set(learnable)
    except TypeError:
        raise TypeError(
            f"{name} must be True, False or names among {list(allowed)}, got {type(learnable).__name__}"
        ) from None
    unknown = chosen - set(allowed)
    if unknown:
        raise ValueError(f"{name} must name parameters among {list(allowed)}, got {sorted(unknown)}")
    return chosen
