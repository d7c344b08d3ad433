r"""SNNRMSNorm: RMSNorm from spiking Square and RSqrt approximators (paper 2.6, eq. 8).

``mode="spiking"``, for each token $x \in \mathbb{R}^n$:

$$
s = \max\Big(\max_i |x_i| / 16,\ \sqrt{\epsilon / (H - 16^2)}\Big), \quad x' = x / s, \quad
\mu = \frac{1}{n}\sum_i \mathrm{Square}(x'_i), \quad
\rho = \mathrm{RSqrt}\big(\mu + \epsilon / s^2\big), \quad
y = x'\,\rho\,w .
$$

This is exactly RMSNorm ($x' \rho = x / \sqrt{\overline{x^2} + \epsilon}$)
with the per-token scale $s$ putting $x'$ into the Square
approximator's domain $[-16, 16]$, and the floor on $s$ keeping the
RSqrt input $\mu + \epsilon / s^2 \le H$, the top of its domain ($10^4$ for the
shipped one; without the floor an all-zero token would give $\epsilon / 0$, and a
token of values below $10^{-4}$ a value held at the domain's edge). The squares are spike counts, the
mean is additions with a fixed weight $1/n$, and $\rho$ is one
RSqrt approximator per token (the paper's Sqrt followed by a division; one
inverse square root is one approximator instead of two). $x' \rho$ is a
per-token scale: in a spiking network the next Synapsis applies it as its
input scale. The approximators are handed in by the caller
(`spiking_rmsnorm` passes the shipped ones).

``mode="float"`` is the usual RMSNorm, an explicit float operator for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking

__all__ = ["SNNRMSNorm"]


def _domain(approx: object) -> tuple[float, float] | None:
    """``approx.domain`` as two floats when the approximator states one (a NeuronArrayApproximator)."""
    domain = getattr(approx, "domain", None)
    if isinstance(domain, tuple) and len(domain) == 2:
        return float(domain[0]), float(domain[1])
    return None


class SNNRMSNorm(nn.Module):
    """RMSNorm with a learnable weight; see the module docs.

    Args:
        hidden_size: ``n``, the size of the last axis.
        eps: added to the mean square. Default 1e-6.
        mode: ``"spiking"`` or ``"float"``.
        square: the Square approximator (for ``"spiking"``).
        rsqrt: the RSqrt approximator (for ``"spiking"``).
        square_range: the half-width of the Square approximator's domain. Default 16.
            With a square approximator that has a ``domain`` (every
            ``NeuronArrayApproximator``), it must lie in ``[h / 8, h]`` for the
            domain ``|x| <= h``: beyond ``h`` the approximator only extrapolates,
            and below ``h / 8`` its resolution is lost (the error grows like
            ``1 / square_range**2``: 1.3% at 1, 100% at 0 for the shipped one).
        rsqrt_max: ``H``, the largest input the RSqrt approximator covers. Default:
            the top of its ``domain`` if it has one, else 1e4 (the shipped one's).
            Must exceed ``square_range**2``.

    Raises:
        TypeError: for arguments of the wrong type (``eps='1e-6'``, a square that is not callable).
        ValueError: for values out of range; in ``forward`` for an ``x`` that is not
            ``[..., hidden_size]`` or holds NaN / Inf (both modes).
    """

    def __init__(
        self,
        hidden_size: int,
        eps: float = 1e-6,
        *,
        mode: str = "float",
        square: Callable[[Tensor], Tensor] | None = None,
        rsqrt: Callable[[Tensor], Tensor] | None = None,
        square_range: float = 16.0,
        rsqrt_max: float | None = None,
    ) -> None:
        super().__init__()
        hidden_size = _checks.check_timesteps("hidden_size", hidden_size)
        for name, value in (("eps", eps), ("square_range", square_range)):
            _checks.check_number(name, value)
            _checks.check_positive(name, value)
        _checks.check_choice("mode", mode, ("spiking", "float"))
        if mode == "spiking" and (square is None or rsqrt is None):
            raise ValueError(
                "mode='spiking' needs the square and rsqrt approximators "
                "(bt_neurons.approximators.spiking_rmsnorm() passes the shipped ones)"
            )
        for name, fn in (("square", square), ("rsqrt", rsqrt)):
            if fn is not None:
                _checks.check_callable(name, fn)
        square_range = float(square_range)
        square_domain = _domain(square)
        if square_domain is not None:
            lo, hi = square_domain
            top = hi if getattr(square, "symmetry", "none") != "none" else min(hi, -lo)
            if not top / 8 <= square_range <= top:
                raise ValueError(
                    f"square_range must lie in [{top / 8:g}, {top:g}] for this square approximator "
                    f"(it covers |x| <= {top:g}; below {top / 8:g} its resolution is lost), "
                    f"got {square_range:g}"
                )
        rsqrt_domain = _domain(rsqrt)
        if rsqrt_max is None:
            rsqrt_max = rsqrt_domain[1] if rsqrt_domain is not None else 1e4
        _checks.check_number("rsqrt_max", rsqrt_max)
        if not (math.isfinite(rsqrt_max) and rsqrt_max > square_range**2):
            raise ValueError(
                f"rsqrt_max must be finite and exceed square_range**2 = {square_range**2:g} (the largest "
                f"mean square), got {rsqrt_max!r}"
            )
        if rsqrt_domain is not None and square_range**2 / hidden_size < rsqrt_domain[0]:
            raise ValueError(
                f"square_range**2 / hidden_size ({square_range**2 / hidden_size:g}, "
                "the smallest mean square) "
                f"must lie in the rsqrt approximator's domain (>= {rsqrt_domain[0]:g}): raise square_range"
            )
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = float(eps)
        self.mode = mode
        self.square = square
        self.rsqrt = rsqrt
        self.square_range = square_range
        self.rsqrt_max = float(rsqrt_max)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, mode={self.mode!r}"

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_floating("x", x)
        _checks.check_rank("x", x, 1, f"[..., {self.weight.shape[0]}] (hidden_size last)")
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"x must have {self.weight.shape[0]} features in its last axis, got {x.shape[-1]}"
            )
        _checks.check_same_device("x", x, "the norm's weight", self.weight)
        _checks.check_finite("x", x)  # in both modes: the float mode would pass NaN on silently
        xf = x.float()
        if self.mode == "float":
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
            return (y * self.weight.float()).to(x.dtype)
        # the floor keeps mean_sq + eps / s^2 <= rsqrt_max: the RSqrt approximator's domain
        floor = math.sqrt(self.eps / (self.rsqrt_max - self.square_range**2))
        s = (xf.detach().abs().amax(-1, keepdim=True) / self.square_range).clamp_min(floor)
        xs = xf / s
        mean_sq = self.square(xs).mean(-1, keepdim=True)
        rho = self.rsqrt(mean_sq + self.eps / s**2)
        if tracking():
            with torch.no_grad():
                spikes = 0.0
                for approx, inp in ((self.square, xs), (self.rsqrt, mean_sq + self.eps / s**2)):
                    if hasattr(approx, "spikes_per_input"):
                        spikes = spikes + approx.spikes_per_input(inp).sum()
                record("SNNRMSNorm", spikes, xs.numel(), xs.numel() * 2)
        return (xs * rho * self.weight.float()).to(x.dtype)
