r"""SNNRMSNorm: RMSNorm from spiking Square and RSqrt approximators (paper 2.6, eq. 8).

``mode="spiking"``, for each token $x \in \mathbb{R}^n$:

$$
s = \max_i |x_i| / 16, \quad x' = x / s, \quad
\mu = \frac{1}{n}\sum_i \mathrm{Square}(x'_i), \quad
\rho = \mathrm{RSqrt}\big(\mu + \epsilon / s^2\big), \quad
y = x'\,\rho\,w .
$$

This is exactly RMSNorm ($x' \rho = x / \sqrt{\overline{x^2} + \epsilon}$)
with the per-token scale $s$ putting $x'$ into the Square
approximator's domain $[-16, 16]$. The squares are spike counts, the
mean is additions with a fixed weight $1/n$, and $\rho$ is one
RSqrt approximator per token (the paper's Sqrt followed by a division; one
inverse square root is one approximator instead of two). $x' \rho$ is a
per-token scale: in a spiking network the next Synapsis applies it as its
input scale. The approximators are handed in by the caller
(`spiking_rmsnorm` passes the shipped ones).

``mode="float"`` is the usual RMSNorm, an explicit float operator for comparison.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking

__all__ = ["SNNRMSNorm"]


class SNNRMSNorm(nn.Module):
    """RMSNorm with a learnable weight; see the module docs.

    Args:
        hidden_size: ``n``, the size of the last axis.
        eps: added to the mean square. Default 1e-6.
        mode: ``"spiking"`` or ``"float"``.
        square: the Square approximator (for ``"spiking"``).
        rsqrt: the RSqrt approximator (for ``"spiking"``).
        square_range: the half-width of the Square approximator's domain. Default 16.
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
    ) -> None:
        super().__init__()
        _checks.check_timesteps("hidden_size", hidden_size)
        _checks.check_positive("eps", eps)
        _checks.check_choice("mode", mode, ("spiking", "float"))
        if mode == "spiking" and (square is None or rsqrt is None):
            raise ValueError(
                "mode='spiking' needs the square and rsqrt approximators "
                "(bt_neurons.approximators.spiking_rmsnorm() passes the shipped ones)"
            )
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.eps = float(eps)
        self.mode = mode
        self.square = square
        self.rsqrt = rsqrt
        self.square_range = float(square_range)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, mode={self.mode!r}"

    def forward(self, x: Tensor) -> Tensor:
        _checks.check_floating("x", x)
        if x.shape[-1] != self.weight.shape[0]:
            raise ValueError(
                f"x must have {self.weight.shape[0]} features in its last axis, got {x.shape[-1]}"
            )
        xf = x.float()
        if self.mode == "float":
            y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
            return (y * self.weight.float()).to(x.dtype)
        _checks.check_finite("x", x)
        s = (xf.detach().abs().amax(-1, keepdim=True) / self.square_range).clamp_min(1e-30)
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
