"""Validation of the arguments a user hands to bt-neurons.

Every check raises an exception whose message names the argument and what was
expected, so that a mistake in a user's network is found where it is made.

Checks that look at the *values* of a tensor (finiteness, signs, ranges) run
in eager mode only: under ``torch.compile`` / ``torch.export`` they return at
once (`tracing`), so that a compiled graph has no data-dependent branch.
Checks on types, dtypes, ranks and shapes are static and run in both modes.
"""

from __future__ import annotations

import contextvars
import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

__all__ = [
    "tracing",
    "check_floating",
    "check_finite",
    "check_rank",
    "check_timesteps",
    "check_positive",
    "check_nonnegative",
    "check_unit_interval",
    "check_choice",
    "compute_dtype",
    "check_tensor",
    "check_number",
    "check_int",
    "check_bool",
    "check_callable",
    "check_same_device",
    "check_broadcastable",
    "check_indices",
    "smallest_scale",
    "values_checked_upstream",
]

_UPSTREAM = contextvars.ContextVar("bt_neurons_values_checked_upstream", default=False)


@contextmanager
def values_checked_upstream() -> Iterator[None]:
    """Inside the block, `check_finite` returns at once: the caller has checked the values.

    A model that validates its inputs once (token ids, finite weights) sets this
    around its layers, so that no operator of every layer scans its input for
    NaN and Inf again at every call. A NaN or Inf that arises inside still stops
    the model: the next EI_IF encoder cannot scale it and raises.
    """
    token = _UPSTREAM.set(True)
    try:
        yield
    finally:
        _UPSTREAM.reset(token)


def tracing() -> bool:
    """Whether ``torch.compile`` / ``torch.export`` is tracing the code that calls this.

    Value checks are skipped then: a compiled graph cannot branch on data
    without a graph break, and the eager call it was traced from checked the
    same code path.
    """
    return torch.compiler.is_compiling()


def check_tensor(name: str, x: object) -> torch.Tensor:
    """Return ``x`` if it is a ``torch.Tensor`` (not a list, a NumPy array, a number), else ``TypeError``."""
    if not isinstance(x, torch.Tensor):
        hint = (
            " (convert it with torch.as_tensor)"
            if hasattr(x, "__array__") or isinstance(x, list | tuple)
            else ""
        )
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}{hint}")
    return x


def check_floating(name: str, x: object) -> torch.Tensor:
    """Return ``x`` if it is a floating-point tensor, else raise ``TypeError``."""
    check_tensor(name, x)
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
    if (
        x.numel() == 0 or x.device.type == "meta" or tracing() or _UPSTREAM.get()
    ):  # (see values_checked_upstream)
        return
    lo, hi = torch.aminmax(x.detach())
    if not (math.isfinite(lo.item()) and math.isfinite(hi.item())):  # two reads beat a tensor op
        bad = "NaN" if bool(torch.isnan(x).any()) else "Inf"
        raise ValueError(f"{name} must be finite, but it contains {bad}")


def check_rank(name: str, x: torch.Tensor, min_rank: int, what: str) -> None:
    """Raise ``ValueError`` if ``x.dim() < min_rank``; ``what`` names the layout."""
    if x.dim() < min_rank:
        raise ValueError(
            f"{name} must have shape {what} (at least {min_rank} dimensions), got shape {tuple(x.shape)}"
        )


def check_timesteps(name: str, T: object) -> int:
    """Return ``T`` as an ``int`` if it is a positive integer, else raise.

    ``TypeError`` for anything but an integer (a float such as ``2.0``, a bool,
    a string); ``ValueError`` for ``T <= 0``.
    """
    if isinstance(T, bool) or not isinstance(T, numbers.Integral):
        raise TypeError(f"{name} must be a positive int, got {type(T).__name__} {T!r}")
    if T <= 0:
        raise ValueError(f"{name} must be a positive int (>= 1), got {T}")
    return int(T)


def _real_tensor(name: str, value: torch.Tensor) -> torch.Tensor:
    if value.dtype == torch.bool or value.is_complex():
        raise TypeError(f"{name} must hold real numbers, got a tensor of dtype {value.dtype}")
    return value


def _as_floats(name: str, value: object) -> Sequence[float]:
    if isinstance(value, torch.Tensor):
        if tracing():  # a value check: eager mode only
            return []
        return _real_tensor(name, value).detach().reshape(-1).double().tolist()
    return [check_number(name, value)]


