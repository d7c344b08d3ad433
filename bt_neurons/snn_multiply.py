r"""SNNMultiply: the elementwise product of two spike-encoded tensors.

A gated MLP multiplies two activations elementwise, $\mathrm{SiLU}(g) \odot u$.
Both operands are encoded by EI_IF neurons over ``T`` steps with per-token
scales, $x \approx s_x C_x$, $y \approx s_y C_y$ (counts in ``[-T, T]``),
and the product is $s_x s_y\,(C_x \odot C_y)$.

- ``path="count"``: the counts in closed form, multiplied once;
- ``path="spike"``: the same telescoping sum as `SNNMatmul`, elementwise,
  $A(t) = A(t-1) + S_x(t) C_y(t-1) + C_x(t-1) S_y(t) + S_x(t) S_y(t)$, so that
  every term is a spike times an integer count (additions only).

The two paths are equal exactly: the counts are integers and their products
are exact in float32 while $T^2 < 2^{24}$.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking
from .functional.count_product import multiply_counts, multiply_counts_applies
from .functional.eiif import eiif_spikes_from_counts
from .quantizer import Quantizer
from .snn_matmul import telescoping_product

__all__ = ["SNNMultiply"]


class SNNMultiply(nn.Module):
    """Spiking elementwise product ``x * y`` of two tensors of one shape ``[..., C]``.

    Args:
        timesteps: ``T`` of the EI_IF neurons encoding both operands. Default 15.
        path: ``"count"`` (default) or ``"spike"``.
        channels: ``C``, to give every encoding neuron its own threshold: the
            buffers ``x_channel_scale`` and ``y_channel_scale`` ``[C]`` (ones until
            calibrated) divide each operand before its per-token encoding and
            multiply the decoded values back, so a few large channels no longer
            set every token's scale. Default None: one threshold for all.
        group_size: ``G``: one scale per token and per group of ``G``
            consecutive channels (`Quantizer`'s ``group_size``). Default None:
            one per token.

    Scales are per token (the last axis; or per token and group) times the
    fixed channel scales, so no token changes another's output.
    """

    def __init__(
        self,
        timesteps: int = 15,
        *,
        path: str = "count",
        channels: int | None = None,
        group_size: int | None = None,
    ) -> None:
        super().__init__()
        self.T = _checks.check_timesteps("timesteps", timesteps)
        _checks.check_choice("path", path, ("count", "spike"))
        self.path = path
        self.quantizer = Quantizer(qmax=self.T, group_size=group_size)
        if channels is not None:
            channels = _checks.check_timesteps("channels", channels)
            if group_size is not None and channels % group_size:
                raise ValueError(f"channels ({channels}) must be a multiple of group_size ({group_size})")
            self.register_buffer("x_channel_scale", torch.ones(channels))
            self.register_buffer("y_channel_scale", torch.ones(channels))
        else:
            self.x_channel_scale = self.y_channel_scale = None

    def extra_repr(self) -> str:
        channels = None if self.x_channel_scale is None else self.x_channel_scale.numel()
        return f"T={self.T}, path={self.path!r}, channels={channels}"

    def _fused(self, x: Tensor, y: Tensor) -> bool:
        """Whether `multiply_counts` computes this call (count path, no autograd, spikes not tracked)."""
        q = self.quantizer
        return (
            self.path == "count"
            and not tracking()
            and not (torch.is_grad_enabled() and (x.requires_grad or y.requires_grad or q.learns_clip))
            and (q.per_token_symmetric or q.group_size is not None)
            and not q._observing
            and (
                self.x_channel_scale is None
                or (self.x_channel_scale.shape == x.shape[-1:] and self.x_channel_scale.device == x.device)
            )
            and multiply_counts_applies(x, y)
        )

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        for name, t in (("x", x), ("y", y)):
            _checks.check_floating(name, t)
            _checks.check_rank(name, t, 1, "[..., C]")
        _checks.check_same_device("y", y, "x", x)
        for name, t in (("x", x), ("y", y)):
            _checks.check_finite(name, t)  # here, so that the message names the operand
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.dtype != y.dtype:
            raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
        if self._fused(x, y):  # the count path at inference: one compiled pass, the same bits
            q = self.quantizer
            return multiply_counts(
                x, y, q.qmax, q.clip_ratio, q.eps, q.group_size, self.x_channel_scale, self.y_channel_scale
            )
        gx = gy = None
        if self.x_channel_scale is not None:
            if x.shape[-1] != self.x_channel_scale.numel():
                raise ValueError(
                    f"x must have {self.x_channel_scale.numel()} channels in its last axis, got {x.shape[-1]}"
                )
            _checks.check_same_device("x", x, "the channel scales (x_channel_scale)", self.x_channel_scale)
            gx, gy = self.x_channel_scale.to(x.dtype), self.y_channel_scale.to(x.dtype)
        cx, sx, _ = self.quantizer.quantize(x if gx is None else x / gx)  # raises on NaN / Inf
        cy, sy, _ = self.quantizer.quantize(y if gy is None else y / gy)
        dt = _checks.compute_dtype(x.dtype)
        if self.path == "count":
            prod = cx.to(dt) * cy.to(dt)
        else:
            prod = telescoping_product(
                eiif_spikes_from_counts(cx.to(dt), self.T),
                eiif_spikes_from_counts(cy.to(dt), self.T),
                torch.mul,
            )
        out = prod * (sx.to(dt) * sy.to(dt))
        if gx is not None:
            out = out * (gx.to(dt) * gy.to(dt))
        out = out.to(x.dtype)
        if x.requires_grad or y.requires_grad:  # straight-through: d(xy) = y dx + x dy
            xd, yd = x.detach(), y.detach()
            out = out + (x * yd + xd * y - 2 * xd * yd).to(out.dtype)
        if tracking():
            with torch.no_grad():
                sx_n, sy_n = cx.abs().sum(), cy.abs().sum()
                # each spike adds the other operand's running count: about one addition per spike
                record("SNNMultiply", sx_n + sy_n, sx_n + sy_n, out.numel())
        return out
