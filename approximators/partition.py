r"""Partitions of an input range among the neurons of an approximator.

Each neuron ``k`` of an array owns the cell $[e_k, e_{k+1})$ of the
edges ``e_0 < e_1 < ... < e_P`` (paper sections 2.5.2 and 2.5.3):

- ``linear``: equal cells, $e_k = a + (b - a) k / P$;
- ``power``: $e_k = a + (b - a) (k / P)^p$, finer near ``a`` for
  ``p > 1`` (the paper's Square partition, eq. 6);
- ``log``: $e_k = a (b / a)^{k / P}$, equal ratios (the paper's Sqrt
  partition, eq. 7), needs ``0 < a``;
- explicit breakpoints given by the user.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bt_neurons import _checks

__all__ = ["make_edges", "PARTITIONS"]

PARTITIONS = ("linear", "power", "log")


def make_edges(
    domain: tuple[float, float],
    neurons: int,
    kind: str | Sequence[float] = "linear",
    *,
    power: float = 2.0,
) -> Tensor:
    """Cell edges ``[P + 1]`` (float64) for ``neurons`` cells over ``domain``.

    Args:
        domain: ``(a, b)`` with ``a < b``, both finite.
        neurons: number of cells ``P >= 1`` (ignored when breakpoints are given).
        kind: ``"linear"``, ``"power"``, ``"log"`` or a strictly increasing
            sequence of edges (its first and last values must be ``a`` and ``b``).
        power: exponent of the ``power`` partition.

    Raises:
        ValueError: on an empty or non-finite domain, ``neurons < 1``, an
            unknown kind, ``log`` with ``a <= 0``, or bad breakpoints.
    """
    a, b = _checks.check_interval("domain", domain)
    if not isinstance(kind, str):
        try:
            edges = torch.as_tensor(list(kind), dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"partition must be a name or a sequence of numbers, got {kind!r}") from None
        if edges.dim() != 1 or len(edges) < 2 or not bool((edges[1:] > edges[:-1]).all()):
            raise ValueError("breakpoints must be a strictly increasing sequence of at least 2 values")
        if edges[0].item() != a or edges[-1].item() != b:
            raise ValueError(f"breakpoints must start at {a} and end at {b}")
        return edges
    neurons = _checks.check_timesteps("neurons", neurons)
    _checks.check_number("power", power)
    k = torch.arange(neurons + 1, dtype=torch.float64) / neurons
    if kind == "linear":
        edges = a + (b - a) * k
    elif kind == "power":
        _checks.check_positive("power", power)
        edges = a + (b - a) * k**power
    elif kind == "log":
        if not a > 0:
            raise ValueError(f"a log partition needs a domain above 0, got {domain}")
        edges = a * (b / a) ** k
    else:
        raise ValueError(
            f"partition must be one of {list(PARTITIONS)} or a list of breakpoints, got {kind!r}"
        )
    edges[0], edges[-1] = a, b
    return edges
