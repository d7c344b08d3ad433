r"""Per-token symmetric fake quantization, in place: the count path's hot loop.

For every row ``x`` of a ``[N, C]`` tensor (a token's vector), with the
largest level $Q$ (``qmax``, the neurons' time steps $T$) and the clip
ratio $c \in (0, 1]$:

$$
s = \max\bigl(\max_j |x_j| \cdot (c / Q),\ \varepsilon\bigr), \qquad
\hat x_j = s \cdot \operatorname{clip}\bigl(\operatorname{round}(x_j / s), -Q, Q\bigr),
$$

with ``round`` rounding halves away from zero, exactly as EI_IF counts do
(`round_half_away`). The row is overwritten with $\hat x$.

The work is split in two so that callers can quantize a slice of the
columns with the scales of whole rows (`quantized_linear` does):
`token_scales` finds $s$ for every row, `apply_token_scales` rounds.
Two implementations give the same bits:

- compiled kernels (numba, parallel over rows) for float32 / float64 tensors
  on the CPU: the largest magnitude of a row is an integer maximum of its bit
  patterns without the sign (so NaN and Inf are caught without a separate
  check), and the rounding pass allocates nothing;
- torch operations, on blocks of about ``chunk`` elements where they need
  temporaries, for everything else (CUDA, bfloat16, float16, or when numba
  cannot be imported).

Rounding without ties. For $h$ the largest float below $1/2$ in the
tensor's dtype, $\operatorname{round}(v) = \operatorname{sign}(v)\,\lfloor |v| + h \rfloor$
holds for every float $v$: at an exact tie $|v| + h$ rounds up to the next
integer, just below a tie it cannot reach it (checked exhaustively for every
float32 of magnitude below $2^{25}$ and every bfloat16 and float16).
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import smallest_scale

__all__ = [
    "apply_token_scales",
    "fake_quantize_tokens_",
    "encode_tokens",
    "half_below",
    "quantize_tokens_many_",
    "kernel_available",
    "quantize_tokens",
    "round_half_away",
    "token_scales",
]

NON_FINITE = "x must be finite, but it contains NaN or Inf (its scale is not finite)"


def half_below(dtype: torch.dtype) -> float:
    """The largest number below 1/2 representable in ``dtype`` (as a Python float, exactly).

    Floats in ``[1/4, 1/2)`` are spaced ``eps / 4`` apart (``eps = finfo(dtype).eps``).
    """
    return 0.5 - torch.finfo(dtype).eps / 4


def round_half_away(v: Tensor) -> Tensor:
    """Round to the nearest integer, halves away from zero, exactly (as EI_IF counts do).

    ``torch.round`` rounds halves to even. This computes
    ``trunc(v + copysign(h, v))`` with ``h`` the largest float below 1/2 in
    ``v``'s dtype, which is exact for every float (see the module docs).
    Returns a new tensor of ``v``'s dtype and shape.
    """
    return torch.full_like(v, half_below(v.dtype)).copysign_(v).add_(v).trunc_()


@functools.cache
def _kernels():
    """The compiled kernels ``(row_scales, in_place, apply_to)``, or None without numba."""
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this guards broken installs
        return None

    jit = numba.njit(cache=True, error_model="numpy", nogil=True, parallel=True)

    @jit
    def row_scales(a, bits, mask, limit, out, ratio, eps):  # pragma: no cover
        # The scale of every row of a [N, C] from its largest magnitude, an integer
        # maximum of the bit patterns (bits: a's memory as integers) without the sign:
        # Inf and NaN exceed every finite float. out (integers, [N]) ends up holding the
        # scales' bits. Returns False, with out unfinished, when a row is not finite.
        n, c = bits.shape
        for i in numba.prange(n):
            m = bits[i, 0] & mask
            for j in range(1, c):
                m = max(m, bits[i, j] & mask)
            out[i] = m
        for i in range(n):
            if out[i] >= limit:
                return False
        scales = out.view(a.dtype)
        for i in range(n):
            scales[i] = max(scales[i] * ratio, eps)
        return True

    @jit
    def in_place(a, scales, half, qmax):  # pragma: no cover
        # a[i, j] <- s_i * clip(round(a[i, j] / s_i)); one array, so the loop vectorizes.
        n, c = a.shape
        for i in numba.prange(n):
            s = scales[i]
            for j in range(c):
                x = a[i, j]
                a[i, j] = np.copysign(min(np.floor(abs(x) / s + half), qmax) * s, x)

    @jit
    def apply_to(src, k0, scales, half, qmax, dst, dequantize):  # pragma: no cover
        # dst[i, j] <- clip(round(src[i, k0 + j] / s_i)), times s_i if dequantize. Whole
        # rows of src come in (not a column slice) so that both arrays are contiguous.
        n, c = dst.shape
        for i in numba.prange(n):
            s = scales[i]
            f = s if dequantize else src.dtype.type(1)
            for j in range(c):
                x = src[i, k0 + j]
                dst[i, j] = np.copysign(min(np.floor(abs(x) / s + half), qmax) * f, x)

    return row_scales, in_place, apply_to


@functools.cache
def _rows_kernels():
    """``(serial, parallel)`` compilations of one kernel for one or several clip ratios, or None.

    ``quantize_rows(a, out, scales, ratios, eps, half, qmax, dequantize, big)``: for every row
    ``i`` of ``a`` ``[N, C]`` it finds the largest magnitude ``m_i`` once, and for every ratio
    ``r`` writes ``scales[r, i] = max(m_i * ratios[r], eps)`` and the levels (or ``s * q``) into
    ``out[r]`` ``[N, C]`` (``out[0]`` may be ``a`` itself). It returns False, writing nothing,
    when a value is not finite. The same float operations as the other kernels, so the same bits.
    The serial one starts no threading layer: for small inputs (a decoding step), where starting
    threads costs more than the work.
    """
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency; this guards broken installs
        return None

    def quantize_rows(a, out, scales, ratios, eps, half, qmax, dequantize, big):  # pragma: no cover
        n, c = a.shape
        finite = np.ones(n, dtype=np.bool_)
        for i in numba.prange(n):
            m = a.dtype.type(0)
            for j in range(c):
                v = abs(a[i, j])
                if not v <= big:  # NaN fails every comparison, Inf exceeds the largest finite float
                    finite[i] = False
                m = max(m, v)
            for r in range(ratios.shape[0]):
                scales[r, i] = max(m * ratios[r], eps)
        if not finite.all():
            return False
        for i in numba.prange(n):
            for r in range(ratios.shape[0]):
                s = scales[r, i]
                f = s if dequantize else a.dtype.type(1)
                for j in range(c):
                    x = a[i, j]
                    out[r, i, j] = np.copysign(min(np.floor(abs(x) / s + half), qmax) * f, x)
        return True

    options = {"cache": True, "error_model": "numpy", "nogil": True}
    return numba.njit(**options)(quantize_rows), numba.njit(parallel=True, **options)(quantize_rows)


#: Inputs of at most this many elements take the serial kernel: below it, starting the parallel
#: kernels' threads costs more than the work (a decoding step quantizes vectors of a few hundred).
SMALL = 1 << 14


@functools.cache
def _constants(dtype: torch.dtype, eps: float) -> tuple:
    """``(eps, half, big)`` of `quantize_rows` for ``dtype``, as numpy scalars."""
    t = np.float32 if dtype == torch.float32 else np.float64
    return t(smallest_scale(dtype, eps)), t(half_below(dtype)), t(torch.finfo(dtype).max)


def _rows_call(
    x: Tensor,
    out: Tensor,
    qmax: int,
    clip_ratios: Sequence[Tensor | float],
    eps: float,
    dequantize: bool,
    columns: int | None = None,
) -> Tensor | None:
    """``out[r]`` <- levels (or ``s q``) of the rows of ``x`` under ``clip_ratios[r]``, in one kernel call.

    ``x`` is a contiguous float32 / float64 CPU tensor ``[..., C]`` and ``out`` a contiguous one of shape
    ``[R, ..., C]`` (``out[0]`` may share ``x``'s memory). Returns the scales ``[R, ..., 1]``.
    With ``columns = C`` (one ratio), ``out`` is ``[N, C + 1]`` instead and gets the levels in its
    first ``C`` columns and the scales in the last; nothing is returned then.

    Raises:
        ValueError: when a value of ``x`` is not finite (nothing is written then).
    """
    serial = x.numel() <= SMALL
    rows = x.detach().view(-1, x.shape[-1])
    a = rows.numpy() if serial else _numpy(rows)  # `_numpy` sets numba's thread count to torch's
    flt_t = a.dtype.type
    # as `_ratio` computes it: the clip in x's dtype divided by qmax, rounded once
    ratios = np.array([flt_t(float(c)) / flt_t(qmax) for c in clip_ratios], dtype=a.dtype)
    eps_t, half, big = _constants(x.dtype, float(eps))
    if columns is None:
        scales = np.empty((len(ratios), a.shape[0]), dtype=a.dtype)
        dst = out.view(len(ratios), -1, x.shape[-1]).numpy()
    else:  # strided views into the packed [N, C + 1]
        full = out.numpy()
        dst, scales = full[None, :, :columns], full[None, :, columns]
    run_kernel(_rows_kernels(), serial, (a, dst, scales, ratios, eps_t, half, flt_t(qmax), dequantize, big))
    if columns is not None:
        return None
    return torch.from_numpy(scales).view(len(ratios), *x.shape[:-1], 1)


def encode_tokens(x: Tensor, qmax: int, clip_ratio: Tensor | float = 1.0, eps: float = 1e-8) -> Tensor:
    """Every vector's integer levels with its scale appended: ``[..., C + 1]`` (see `quantize_tokens`).

    ``out[..., :C]`` are the levels ``q`` and ``out[..., C]`` the scale ``s``, so ``s * q`` is what
    `fake_quantize_tokens_` writes; one kernel call on the CPU, `quantize_tokens` and a
    concatenation elsewhere. The same bits either way.

    Raises:
        ValueError: when a vector holds NaN or Inf.
    """
    x = x.detach()
    C = x.shape[-1]
    if C > 0 and _rows_kernel_applies(x):
        packed = x.new_empty(*x.shape[:-1], C + 1)
        full = packed.view(-1, C + 1)
        _rows_call(x, full, qmax, (clip_ratio,), eps, dequantize=False, columns=C)
        return packed
    q, scale = quantize_tokens(x, qmax, clip_ratio, eps)
    return torch.cat([q, scale.to(q.dtype)], dim=-1)


def run_kernel(kernels: tuple, serial: bool, args: tuple) -> None:
    """Call ``kernels[0]`` (serial) or ``kernels[1]`` (parallel, through `_kernel_call`) on ``args``.

    Raises:
        ValueError: when the kernel returns False (a value was not finite).
    """
    if serial:
        finite = kernels[0](*args)
    else:
        with _kernel_call():
            finite = kernels[1](*args)
    if not finite:
        raise ValueError(NON_FINITE)


def _rows_kernel_applies(x: Tensor) -> bool:
    """Whether `_rows_call` takes ``x``: a contiguous float32 / float64 CPU tensor with values, eagerly."""
    return x.numel() > 0 and x.is_contiguous() and kernel_available(x) and _rows_kernels() is not None


def _small(x: Tensor) -> bool:
    return x.numel() <= SMALL and _rows_kernel_applies(x)


def quantize_tokens_many_(
    x: Tensor, out: Tensor, qmax: int, clip_ratios: Sequence[Tensor | float], eps: float = 1e-8
) -> Tensor:
    r"""``out[r] = fake_quantize(x)`` under each clip ratio, with one pass for the rows' maxima.

    Several encoders that read one input (a decoder layer's queries, keys and values; its gate and
    up projections) differ only in their clip ratios $c_r$: $s_{r,i} = \max(c_r \max_j |x_{ij}| / Q,
    \varepsilon)$. Equals ``fake_quantize_tokens_(x.clone(), qmax, clip_ratios[r], eps)`` for every
    ``r``, bit for bit.

    Args:
        x: ``[..., C]`` floating tensor (read only).
        out: ``[R, ..., C]`` of ``x``'s dtype and device, ``R = len(clip_ratios)``; overwritten.
        qmax: the largest level ``Q``.
        clip_ratios: ``R`` clip ratios in ``(0, 1]`` (floats or 0-d tensors).
        eps: the smallest scale.

    Returns:
        ``out``.

    Raises:
        ValueError: when ``x`` holds NaN or Inf, or ``out`` has the wrong shape.
    """
    if out.shape != (len(clip_ratios), *x.shape) or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must be {x.dtype} of shape {(len(clip_ratios), *x.shape)} on {x.device}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    if x.shape[-1] > 0 and out.is_contiguous() and _rows_kernel_applies(x):
        _rows_call(x, out, qmax, clip_ratios, eps, dequantize=True)
        return out
    for r, c in enumerate(clip_ratios):
        out[r].copy_(x)
        fake_quantize_tokens_(out[r], qmax, c, eps)
    return out


_INT = {torch.float32: (np.int32, 0x7FFFFFFF, 0x7F800000), torch.float64: (np.int64, 2**63 - 1, 0x7FF << 52)}
_LOCK = threading.Lock()  # numba's fallback threading layer must not be entered twice at once


@contextlib.contextmanager
def _kernel_call():
    """Run one compiled kernel: one at a time, and leave torch's thread count as it was.

    numba's OpenMP threading layer shares torch's libgomp; starting it resets
    the number of OpenMP threads, which would silently change
    ``torch.get_num_threads()`` for everything after the first call.
    """
    threads = torch.get_num_threads()
    with _LOCK:
        try:
            yield
        finally:
            if torch.get_num_threads() != threads:
                torch.set_num_threads(threads)


def kernel_available(x: Tensor) -> bool:
    """Whether the compiled kernels handle ``x`` (float32 / float64 on the CPU, numba present).

    Not while ``torch.compile`` / ``torch.export`` traces: the graph takes the
    torch fallback, which gives the same values.
    """
    if torch.compiler.is_compiling():
        return False
    return x.device.type == "cpu" and x.dtype in _INT and _kernels() is not None


def _numpy(x: Tensor) -> np.ndarray:
    import numba

    torch_threads = torch.get_num_threads()
    threads = min(torch_threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != threads:  # the first call starts numba's threading layer (see _kernel_call)
        numba.set_num_threads(threads)
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    return x.detach().numpy()


def _ratio(x: Tensor, qmax: int, clip_ratio: Tensor | float) -> Tensor:
    return torch.as_tensor(clip_ratio, dtype=x.dtype, device=x.device) / qmax  # as the quantizer computes it


def token_scales(
    x: Tensor, qmax: int, clip_ratio: Tensor | float = 1.0, eps: float = 1e-8, *, compiled: bool = True
) -> Tensor:
    """``s = max(max_j |x_j| * (clip / qmax), eps)`` for every vector along the last axis.

    Args:
        x: ``[..., C]`` floating tensor (read only; autograd is ignored).
        qmax: the largest level ``Q >= 1``.
        clip_ratio: ``c`` in ``(0, 1]`` (a float or a 0-d tensor).
        eps: the smallest scale.
        compiled: use the compiled kernel where it applies (``False`` forces torch;
            the bits are the same).

    Returns:
        ``[..., 1]`` in ``x``'s dtype.

    Raises:
        ValueError: when a vector holds NaN or Inf.
    """
    ratio = _ratio(x, qmax, clip_ratio)
    eps = smallest_scale(x.dtype, eps)  # > 0 in x's dtype: 1e-8 is 0 in float16 (0 / 0 for a zero token)
    if x.dim() >= 1 and x.shape[-1] == 0:  # vectors of no values: nothing to scale
        return torch.full((*x.shape[:-1], 1), eps, dtype=x.dtype, device=x.device)
    if compiled and x.numel() > 0 and x.is_contiguous() and kernel_available(x):
        int_t, mask, limit = _INT[x.dtype]
        a = _numpy(x.view(-1, x.shape[-1]))
        out = np.empty(a.shape[0], dtype=int_t)
        flt_t = a.dtype.type
        with _kernel_call():
            finite = _kernels()[0](
                a, a.view(int_t), int_t(mask), int_t(limit), out, flt_t(ratio.item()), flt_t(eps)
            )
        if not finite:
            raise ValueError(NON_FINITE)
        return torch.from_numpy(out.view(a.dtype)).view(*x.shape[:-1], 1)
    scale = x.detach().abs().amax(-1, keepdim=True).mul_(ratio).clamp_min_(eps)
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(scale).all()):  # eager-only value check
        raise ValueError(NON_FINITE)
    return scale


def apply_token_scales(
    x: Tensor,
    scale: Tensor,
    qmax: int,
    *,
    out: Tensor | None = None,
    columns: tuple[int, int] | None = None,
    dequantize: bool = True,
    chunk: int = 1 << 16,
    compiled: bool = True,
) -> Tensor:
    """``s * clip(round(x / s), -qmax, qmax)`` (or the levels alone) with given per-vector scales.

    Args:
        x: ``[..., C]`` floating tensor without autograd (any strides).
        scale: ``[..., 1]`` positive finite scales in ``x``'s dtype (from `token_scales`,
            possibly of wider vectors whose columns ``x`` is a slice of).
        qmax: the largest level.
        out: where to write (``[..., C]``, ``x``'s dtype; may be ``x`` itself);
            default a new tensor.
        columns: ``(k0, k1)``: quantize only ``x[..., k0:k1]`` (``out`` is then
            ``[..., k1 - k0]``); faster than passing the slice, which is not contiguous.
        dequantize: write ``s * q`` (default) or the levels ``q``.
        chunk: elements per block of the torch implementation.
        compiled: use the compiled kernel where it applies.

    Returns:
        ``out``.
    """
    if x.dim() < 1:
        raise ValueError("x must have at least one axis (the vectors are along the last)")
    k0, k1 = (0, x.shape[-1]) if columns is None else columns
    if not 0 <= k0 <= k1 <= x.shape[-1]:
        raise ValueError(f"columns must satisfy 0 <= k0 <= k1 <= {x.shape[-1]}, got {columns!r}")
    if scale.dtype != x.dtype or scale.shape != (*x.shape[:-1], 1):
        raise ValueError(
            f"scale must be {x.dtype} of shape {(*x.shape[:-1], 1)}, got {scale.dtype} {tuple(scale.shape)}"
        )
    if out is None:
        out = x.new_empty(*x.shape[:-1], k1 - k0)
    elif out.dtype != x.dtype or out.shape != (*x.shape[:-1], k1 - k0) or out.device != x.device:
        raise ValueError(
            f"out must be {x.dtype} of shape {(*x.shape[:-1], k1 - k0)} on {x.device}, "
            f"got {out.dtype} {tuple(out.shape)} on {out.device}"
        )
    if torch.compiler.is_compiling():  # traced: the same operations, out of place (no aliasing to inspect)
        rows = x[..., k0:k1]
        a = rows.abs().div(scale).add(half_below(x.dtype)).trunc().clamp_max(qmax)
        out.copy_(torch.copysign(a.mul(scale) if dequantize else a, rows))
        return out
    if out.numel() == 0:  # nothing to write (empty tensors may share a null data pointer)
        return out
    same = out.data_ptr() == x.data_ptr() and out.stride() == x.stride() and columns is None
    if not same and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        raise ValueError("out must be x itself or memory apart from it, not a part of x")
    half = half_below(x.dtype)
    flat = [t.dim() == 2 or t.is_contiguous() for t in (x, out, scale)]  # [N, C] views without copies
    if compiled and kernel_available(x) and all(flat):
        src, dst = (_numpy(t.view(-1, t.shape[-1])) for t in (x, out))
        scales, flt_t = _numpy(scale.view(-1)), src.dtype.type
        with _kernel_call():
            if same and dequantize:
                _kernels()[1](dst, scales, flt_t(half), flt_t(qmax))  # one array: vectorizes
            else:
                _kernels()[2](src, k0, scales, flt_t(half), flt_t(qmax), dst, dequantize)
        return out
    rows_in, rows_out = x[..., k0:k1].reshape(-1, k1 - k0), out.view(-1, out.shape[-1])
    scales = scale.reshape(-1, 1)
    step = max(1, chunk // max(1, x.shape[-1]))
    for start in range(0, rows_in.shape[0], step):
        block, s = rows_in[start : start + step], scales[start : start + step]
        a = block.abs().div_(s).add_(half).trunc_().clamp_max_(qmax)
        if dequantize:
            a.mul_(s)
        torch.copysign(a, block, out=rows_out[start : start + step])
    return out


def fake_quantize_tokens_(
    x: Tensor,
    qmax: int,
    clip_ratio: Tensor | float = 1.0,
    eps: float = 1e-8,
    *,
    chunk: int = 1 << 16,
    compiled: bool = True,
) -> Tensor:
    """Fake-quantize every vector along the last axis of ``x`` in place (see the module docs).

    Args:
        x: ``[..., C]`` floating tensor without autograd; overwritten.
        qmax: the largest level ``Q >= 1`` (as in `token_scales`).
        clip_ratio: ``c`` in ``(0, 1]`` (as in `token_scales`).
        eps: the smallest scale (as in `token_scales`).
        chunk: elements per block of the torch implementation.
        compiled: use the compiled kernel where it applies (as in `token_scales`).

    Returns:
        ``x``.

    Raises:
        ValueError: when a vector holds NaN or Inf; ``x`` is then left untouched.
    """
    if x.numel() == 0:
        return x
    if not x.is_contiguous():
        dense = fake_quantize_tokens_(x.contiguous(), qmax, clip_ratio, eps, chunk=chunk, compiled=compiled)
        return x.copy_(dense)
    if compiled and x.shape[-1] > 0 and _small(x):
        _rows_call(x, x.unsqueeze(0), qmax, (clip_ratio,), eps, dequantize=True)
        return x
    scale = token_scales(x, qmax, clip_ratio, eps, compiled=compiled)
    return apply_token_scales(x, scale, qmax, out=x, chunk=chunk, compiled=compiled)


def quantize_tokens(
    x: Tensor, qmax: int, clip_ratio: Tensor | float = 1.0, eps: float = 1e-8, *, compiled: bool = True
) -> tuple[Tensor, Tensor]:
    """The integer levels and scales of every vector along the last axis of ``x``.

    Args:
        x: ``[..., C]`` floating tensor (read only; autograd is ignored).
        qmax: the largest level ``Q >= 1`` (as in `token_scales`).
        clip_ratio: ``c`` in ``(0, 1]`` (as in `token_scales`).
        eps: the smallest scale (as in `token_scales`).
        compiled: use the compiled kernel where it applies (as in `token_scales`).

    Returns:
        ``(q, s)``: ``q`` ``[..., C]`` in ``x``'s dtype with integer values in
        ``[-qmax, qmax]``, and ``s`` ``[..., 1]``; ``s * q`` is what
        `fake_quantize_tokens_` writes.

    Raises:
        ValueError: when a vector holds NaN or Inf.
    """
    x = x.detach()
    if compiled and x.shape[-1] > 0 and _small(x):
        q = torch.empty_like(x)
        return q, _rows_call(x, q.unsqueeze(0), qmax, (clip_ratio,), eps, dequantize=False)[0]
    scale = token_scales(x, qmax, clip_ratio, eps, compiled=compiled)
    return apply_token_scales(x, scale, qmax, dequantize=False, compiled=compiled), scale