def check_positive(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and > 0.

    ``TypeError`` when ``value`` is not a real number (a string, a bool, None)
    or a real tensor.
    """
    for v in _as_floats(name, value):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v}")


def check_nonnegative(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` is finite and >= 0."""
    for v in _as_floats(name, value):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")


def check_unit_interval(name: str, value: float | torch.Tensor) -> None:
    """Raise ``ValueError`` unless every element of ``value`` lies in [0, 1] (``TypeError``: not a number)."""
    for v in _as_floats(name, value):
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


# ----------------------------------------------------------------------------------------------
# Types of constructor arguments, devices and shapes (shared by every public entry point).


def check_number(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it is one real number, else raise.

    Accepted: ``int``, ``float``, NumPy scalars, and one-element real tensors.
    ``TypeError`` for a string (``'0.5'``), a bool, None, a complex number or
    a bool tensor; ``ValueError`` for a tensor of more than one element.
    Finiteness is left to the range checks (`check_positive`, ...).
    """
    if isinstance(value, torch.Tensor):
        _real_tensor(name, value)
        if value.numel() != 1:
            raise ValueError(f"{name} must be a single number, got a tensor of shape {tuple(value.shape)}")
        return float(value.detach().reshape(()).double().item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (int or float), got {type(value).__name__} {value!r}")
    return float(value)


def check_int(name: str, value: object, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``, else raise.

    ``TypeError`` for anything but an integer (``2.0``, ``True``, ``'3'``);
    ``ValueError`` outside the bounds (``None``: unbounded).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            bound = f">= {minimum}"
        elif minimum is None:
            bound = f"<= {maximum}"
        else:
            bound = f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {bound}, got {value}")
    return value


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool (Python or NumPy), else raise ``TypeError``.

    A string such as ``'False'`` would otherwise be silently true.
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_":  # numpy.bool_
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_callable(name: str, value: object) -> None:
    """Raise ``TypeError`` unless ``value`` can be called (a module or a function)."""
    if not callable(value):
        raise TypeError(f"{name} must be callable (a module or a function), got {type(value).__name__}")


def check_same_device(name: str, x: torch.Tensor, other_name: str, other: torch.Tensor) -> None:
    """Raise ``ValueError`` if ``x`` and ``other`` live on different devices."""
    if x.device != other.device:
        raise ValueError(
            f"{name} is on {x.device} but {other_name} is on {other.device}: move them to one device "
            "(module.to(device) moves a module's weights and buffers)"
        )


def check_broadcastable(what: str, **shapes: Sequence[int]) -> tuple[int, ...]:
    """The broadcast of ``shapes`` (given by name), or ``ValueError`` naming every one of them."""
    given = [tuple(s) for s in shapes.values()]
    if all(s == given[0] for s in given):  # equal shapes broadcast to themselves (the common case, fast)
        return given[0]
    try:
        return tuple(torch.broadcast_shapes(*(tuple(s) for s in shapes.values())))
    except RuntimeError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"{what} do not broadcast: {listed}") from None


def check_indices(name: str, ids: object, size: int) -> torch.Tensor:
    """Return ``ids`` if it is an integer tensor with values in ``[0, size)``, else raise.

    ``TypeError`` for a non-tensor or a non-integer dtype; ``ValueError`` for an
    id out of range (one fused ``aminmax`` pass, like `check_finite`).
    """
    check_tensor(name, ids)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (token ids), got {ids.dtype}")
    if ids.numel() == 0 or ids.device.type == "meta":
        return ids
    lo, hi = torch.aminmax(ids.detach())
    if int(lo) < 0 or int(hi) >= size:
        bad = int(lo) if int(lo) < 0 else int(hi)
        raise ValueError(f"{name} must lie in [0, {size - 1}] (the embedding's rows), got {bad}")
    return ids


def smallest_scale(dtype: torch.dtype, eps: float) -> float:
    """``eps``, raised to the smallest positive number of ``dtype`` where it would round to 0.

    A quantization scale clamped to ``eps`` must stay > 0 in the input's dtype
    (``1e-8`` is 0 in float16), or an all-zero token would give ``0 / 0``.
    """
    info = torch.finfo(dtype)
    return max(float(eps), float(info.tiny) * float(info.eps))


def check_interval(name: str, value: object) -> tuple[float, float]:
    """Return ``value`` as ``(lo, hi)`` if it is a pair of finite real numbers with ``lo < hi``, else raise.

    ``TypeError`` for something that is not a pair of numbers (a string, one
    number, three numbers); ``ValueError`` for NaN, infinities or ``lo >= hi``.
    """
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | torch.Tensor) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (lo, hi) of numbers, got {value!r}")
    lo, hi = (check_number(name, v) for v in value)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite, got {(lo, hi)}")
    if not lo < hi:
        raise ValueError(f"{name} must satisfy lo < hi, got {(lo, hi)}")
    return lo, hi
