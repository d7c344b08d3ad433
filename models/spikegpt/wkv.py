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
    k, v, w, u = (x if x.dtype == cdt else x.to(cdt) for x in (k_t, v_t, w, u))
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
    return (out if out.dtype == k_t.dtype else out.to(k_t.dtype)), WKVState(e1 * aa + e2 * v, e1 * bb + e2, q)


def _check_sequence(k: Tensor, v: Tensor, w: Tensor, u: Tensor) -> None:
    if k.dim() != 3 or k.shape != v.shape:
        raise ValueError(
            "k and v must both have shape [batch, tokens, channels], "
            f"got {tuple(k.shape)} and {tuple(v.shape)}"
        )
    C = k.shape[-1]
    if w.shape != (C,) or u.shape != (C,):
        raise ValueError(
            f"w and u must have shape [{C}] (channels), got {tuple(w.shape)} and {tuple(u.shape)}"
        )


def _forward_loop(
    k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: WKVState, keep: bool
) -> tuple[Tensor, WKVState, list[WKVState]]:
    """`wkv_step` over the token axis; ``keep``: also return the state before every token."""
    if k.shape[1] == 1 and not keep:  # one decode step
        out, state = wkv_step(k[:, 0], v[:, 0], w, u, state)
        return out.unsqueeze(1), state, []
    outputs, states = [], []
    for t in range(k.shape[1]):
        if keep:
            states.append(state)
        out, state = wkv_step(k[:, t], v[:, t], w, u, state)
        outputs.append(out)
    return torch.stack(outputs, dim=1), state, states


class _WKVFunction(torch.autograd.Function):
    r"""The WKV sequence with a hand-written backward (one graph node instead of ~12 per token).

    The forward is the `wkv_step` loop itself, so the outputs are bit-identical
    to the recurrent mode. The backward runs the recurrence in reverse in the
    same scaled form as the forward: with ``a_t = aa_t e^{pp_t}`` (and ``b``
    likewise) the gradients ``ga'_t = e^{pp_t}\,\partial L / \partial a_t`` obey

    $$
    ga'_t = \frac{e^{pp_t - q_t}}{\mathrm{den}_t}\, g_t + e^{pp_t - w - pp_{t+1}}\, ga'_{t+1},
    \qquad
    gb'_t = -\frac{e^{pp_t - q_t}}{\mathrm{den}_t}\, y_t g_t + e^{pp_t - w - pp_{t+1}}\, gb'_{t+1}
    $$

    (``q_t = max(pp_t, u + k_t)``, ``den_t`` the output's scaled denominator),
    and every factor is an exponential of a non-positive number, so the
    backward is as overflow-free as the forward.
    """

    @staticmethod
    def forward(ctx, k, v, w, u, aa, bb, pp):  # type: ignore[override]
        with torch.no_grad():
            out, final, states = _forward_loop(k, v, w, u, WKVState(aa, bb, pp), keep=True)
        stacked = [torch.stack(x, dim=1) for x in zip(*states, strict=True)]
        ctx.save_for_backward(k, v, w, u, aa, bb, pp, out, *stacked, final.pp)
        ctx.set_materialize_grads(False)
        return out, final.aa, final.bb, final.pp

    @staticmethod
    def backward(ctx, g_out, g_aa, g_bb, g_pp):  # type: ignore[override]
        k, v, w, u, aa0, bb0, pp0, out, AA, BB, PP, pp_next = ctx.saved_tensors
        cdt = AA.dtype
        kc, vc, wc, uc = (x.to(cdt) for x in (k, v, w, u))
        y = out.to(cdt)
        g_y = torch.zeros_like(y) if g_out is None else g_out.to(cdt)
        zeros = torch.zeros_like(AA[:, 0])
        # e^{pp} times the gradients of the real numerator / denominator a = aa e^{pp}, b = bb e^{pp}
        ga = zeros if g_aa is None else g_aa.to(cdt)
        gb = zeros if g_bb is None else g_bb.to(cdt)
        # the final (aa, bb, pp) as functions of (a, b, pp): what reaches pp itself, holding a and b
        g_scale = zeros if g_pp is None else g_pp.to(cdt)
        if g_aa is not None or g_bb is not None:
            aa_T, bb_T = _final_scaled(AA[:, -1], BB[:, -1], PP[:, -1], kc[:, -1], vc[:, -1], wc, pp_next)
            g_scale = g_scale - ga * aa_T - gb * bb_T
        gk, gv = torch.empty_like(kc), torch.empty_like(vc)
        gw, gu = torch.zeros_like(wc), torch.zeros_like(uc)
        for t in range(kc.shape[1] - 1, -1, -1):
            aa, bb, pp = AA[:, t], BB[:, t], PP[:, t]
            kt, vt, yt, gt = kc[:, t], vc[:, t], y[:, t], g_y[:, t]
            # the state update a_{t+1} = e^{-w} a_t + e^{k_t} v_t (b likewise), scaled by e^{-pp_{t+1}}
            decay = torch.exp(pp - wc - pp_next)  # <= 1 (0 before the first token, pp = -inf)
            fresh = torch.exp(kt - pp_next)  # <= 1
            gv_t = ga * fresh
            gk_t = fresh * (ga * vt + gb)
            gw -= (decay * (ga * aa + gb * bb)).sum(0)
            # the output y_t = (a_t + e^{u + k_t} v_t) / (b_t + e^{u + k_t}), scaled by e^{-q}
            ww = uc + kt
            q = torch.maximum(pp, ww)
            e1 = torch.exp(pp - q)
            e2 = torch.exp(ww - q)
            den = e1 * bb + e2
            direct = gt * e2 / den
            bonus = direct * (vt - yt)
            gk[:, t] = gk_t + bonus
            gv[:, t] = gv_t + direct
            gu += bonus.sum(0)
            # pp_{t+1} = max(pp_t - w, k_t): the running maximum's own gradient follows the branch taken
            # (split evenly on a tie, as torch.maximum does)
            from_k = (kt > pp - wc).to(cdt) + 0.5 * (kt == pp - wc).to(cdt)
            gk[:, t] += g_scale * from_k
            g_scale = g_scale * (1 - from_k)
            gw -= g_scale.sum(0)
            # to the state before token t
            scale = gt * e1 / den
            ga = scale + decay * ga
            gb = decay * gb - scale * yt
            pp_next = pp
        # the given start state: its outputs depend on aa_0 e^{pp_0} and bb_0 e^{pp_0}
        finite = torch.isfinite(pp0)
        gpp = torch.where(finite, ga * aa0.to(cdt) + gb * bb0.to(cdt) + g_scale, torch.zeros_like(ga))
        return (
            gk.to(k.dtype),
            gv.to(v.dtype),
            gw.to(w.dtype),
            gu.to(u.dtype),
            ga.to(aa0.dtype),
            gb.to(bb0.dtype),
            gpp.to(pp0.dtype),
        )


