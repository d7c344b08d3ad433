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
  and its transform in blocks: a layer of synapses with weights
  $\pm 1/\sqrt n$ that the model applies where a rotation cannot be folded
  (after RoPE, and between the gate product and the down-projection).
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


_MATRICES: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _cached_hadamard(n: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    key = (n, dtype, device)
    if key not in _MATRICES:
        _MATRICES[key] = hadamard_matrix(n).to(dtype=dtype, device=device)
    return _MATRICES[key]


def hadamard_transform(x: Tensor, block: int) -> Tensor:
    """``x @ blockdiag(H, ..., H)`` over the last axis, ``H = hadamard_matrix(block)``.

    ``H_{ab} = H_a (x) H_b`` (Kronecker product), so a block larger than 64 is
    applied as two small products (``b = 64`` along the fast axis,
    ``a = block / 64`` along the slow one), ``a + b`` multiply-adds per element
    instead of ``block``. As synapses, every weight is ``±1/sqrt(block)``:
    additions and subtractions, then one scaling.

    Args:
        x: ``[..., C]`` with ``C`` a multiple of ``block``.
        block: a power of two.

    Returns:
        A new tensor of ``x``'s shape and dtype.
    """
    _check_power_of_two("block", block)
    C = x.shape[-1]
    if C % block:
        raise ValueError(f"the last axis of x ({C}) must be a multiple of block ({block})")
    b = min(block, 64)
    a = block // b
    y = x.reshape(-1, a, b) @ _cached_hadamard(b, x.dtype, x.device)
    if a > 1:
        y = (
            hadamard_transform(y.transpose(1, 2), a).transpose(1, 2)
            if a > 64
            else (_cached_hadamard(a, x.dtype, x.device) @ y)
        )
    return y.reshape(x.shape)


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
