r"""Orthogonal rotations that spread activation outliers over many channels.

A few channels of an LLM's activations are tens of times larger than the rest;
with a per-token scale they decide the scale and every other channel rounds to
a handful of levels. Rotating the activations by an orthogonal matrix $R$
and the weights that read them by the same $R$ changes nothing in exact
arithmetic, $W x = (W R^\top)(R x)$, but spreads each outlier over all
channels, so that EI_IF neurons with few time steps resolve the rest.

- `random_orthogonal`: a dense rotation of the residual stream, folded into
  the weights at conversion (no cost when the model runs).
- `hadamard_matrix` and `hadamard_transform`: the normalised Walsh-Hadamard
  matrix $H_n / \sqrt n$ (symmetric and orthogonal: $H = H^\top = H^{-1}$)
  and its fast transform in blocks, $n \log_2 n$ additions and subtractions
  per block and one scaling: a layer of synapses with weights $\pm 1$ that the
  model applies where a rotation cannot be folded (after RoPE, and between
  the gate product and the down-projection).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["hadamard_matrix", "hadamard_transform", "largest_power_of_two_block", "random_orthogonal"]


def _check_power_of_two(name: str, n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two, got {n!r}")


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """The normalised Sylvester-Hadamard matrix ``[n, n]`` (``n`` a power of two)."""
    _check_power_of_two("n", n)
    h = torch.ones(1, 1, dtype=dtype)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)
    return h / math.sqrt(n)


def hadamard_transform(x: Tensor, block: int) -> Tensor:
    """``x @ blockdiag(H, ..., H)`` over the last axis, ``H = hadamard_matrix(block)``.

    Args:
        x: ``[..., C]`` with ``C`` a multiple of ``block``.
        block: a power of two.

    Returns:
        A new tensor of ``x``'s shape and dtype (the fast transform: butterflies
        of additions and subtractions, then one scaling by ``1/sqrt(block)``).
    """
    _check_power_of_two("block", block)
    C = x.shape[-1]
    if C % block:
        raise ValueError(f"the last axis of x ({C}) must be a multiple of block ({block})")
    lead = x.shape[:-1]
    y = x.reshape(-1, C // block, block)
    h = 1
    while h < block:
        y = y.view(y.shape[0], C // block, block // (2 * h), 2, h)
        a, b = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + b, a - b), dim=-2).reshape(-1, C // block, block)
        h *= 2
    return (y * (1.0 / math.sqrt(block))).reshape(*lead, C)


def largest_power_of_two_block(n: int) -> int:
    """The largest power of two that divides ``n``."""
    return n & -n


def random_orthogonal(n: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> Tensor:
    """A random orthogonal ``[n, n]`` matrix (QR of a Gaussian, signs fixed), reproducible by ``seed``."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype)
