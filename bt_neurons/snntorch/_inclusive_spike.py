"""Adapter that makes an snnTorch surrogate fire on ``u >= 0``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._checks import check_callable

__all__ = ["InclusiveSpike", "inclusive_spike", "HardSpike", "spike_function"]


class InclusiveSpike(nn.Module):
    """Heaviside that fires on ``u >= 0`` with the gradient of an snnTorch surrogate.

    snnTorch's surrogates fire on ``u > 0``; bt-neurons fires on ``u >= 0``
    (the paper's and SpikingJelly's convention) on both faces, so that a
    wrapper and its SpikingJelly node emit identical spikes. The forward value
    is exactly ``(u >= 0)``; the backward is that of ``spike_grad(u)``.

    Args:
        spike_grad: an snnTorch surrogate such as ``snntorch.surrogate.atan()``.
    """

    def __init__(self, spike_grad: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.spike_grad = spike_grad

    def forward(self, u: Tensor) -> Tensor:
        hard = (u >= 0).to(u.dtype)
        if not torch.is_grad_enabled() or not u.requires_grad:
            return hard
        soft = self.spike_grad(_FiniteGradient.apply(u))
        return soft + (hard - soft).detach()


class _FiniteGradient(torch.autograd.Function):
    """Identity whose backward replaces a NaN or infinite gradient by 0.

    Some snnTorch surrogates overflow far from the threshold (``sigmoid``'s
    backward is ``inf / inf`` below ``u`` of about -3.5 at its default slope),
    where their true gradient is 0. EI_IF evaluates the surrogate on both
    thresholds, ``H - theta`` and ``-H - theta``, so one of them is often far
    away; ``snn.Leaky`` meets the same NaN when its membrane goes far below
    its threshold.
    """

    @staticmethod
    def forward(ctx, u: Tensor) -> Tensor:  # type: ignore[override]
        return u.view_as(u)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        return torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)


def inclusive_spike(spike_grad: Callable[[Tensor], Tensor] | None) -> InclusiveSpike:
    """``InclusiveSpike`` around ``spike_grad`` (default ``snntorch.surrogate.atan()``, as snnTorch)."""
    if spike_grad is None:
        from snntorch import surrogate

        spike_grad = surrogate.atan()
    check_callable("spike_grad", spike_grad)
    return InclusiveSpike(spike_grad)


class HardSpike(nn.Module):
    """Heaviside ``u >= 0`` without a surrogate: no gradient flows (snnTorch's ``surrogate_disable=True``)."""

    def forward(self, u: Tensor) -> Tensor:
        return (u.detach() >= 0).to(u.dtype)


def spike_function(spike_grad: Callable[[Tensor], Tensor] | None, *, disable: bool = False) -> nn.Module:
    """The spike function of an snnTorch face: `HardSpike` when ``disable``, else `inclusive_spike`."""
    return HardSpike() if disable else inclusive_spike(spike_grad)
