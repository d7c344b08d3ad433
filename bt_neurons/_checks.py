"""Validation of the arguments a user hands to bt-neurons.

Every check raises an exception whose message names the argument and what was
expected, so that a mistake in a user's network is found where it is made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "check_floating",
    "check_finite",
    "check_rank",
    "check_timesteps",
    "check_positive",
    "check_nonnegative",
    "check_unit_interval",
    "check_choice",
    "compute_dtype",
]


def check_floating(name: str, x: object) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor, else raise ``TypeError``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must have a floating-point dtype (float16, bfloat16, float32 or float64), got {x.dtype}"
        )
    return x


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``x`` holds a NaN or an infinity.

    One fused pass (``torch.aminmax``): a NaN propagates into the minimum and
    maximum, and an infinity is one of them.
    """
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x.detach())
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        bad = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise ValueError(f"{name} must be finite, but it contains {bad}")


def check_rank(name: str, x: torch.Tensor, min_rank: int, what: str) -> None:
    """Raise ``ValueError`` if ``x.dim() < min_rank``; ``what`` names the layout."""
    if x.dim() < min_rank:
        raise ValueError(
            f"{name} must have shape {what} (at least {min_rank} dimensions), got shape {tuple(x.shape)}"
        )


def check_timesteps(name: str, T: object) -> int:
    """Return ``T`` as an ``int`` if it is a positive integer, else raise."""
    if isinstance(T, bool) or not isinstance(T, int):
        raise TypeError(f"{name} must be a positive int, got {T!r}")
    if T <= 0:
        raise ValueError(f"{name} must be a positive int (T >= 1), got {T}")
    return T


def _as_floats(value: float | torch.Tensor) -> Sequence[float]:
    if isinstance(value, torch.Tensor):
        return value.detach().reshape(-1).double().tolist()
    return [float(value)]


def check_positive(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0."""
    for v in _as_floats(value):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v}")


def check_nonnegative(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and >= 0."""
    for v in _as_floats(value):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")


def check_unit_interval(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` lies in [0, 1]."""
    for v in _as_floats(value):
        if not (0.0 <= v <= 1.0):
            raise ValueError(f"{name} must lie in [0, 1], got {v}")


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value  # type: ignore[return-value]


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype neuron dynamics run in for inputs of ``dtype``.

    Half-precision inputs (float16, bfloat16) are integrated in float32 so that
    the membrane does not lose the small increments that decide a spike; float32
    and float64 inputs run in their own dtype. Spikes are returned in the
    input's dtype ({-1, 0, +1} is exact in every floating dtype).
    """
    return torch.float64 if dtype == torch.float64 else torch.float32
