r"""Quantizer: the ANN twin of a layer of EI_IF neurons (paper section 3.1, eq. 19).

Symmetric quantization with ``b`` bits and $Q = 2^{b-1} - 1$:

$$
q = \operatorname{clip}(\operatorname{round}(x / s), -Q, Q), \qquad \hat x = s\,q,
$$

with ``round`` rounding halves away from zero. This is exactly the spike
count of EI_IF neurons with the default thresholds over $T = Q$ steps fed
$x / s$ (paper eq. 21; `eiif_count`); torch's ``round`` rounds
halves to even, which would break that equivalence.

Asymmetric quantization with a real zero point:
$q = \operatorname{clip}(\operatorname{round}(x/s) + z, 0, 2^b - 1)$,
$\hat x = s (q - z)$.

Scales (``granularity``):

- ``"token"``: one scale per vector along the last axis (per token),
  computed from the input itself (``dynamic=True``, the default) or calibrated;
  with ``group_size`` $G$, one dynamic scale per token and per group of $G$
  consecutive channels (channels $[gG, (g+1)G)$ share $s_g$);
- ``"channel"``: one scale per index of the last axis, calibrated;
- ``"tensor"``: one scale, calibrated.

Only per-token scales may be dynamic: a scale computed over a batch would let
one sequence change another's output. Calibrate static scales with
`calibrating`.

Training uses the straight-through estimator (eq. 23): the gradient passes
unchanged where ``x`` is inside the representable range and is 0 where it was
clipped.
"""

from __future__ import annotations

import numbers
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from . import _checks
from .functional.token_quantization import (
    fake_quantize_tokens_,
    quantize_tokens,
    round_half_away,
    token_scales,
)

__all__ = ["Quantizer", "round_half_away", "GRANULARITIES"]

GRANULARITIES = ("token", "channel", "tensor")


