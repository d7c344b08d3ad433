r"""SNNMatmul: the product of two spike-encoded matrices (paper 2.3, eq. 3, corrected).

Both operands are encoded by EI_IF neurons over ``T`` steps with per-row
(per-token) scales: $X \approx s_X C_X$, $Y \approx s_Y C_Y$,
counts in ``[-T, T]``. The paper's $\sum_t S_X(t) S_Y(t)^\top$ is not the
product of the counts for EI_IF spike trains (see PAPER.md); the exact spiking
form accumulates with the running counts $C(t) = \sum_{i \le t} S(i)$:

$$
A(t) = A(t-1) + S_X(t)\,C_Y(t-1) + C_X(t-1)\,S_Y(t) + S_X(t)\,S_Y(t), \qquad A(T) = C_X C_Y .
$$

Every term is a spike (+1, -1 or 0) times an integer count: additions only.

Two layouts, both with scales that never mix tokens:

- ``x @ y.transpose(-1, -2)`` (``transpose_y=True``, attention's
  $Q K^\top$): ``x`` ``[..., m, k]`` and ``y`` ``[..., n, k]``, each
  scaled per row (per token); the result is $s_X s_Y^\top \odot (C_X C_Y^\top)$.
- ``x @ y`` (``transpose_y=False``, attention's $P V$): ``y``
  ``[..., k, n]`` is scaled per row (per key token); that scale cannot be
  taken out of the sum over ``k``, so it is moved onto the columns of ``x``
  first ($X Y = (X\,\mathrm{diag}(s_Y))\,C_Y$, exact algebra), and
  ``x diag(s_Y)`` is encoded per row.

Training uses the straight-through estimator: the backward pass is that of
the float product ``x @ y^T`` (or ``x @ y``).

Leading dimensions broadcast; for grouped-query attention pass ``y`` with
fewer heads and ``groups = heads_x // heads_y``. Integer products are exact
in float32 while ``k T^2 < 2**24``; beyond that the counts are multiplied in
float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking
from .functional.eiif import eiif_spikes_from_counts
from .functional.token_quantization import encode_tokens
from .quantizer import Quantizer

__all__ = ["SNNMatmul", "check_product_shapes", "exact_dtype", "telescoping_product", "telescoping_step"]


def telescoping_product(
    sx: Tensor, sy: Tensor, op: Callable[[Tensor, Tensor], Tensor] = torch.matmul
) -> Tensor:
    r"""Telescoping sum for spike trains ``sx`` ``[T, ..., m, k]`` and ``sy`` ``[T, ..., k, n]``.

    Returns $C_X C_Y$ ``[..., m, n]``, accumulated step by step from spikes
    and running counts (each term a spike times a count). ``op=torch.mul``
    gives the elementwise product $C_X \odot C_Y$ of two trains of one shape.
    """
    cx = torch.zeros_like(sx[0])
    cy = torch.zeros_like(sy[0])
    acc = torch.zeros_like(op(sx[0], sy[0]))
    for t in range(sx.shape[0]):
        acc, cx, cy = telescoping_step(acc, cx, cy, sx[t], sy[t], op)
    return acc


def telescoping_step(
    acc: Tensor,
    cx: Tensor,
    cy: Tensor,
    sx_t: Tensor,
    sy_t: Tensor,
    op: Callable[[Tensor, Tensor], Tensor] = torch.matmul,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One step of `telescoping_product`: $A \mathrel{+}= S_X C_Y + C_X S_Y + S_X S_Y$, then the counts.

    Returns:
        ``(acc, cx + sx_t, cy + sy_t)``.
    """
    return acc + op(sx_t, cy) + op(cx, sy_t) + op(sx_t, sy_t), cx + sx_t, cy + sy_t


def check_product_shapes(
    x_shape: Sequence[int], y_shape: Sequence[int], transpose_y: bool, groups: int, what: str = ""
) -> None:
    """``ValueError`` unless ``x @ y^T`` (or ``x @ y``) fits, ``y``'s heads (axis -3) repeated ``groups`` x.

    ``what`` qualifies the operands in the messages (e.g. ``"one step of "``).
    """
    x_shape, y_shape = tuple(x_shape), tuple(y_shape)
    if groups > 1 and len(y_shape) < 3:
        raise ValueError(f"groups > 1 needs y with a heads axis at dim -3, got {what}y of shape {y_shape}")
    heads = (y_shape[:-3] + (y_shape[-3] * groups,)) if groups > 1 else y_shape[:-2]
    k_y = y_shape[-1] if transpose_y else y_shape[-2]
    layout = "x @ y^T" if transpose_y else "x @ y"
    if x_shape[-1] != k_y:
        raise ValueError(
            f"shapes do not match for {layout}: {what}x {x_shape}, {what}y {y_shape} "
            f"(x's last axis {x_shape[-1]} != {k_y})"
        )
    _checks.check_broadcastable(
        f"the leading (batch, head) axes of x and y for {layout} (y's heads repeated groups={groups} times)",
        x=x_shape[:-2],
        y=heads,
    )


def exact_dtype(k: int, T: int, dtype: torch.dtype) -> torch.dtype:
    """The dtype in which products of counts in ``[-T, T]`` summed over ``k`` terms are exact integers.

    While ``k T^2 < 2**24``: ``dtype`` itself, or float32 for a half type (bfloat16 and float16
    hold integers exactly only up to 256 and 2048); float64 beyond.
    """
    if k * T * T >= 2**24:
        return torch.float64
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


