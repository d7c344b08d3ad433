r"""The count path of `SNNMultiply` in one compiled pass: encode both operands and multiply the counts.

For operands ``x`` and ``y`` ``[N, C]`` (tokens, channels), fixed channel
scales $g_x, g_y$ ``[C]`` (ones when absent) and groups of $G$ consecutive
channels, every token's group is encoded by EI_IF neurons over $Q$ steps
(`token_quantization`), then the counts are multiplied:

$$
\tilde x = x / g_x, \quad
s_x = \max\bigl(\max_{j \in \text{group}} |\tilde x_j| \cdot c / Q,\ \varepsilon\bigr), \quad
C_x = \operatorname{clip}(\operatorname{round}(\tilde x / s_x), -Q, Q),
$$

likewise for ``y``, and $\text{out} = (C_x C_y)\,(s_x s_y)\,(g_x g_y)$, with the float
operations in this order, so the bits are those of `SNNMultiply`'s torch
code. One pass over the operands instead of about fifteen torch operations:
at a decoding step the operands are a few thousand values and the
operations' own cost is what counts.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import Tensor

from .token_quantization import SMALL, _constants, _numpy, kernel_available, run_kernel

__all__ = ["multiply_counts", "multiply_counts_applies"]


@functools.cache
def _kernels():
    """``(serial, parallel)`` compilations of the product kernel, or None without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this guards broken installs
        return None

    def product(x, y, gx, gy, out, G, ratio, eps, half, qmax, big):  # pragma: no cover
        n, c = x.shape
        groups = c // G
        finite = np.ones(n, dtype=np.bool_)
        for i in numba.prange(n):
            for g in range(groups):
                mx = x.dtype.type(0)
                my = x.dtype.type(0)
                for j in range(g * G, (g + 1) * G):
                    a = abs(x[i, j] / gx[j])
                    b = abs(y[i, j] / gy[j])
                    if not (a <= big and b <= big):  # NaN fails every comparison
                        finite[i] = False
                    mx = max(mx, a)
                    my = max(my, b)
                sx = max(mx * ratio, eps)
                sy = max(my * ratio, eps)
                ss = sx * sy
                for j in range(g * G, (g + 1) * G):
                    a = x[i, j] / gx[j]
                    b = y[i, j] / gy[j]
                    ca = np.copysign(min(np.floor(abs(a) / sx + half), qmax), a)
                    cb = np.copysign(min(np.floor(abs(b) / sy + half), qmax), b)
                    out[i, j] = ((ca * cb) * ss) * (gx[j] * gy[j])
        return finite.all()

    options = {"cache": True, "error_model": "numpy", "nogil": True}
    return numba.njit(**options)(product), numba.njit(parallel=True, **options)(product)


def multiply_counts_applies(x: Tensor, y: Tensor) -> bool:
    """Whether `multiply_counts` runs on ``x`` and ``y``: contiguous float32 / float64 CPU tensors of one
    shape and dtype with values, in eager mode."""
    return (
        x.shape == y.shape
        and x.dtype == y.dtype
        and x.numel() > 0
        and x.is_contiguous()
        and y.is_contiguous()
        and kernel_available(x)
        and _kernels() is not None
    )


def multiply_counts(
    x: Tensor,
    y: Tensor,
    qmax: int,
    clip_ratio: Tensor | float,
    eps: float,
    group_size: int | None,
    x_channel_scale: Tensor | None = None,
    y_channel_scale: Tensor | None = None,
) -> Tensor:
    """The spiking product of ``x`` and ``y`` (see the module docs); a new tensor of their shape.

    Args:
        x: ``[..., C]`` (see `multiply_counts_applies` for where it runs).
        y: ``[..., C]``, like ``x``.
        qmax: ``Q``, the encoders' time steps.
        clip_ratio: ``c`` (a float or a 0-d tensor).
        eps: the smallest scale.
        group_size: ``G`` (``C`` must be a multiple), or None: the whole token.
        x_channel_scale: ``[C]`` or None (ones).
        y_channel_scale: ``[C]`` or None (ones).

    Raises:
        ValueError: when a value is not finite.
    """
    C = x.shape[-1]
    G = C if group_size is None else group_size
    if C % G:
        raise ValueError(f"x's last axis ({C}) must be a multiple of group_size ({G})")
    ones = None
    if x_channel_scale is None or y_channel_scale is None:
        ones = torch.ones(C, dtype=x.dtype)
    gx = (ones if x_channel_scale is None else x_channel_scale.to(x.dtype).contiguous()).numpy()
    gy = (ones if y_channel_scale is None else y_channel_scale.to(x.dtype).contiguous()).numpy()
    out = torch.empty_like(x)
    serial = x.numel() <= SMALL
    xs, ys = (t.detach().view(-1, C) for t in (x, y))
    a = xs.numpy() if serial else _numpy(xs)
    flt_t = a.dtype.type
    eps_t, half, big = _constants(x.dtype, float(eps))
    ratio = flt_t(float(clip_ratio)) / flt_t(qmax)  # as the quantizer: the clip in x's dtype over qmax
    args = (a, ys.numpy(), gx, gy, out.view(-1, C).numpy(), G, ratio, eps_t, half, flt_t(qmax), big)
    run_kernel(_kernels(), serial, args)
    return out