class Quantizer(nn.Module):
    """Fake quantizer with the straight-through estimator.

    Args:
        bits: bit width ``b >= 2``.
        symmetric: symmetric (default, matches EI_IF neurons) or asymmetric with a zero point.
        granularity: ``"token"``, ``"channel"`` or ``"tensor"``.
        dynamic: compute per-token scales from each input (only for ``"token"``).
        qmax: override the largest level ``Q`` of symmetric quantization (e.g. the
            number of time steps ``T`` of the EI_IF neurons it stands for).
        eps: smallest scale (guards all-zero tokens).
        clip: dynamic per-token scales are ``clip * max|x| / qmax`` (default 1:
            no clipping); a ``clip < 1`` saturates the largest values at ``±qmax``
            and resolves the rest more finely. Stored as the buffer
            ``clip_ratio`` (saved with the state dict), so it can be calibrated.
        group_size: ``G``: dynamic symmetric per-token scales for every group of
            ``G`` consecutive channels instead of the whole token (default
            ``None``: one scale per token). The channel count must be a multiple
            of ``G``. A few large channels then coarsen only their own group.

    Shapes: input ``[..., C]``; the scale is ``[..., 1]`` (token), ``[..., C]``
    (token with ``group_size``: each value's group scale), ``[C]`` (channel) or
    ``[]`` (tensor).
    """

    def __init__(
        self,
        bits: int = 8,
        *,
        symmetric: bool = True,
        granularity: str = "token",
        dynamic: bool = True,
        qmax: int | None = None,
        eps: float = 1e-8,
        clip: float = 1.0,
        group_size: int | None = None,
    ) -> None:
        super().__init__()
        symmetric = _checks.check_bool("symmetric", symmetric)
        dynamic = _checks.check_bool("dynamic", dynamic)
        if group_size is not None:
            group_size = _checks.check_timesteps("group_size", group_size)
            if not (symmetric and dynamic and granularity == "token"):
                raise ValueError(
                    "group_size needs dynamic symmetric per-token scales "
                    "(symmetric=True, dynamic=True, granularity='token')"
                )
        if isinstance(clip, bool) or not isinstance(clip, numbers.Real):
            raise TypeError(f"clip must be a float in (0, 1], got {type(clip).__name__} {clip!r}")
        if not 0.0 < clip <= 1.0:
            raise ValueError(f"clip must be a float in (0, 1], got {clip!r}")
        if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
            raise TypeError(f"bits must be an int >= 2, got {type(bits).__name__} {bits!r}")
        if bits < 2:
            raise ValueError(f"bits must be an int >= 2, got {bits!r}")
        bits = int(bits)
        _checks.check_number("eps", eps)  # a zero eps would make an all-zero token 0 / 0 = NaN
        _checks.check_positive("eps", eps)
        _checks.check_choice("granularity", granularity, GRANULARITIES)
        if dynamic and granularity != "token":
            raise ValueError(
                f"dynamic scales are only allowed with granularity='token' (got {granularity!r}): a scale "
                "computed over a batch would let one sequence change another's output; calibrate instead"
            )
        if qmax is not None:
            if not symmetric:
                raise ValueError("qmax can only be set for symmetric quantization")
            qmax = _checks.check_timesteps("qmax", qmax)
        self.bits = bits
        self.symmetric = bool(symmetric)
        self.granularity = granularity
        self.dynamic = bool(dynamic)
        self.qmax = qmax if qmax is not None else (2 ** (bits - 1) - 1 if symmetric else 2**bits - 1)
        self.eps = float(eps)
        self.group_size = group_size
        self.register_buffer("clip_ratio", torch.tensor(float(clip)))
        self.register_buffer("scale", None)
        self.register_buffer("zero_point", None)
        self._observing = False
        self._lo: Tensor | None = None
        self._hi: Tensor | None = None

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, qmax={self.qmax}, symmetric={self.symmetric}, "
            f"granularity={self.granularity!r}, dynamic={self.dynamic}, calibrated={self.scale is not None}"
            + (f", group_size={self.group_size}" if self.group_size is not None else "")
            + (f", clip={float(self.clip_ratio):.3g}" if float(self.clip_ratio) != 1.0 else "")
        )

    # ------------------------------------------------------------ checks
    def _check_x(self, x: Tensor) -> None:
        """``x`` must be a floating tensor ``[..., C]`` (any rank for per-tensor scales) that fits the
        calibrated scales; with static scales it must be finite (a dynamic scale catches NaN itself)."""
        _checks.check_floating("x", x)
        if self.granularity != "tensor":
            _checks.check_rank("x", x, 1, "[..., C]")
        if self.clip_ratio.requires_grad:  # a learned clip ratio may leave (0, 1]: a scale <= 0 is garbage
            _checks.check_positive("clip_ratio", self.clip_ratio)
        if self.scale is not None and not (self.dynamic or self._observing):
            _checks.check_same_device("x", x, "the quantizer's calibrated scale", self.scale)
            if self.granularity == "channel" and x.shape[-1] != self.scale.shape[-1]:
                raise ValueError(
                    f"x must have {self.scale.shape[-1]} channels in its last axis (the calibrated "
                    f"per-channel scales), got {x.shape[-1]}"
                )
            _checks.check_finite("x", x)  # a static scale stays finite: NaN / Inf would pass silently

    # ------------------------------------------------------------ scales
    def _reduce(self, x: Tensor, op: str) -> Tensor:
        fn = torch.amax if op == "max" else torch.amin
        if x.numel() == 0:  # nothing seen: a zero range (the scale becomes eps)
            shape = {"token": (*x.shape[:-1], 1), "channel": x.shape[-1:], "tensor": ()}[self.granularity]
            return x.new_zeros(shape)
        if self.granularity == "token":
            return fn(x, dim=-1, keepdim=True)
        if self.granularity == "channel":
            return fn(x.reshape(-1, x.shape[-1]), dim=0)
        return fn(x)

    def _scale_from(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor | None]:
        eps = _checks.smallest_scale(lo.dtype, self.eps)  # > 0 in lo's dtype (1e-8 is 0 in float16)
        if self.symmetric:
            amax = torch.maximum(lo.abs(), hi.abs())
            return (amax / self.qmax).clamp_min(eps), None
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)
        scale = ((hi - lo) / self.qmax).clamp_min(eps)
        zero = round_half_away(-lo / scale).clamp(0, self.qmax)
        return scale, zero

    @property
    def per_token_symmetric(self) -> bool:
        """Dynamic symmetric per-token scales: the case the fused routines of `token_quantization` handle."""
        return self.symmetric and self.dynamic and self.granularity == "token" and self.group_size is None

    def grouped(self, x: Tensor) -> Tensor:
        """``x`` ``[..., C]`` viewed as ``[..., C / G, G]`` (the groups of ``group_size``).

        Raises:
            ValueError: when ``C`` is not a multiple of ``group_size`` (or there is none).
        """
        G = self.group_size
        if G is None:
            raise ValueError("this Quantizer has no group_size")
        if x.dim() < 1 or x.shape[-1] % G:
            raise ValueError(
                f"x's last axis ({x.shape[-1] if x.dim() else 'none'}) must be a multiple of group_size ({G})"
            )
        return x.reshape(*x.shape[:-1], x.shape[-1] // G, G)

    def scales(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(scale, zero_point)`` for ``x`` (dynamic) or the calibrated ones."""
        self._check_x(x)
        if self.dynamic and not self._observing:
            if self.group_size is not None:  # each value gets its group's scale
                g = self.grouped(x)
                s = token_scales(g, self.qmax, self.clip_ratio, self.eps)
                return s.expand(g.shape).reshape(x.shape), None
            if self.symmetric:  # the largest magnitude of each token; raises on NaN / Inf
                return token_scales(x, self.qmax, self.clip_ratio, self.eps), None
            x = x.detach()
            return self._scale_from(self._reduce(x, "min"), self._reduce(x, "max"))
        if self.scale is None:
            raise RuntimeError(
                "this Quantizer has static scales but was never calibrated: run data through it inside "
                "`with quantizer.calibrating():` first"
            )
        return self.scale, self.zero_point

    @contextmanager
    def calibrating(self):
        """Record the range of every input seen in the block; set static scales at its end.

        Inputs pass through unquantized while calibrating. Afterwards the
        quantizer uses the calibrated scales (``dynamic`` becomes False).
        """
        if self.group_size is not None:
            raise ValueError("a Quantizer with group_size has dynamic scales only: it cannot be calibrated")
        self._observing, self._lo, self._hi = True, None, None
        try:
            yield self
        finally:
            self._observing = False
        if self._lo is None:
            raise RuntimeError("no data was seen while calibrating")
        if not (bool(torch.isfinite(self._lo).all()) and bool(torch.isfinite(self._hi).all())):
            raise ValueError("calibration data must be finite: the scales would not be (NaN or Inf was seen)")
        scale, zero = self._scale_from(self._lo, self._hi)
        self.scale = scale
        self.zero_point = zero
        self.dynamic = False

    def _observe(self, x: Tensor) -> None:
        x = x.detach()
        if self.granularity == "token":
            lo, hi = x.amin(), x.amax()  # a static per-token scale is one scale for every token
        else:
            lo, hi = self._reduce(x, "min"), self._reduce(x, "max")
        self._lo = lo if self._lo is None else torch.minimum(self._lo, lo)
        self._hi = hi if self._hi is None else torch.maximum(self._hi, hi)

    # ------------------------------------------------------------ quantize
    def quantize(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Integer levels ``q`` (in ``x``'s dtype), the scale and the zero point."""
        self._check_x(x)
        if self.per_token_symmetric and not self._observing:
            q, scale = quantize_tokens(x, self.qmax, self.clip_ratio, self.eps)  # fused on the CPU
            return q, scale, None
        if self.group_size is not None:  # never calibrated: every group is quantized as a token of its own
            g = self.grouped(x)
            q, scale = quantize_tokens(g, self.qmax, self.clip_ratio, self.eps)
            return q.reshape(x.shape), scale.expand(g.shape).reshape(x.shape), None
        scale, zero = self.scales(x)
        scale = scale.to(x.dtype)
        if not _checks.tracing() and not bool(torch.isfinite(scale).all()):
            raise ValueError("x must be finite, but it contains NaN or Inf (its scale is not finite)")
        if self.symmetric:
            q = round_half_away(x.detach() / scale).clamp_(-self.qmax, self.qmax)
        else:
            q = (round_half_away(x.detach() / scale) + zero.to(x.dtype)).clamp_(0, self.qmax)
        return q, scale, zero

    def fake_quantize_(self, x: Tensor, *, chunk: int = 1 << 16) -> Tensor:
        """``dequantize(quantize(x))`` written into ``x`` itself (no autograd).

        Dynamic symmetric per-token scales (also with ``group_size``: each group
        is a vector of its own) take the fused in-place routine
        `fake_quantize_tokens_` (a compiled kernel on the CPU, torch blocks of
        about ``chunk`` elements elsewhere), with no temporary the size of ``x``;
        other settings fall back to :meth:`quantize` and :meth:`dequantize`.
        """
        grouped = self.group_size is not None
        if not (self.per_token_symmetric or grouped) or x.requires_grad:
            q, scale, zero = self.quantize(x)
            return x.copy_(self.dequantize(q, scale, zero))
        self._check_x(x)
        if grouped:
            if not x.is_contiguous():
                return x.copy_(self.fake_quantize_(x.contiguous(), chunk=chunk))
            fake_quantize_tokens_(self.grouped(x), self.qmax, self.clip_ratio, self.eps, chunk=chunk)
            return x
        return fake_quantize_tokens_(x, self.qmax, self.clip_ratio, self.eps, chunk=chunk)

    def dequantize(self, q: Tensor, scale: Tensor, zero: Tensor | None) -> Tensor:
        """``s q`` (symmetric) or ``s (q - z)`` (asymmetric)."""
        return q * scale if zero is None else (q - zero.to(q.dtype)) * scale

    @property
    def learns_clip(self) -> bool:
        """Whether ``clip_ratio`` gets a gradient (after ``clip_ratio.requires_grad_()``)."""
        return self.clip_ratio.requires_grad and self.dynamic and self.symmetric

    def forward(self, x: Tensor) -> Tensor:
        r"""Fake-quantized ``x`` with a straight-through gradient (identity inside the range).

        When ``clip_ratio`` requires grad (dynamic symmetric scales), it also gets
        the learned-step-size gradient (LSQ): with $s = c \max|x| / Q$ and
        $v = x / s$, $\partial \hat x / \partial s = q - v$ inside the range and
        $q$ where $x$ was clipped; the value of $\hat x$ is unchanged.
        """
        self._check_x(x)
        if self._observing:
            self._observe(x)
            return x
        q, scale, zero = self.quantize(x)
        xq = self.dequantize(q, scale, zero)
        learn_clip = self.learns_clip
        if not (x.requires_grad or learn_clip):
            return xq
        if self.symmetric:
            inside = (x.detach() / scale).abs() <= self.qmax + 0.5
        else:
            v = x.detach() / scale + zero.to(x.dtype)
            inside = (v >= -0.5) & (v <= self.qmax + 0.5)
        if learn_clip:  # zero in value, the LSQ gradient to the clip ratio through s
            c = self.clip_ratio.to(x.dtype)
            s = scale * (c / c.detach())
            v = x.detach() / s
            term = s * torch.where(inside, v + (q - v).detach(), q)
            xq = xq + (term - term.detach())
        return xq + (x - x.detach()) * inside.to(x.dtype)