class SNNMatmul(nn.Module):
    """Spiking matrix product; see the module docs.

    Args:
        timesteps: ``T`` of the EI_IF neurons encoding both operands.
        transpose_y: compute ``x @ y^T`` (default, ``Q K^T``) or ``x @ y`` (``P V``).
        path: ``"count"`` (default) or ``"spike"``.
    """

    def __init__(self, timesteps: int = 15, *, transpose_y: bool = True, path: str = "count") -> None:
        super().__init__()
        self.T = _checks.check_timesteps("timesteps", timesteps)
        _checks.check_choice("path", path, ("count", "spike"))
        self.transpose_y = _checks.check_bool("transpose_y", transpose_y)
        self.path = path
        self.quantizer = Quantizer(qmax=self.T)

    def extra_repr(self) -> str:
        return f"T={self.T}, transpose_y={self.transpose_y}, path={self.path!r}"

    def forward(self, x: Tensor, y: Tensor, *, groups: int = 1) -> Tensor:
        """Spiking ``x @ y^T`` (or ``x @ y``); ``groups`` repeats ``y``'s heads (dim -3) for GQA."""
        for name, t in (("x", x), ("y", y)):
            _checks.check_floating(name, t)
            _checks.check_rank(name, t, 2, "[..., rows, cols]")
        _checks.check_same_device("y", y, "x", x)
        for name, t in (("x", x), ("y", y)):
            _checks.check_finite(name, t)
        if x.dtype != y.dtype:
            raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
        groups = _checks.check_timesteps("groups", groups)
        check_product_shapes(x.shape, y.shape, self.transpose_y, groups)
        return self.product(x, self.encode(y), groups=groups, y=y)

    def encode(self, y: Tensor) -> Tensor:
        r"""``y``'s rows as EI_IF counts with each row's scale appended: ``[..., n, k + 1]``.

        Row $i$ holds $C_{Y,i}$ (integers in ``[-T, T]``) and, in the last
        column, $s_{Y,i}$, so that $Y_i \approx s_{Y,i} C_{Y,i}$. Rows are
        encoded independently, so the encoding of a growing ``y`` (a KV
        cache's keys or values) can be kept and extended instead of encoded
        again: `product` takes it in place of ``y``.
        """
        _checks.check_floating("y", y)
        _checks.check_rank("y", y, 2, "[..., rows, cols]")
        q = self.quantizer
        if q.per_token_symmetric and not q._observing:  # one kernel call on the CPU
            q._check_x(y)
            return encode_tokens(y, q.qmax, q.clip_ratio, q.eps)
        cy, sy, _ = q.quantize(y)  # per row of y; raises on NaN / Inf
        return torch.cat([cy, sy.to(cy.dtype)], dim=-1)

    def product(self, x: Tensor, encoded: Tensor, *, groups: int = 1, y: Tensor | None = None) -> Tensor:
        """The spiking product of ``x`` and an operand encoded by `encode` (``[..., n, k + 1]``).

        Equals ``forward(x, y)`` bit for bit when ``encoded = encode(y)``. For
        grouped-query attention, ``x``'s heads (axis -3) are ``groups`` times
        ``encoded``'s: head ``h`` of ``x`` meets head ``h // groups``, without
        repeating the encoded operand. ``y`` (the float operand, optional)
        only serves the straight-through gradient; without it no gradient
        reaches ``x``.
        """
        if x.dtype != encoded.dtype:
            raise TypeError(
                f"x and the encoded operand must have the same dtype, got {x.dtype} and {encoded.dtype}"
            )
        groups = _checks.check_timesteps("groups", groups)
        cy, sy = encoded[..., :-1], encoded[..., -1:]
        check_product_shapes(x.shape, cy.shape, self.transpose_y, groups)
        shape = x.shape
        xg = x
        if groups > 1:  # [..., H, m, k] -> [..., H / groups, groups * m, k]: the rows that meet one y head
            xg = x.reshape(*shape[:-3], shape[-3] // groups, groups * shape[-2], shape[-1])
        if self.transpose_y:
            cx, sx, _ = self.quantizer.quantize(xg)
            cy_mat = cy.transpose(-1, -2)
            out_scale = sx * sy.transpose(-1, -2)
        else:
            cx, sx, _ = self.quantizer.quantize(xg * sy.transpose(-1, -2))
            cy_mat = cy
            out_scale = sx
        k = x.shape[-1]
        dt = exact_dtype(k, self.T, x.dtype)
        if self.path == "count":
            prod = cx.to(dt) @ cy_mat.to(dt)
        else:
            prod = telescoping_product(
                eiif_spikes_from_counts(cx.to(dt), self.T), eiif_spikes_from_counts(cy_mat.to(dt), self.T)
            )
        out = (prod * out_scale.to(dt)).to(x.dtype)
        if groups > 1:
            out = out.reshape(*out.shape[:-3], shape[-3], shape[-2], out.shape[-1])
        if torch.is_grad_enabled() and (x.requires_grad or (y is not None and y.requires_grad)):
            # straight-through estimator: the gradient of the float product
            yr = y.repeat_interleave(groups, dim=-3) if y is not None and groups > 1 else y
            if yr is None:
                yr = (
                    (cy * sy).detach().repeat_interleave(groups, dim=-3) if groups > 1 else (cy * sy).detach()
                )
            exact = x @ (yr.transpose(-1, -2) if self.transpose_y else yr)
            out = out + (exact - exact.detach())
        if tracking():
            with torch.no_grad():
                m, n = out.shape[-2], out.shape[-1]
                # y's spikes once per head of x they meet (as if y were repeated for grouped-query attention)
                spikes_x, spikes_y = cx.abs().sum(), cy.abs().sum() * groups
                record(
                    "SNNMatmul",
                    spikes_x + spikes_y,
                    spikes_x * n + spikes_y * m,
                    out.numel() * k,
                )
        return out
