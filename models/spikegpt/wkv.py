r"""The WKV operator of SpikeGPT's SRWKV, as pure functions of (inputs, state, parameters).

Per channel, with decay $w = e^{d} > 0$ (``d = time_decay``) and bonus $u$ (``time_first``):

$$
\mathrm{WKV}_t = \frac{\sum_{i<t} e^{-(t-1-i)w + k_i} v_i + e^{u + k_t} v_t}
                      {\sum_{i<t} e^{-(t-1-i)w + k_i} + e^{u + k_t}}
$$

Computed in the numerically safe running-max form: the state is
``(aa, bb, pp)`` with ``aa`` the numerator and ``bb`` the denominator of the
past tokens, both scaled by $e^{-pp}$, and ``pp`` the running maximum
exponent. One step:

$$
\begin{aligned}
q &= \max(pp, u + k_t), &
\mathrm{WKV}_t &= \frac{e^{pp - q} aa + e^{u + k_t - q} v_t}{e^{pp - q} bb + e^{u + k_t - q}} \\
q' &= \max(pp - w, k_t), &
aa' &= e^{pp - w - q'} aa + e^{k_t - q'} v_t, \quad
bb' = e^{pp - w - q'} bb + e^{k_t - q'}, \quad pp' = q'
\end{aligned}
$$

Every exponent is ``<= 0``, so nothing overflows whatever the sequence length
or the size of ``k``. The start state is ``aa = bb = 0``, ``pp = -inf``: the
first step's ``max`` picks the finite exponent and $e^{-\infty} = 0$ drops the
empty past exactly (no ``-inf - -inf``: ``q`` is always finite for finite ``k``).

`wkv_sequence` loops `wkv_step` over the token axis, so the parallel (whole
sequence) and the recurrent (token by token) modes agree by construction.
The state and the arithmetic are float32 for half-precision inputs
(float64 stays float64); the output has the inputs' dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from bt_neurons._checks import compute_dtype

__all__ = ["WKVState", "wkv_initial_state", "wkv_sequence", "wkv_step"]


class WKVState(NamedTuple):
    """The running state of one WKV layer: each ``[B, C]`` in the compute dtype."""

    aa: Tensor  #: numerator of the past tokens, scaled by exp(-pp)
    bb: Tensor  #: denominator of the past tokens, scaled by exp(-pp)
    pp: Tensor  #: the running maximum exponent (-inf before the first token)


def wkv_initial_state(
    batch: int, channels: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> WKVState:
    """The state before the first token: ``aa = bb = 0``, ``pp = -inf`` (each ``[batch, channels]``)."""
    cdt = compute_dtype(dtype)
    zeros = torch.zeros(batch, channels, dtype=cdt, device=device)
    return WKVState(zeros, zeros.clone(), torch.full_like(zeros, float("-inf")))


def wkv_step(k_t: Tensor, v_t: Tensor, w: Tensor, u: Tensor, state: WKVState) -> tuple[Tensor, WKVState]:
    """One token: ``(WKV_t [B, C], new state)`` from keys and values ``[B, C]``.

    Args:
        k_t: keys of token ``t``, ``[B, C]``.
        v_t: values of token ``t``, ``[B, C]``.
        w: the decay ``exp(time_decay)``, ``[C]``, positive.
        u: the bonus ``time_first``, ``[C]``.
        state: `WKVState` of the tokens before ``t`` (`wkv_initial_state` for the first).
    """
    cdt = state.aa.dtype
    k = k_t.to(cdt)
    v = v_t.to(cdt)
    w = w.to(cdt)
    u = u.to(cdt)
    aa, bb, pp = state
    ww = u + k
    q = torch.maximum(pp, ww)
    e1 = torch.exp(pp - q)
    e2 = torch.exp(ww - q)
    out = (e1 * aa + e2 * v) / (e1 * bb + e2)
    ww = pp - w
    q = torch.maximum(ww, k)
    e1 = torch.exp(ww - q)
    e2 = torch.exp(k - q)
    return out.to(k_t.dtype), WKVState(e1 * aa + e2 * v, e1 * bb + e2, q)


def wkv_sequence(
    k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: WKVState | None = None
) -> tuple[Tensor, WKVState]:
    """A whole sequence: ``(WKV [B, T, C], final state)`` from keys and values ``[B, T, C]``.

    `wkv_step` applied token after token, starting from ``state``
    (None: `wkv_initial_state`). Splitting a sequence anywhere and carrying
    the state gives exactly the same outputs.
    """
    if k.dim() != 3 or k.shape != v.shape:
        raise ValueError(
            "k and v must both have shape [batch, tokens, channels], "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    B, T, C = k.shape
    if w.shape != (C,) or u.shape != (C,):
        raise ValueError(
            f"w and u must have shape [{C}] (channels), got {tuple(w.shape)} and {tuple(u.shape)}"
        )
    if state is None:
        state = wkv_initial_state(B, C, dtype=k.dtype, device=k.device)
    outputs = []
    for t in range(T):
        out, state = wkv_step(k[:, t], v[:, t], w, u, state)
        outputs.append(out)
    return torch.stack(outputs, dim=1), state