def _final_scaled(
    aa: Tensor, bb: Tensor, pp: Tensor, k: Tensor, v: Tensor, w: Tensor, pp_final: Tensor
) -> tuple[Tensor, Tensor]:
    """The last step's state update (``aa', bb'`` of `wkv_step`), recomputed for the backward."""
    e1 = torch.exp(pp - w - pp_final)
    e2 = torch.exp(k - pp_final)
    return e1 * aa + e2 * v, e1 * bb + e2


def wkv_sequence(
    k: Tensor, v: Tensor, w: Tensor, u: Tensor, state: WKVState | None = None
) -> tuple[Tensor, WKVState]:
    """A whole sequence: ``(WKV [B, T, C], final state)`` from keys and values ``[B, T, C]``.

    `wkv_step` applied token after token, starting from ``state``
    (None: `wkv_initial_state`). Splitting a sequence anywhere and carrying
    the state gives exactly the same outputs. When a gradient is needed, the
    loop runs once without a graph and a hand-written backward
    (`_WKVFunction`) gives the gradients of ``k``, ``v``, ``w``, ``u`` and
    the given state: the same values as differentiating the loop, at a
    fraction of its cost.
    """
    _check_sequence(k, v, w, u)
    B, T, C = k.shape
    if state is None:
        state = wkv_initial_state(B, C, dtype=k.dtype, device=k.device)
    needs_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (k, v, w, u, *state))
    if not needs_grad:
        out, final, _ = _forward_loop(k, v, w, u, state, keep=False)
        return out, final
    out, aa, bb, pp = _WKVFunction.apply(k, v, w, u, *state)
    return out, WKVState(aa, bb, pp)
