r"""SNNSoftmax: softmax over the last axis, optionally causal (paper 2.4, eq. 4).

``mode="spiking"`` computes it from spiking approximators handed in by the
caller (layer 1 does not import layer 2; `spiking_softmax`
builds one with the shipped approximators):

$$
z = a - \max_j a_j \le 0, \qquad e = \mathrm{Exp}(z), \qquad
r = \mathrm{Reciprocal}\Big(\sum_j e_j\Big), \qquad P = r\,e .
$$

The exponentials are spike counts of the Exp approximator, the sum is
additions, and $r$ is one Reciprocal approximator per row; the product
$r\,e$ is a per-row scale, which in a spiking network the next
SNNMatmul applies as its row scale ($P V = r \odot (e V)$). The row
maximum is an order statistic (a comparison, as in winner-take-all), not
arithmetic; it only shifts the exponent into the approximator's domain.

``mode="float"`` is torch's softmax: an explicit, documented float operator
for comparison.

Masked positions (causal, or a boolean ``mask`` that is True where attention
is allowed) get probability exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking

__all__ = ["SNNSoftmax"]


class SNNSoftmax(nn.Module):
    """Softmax over the last axis; see the module docs.

    Scores must be finite in both modes (mask positions with ``mask``, not
    with ``-inf``): ``ValueError`` naming ``scores`` otherwise.

    Args:
        mode: ``"spiking"`` or ``"float"``.
        exp: the Exp approximator (a module mapping ``x <= 0`` to ``e^x``), for ``"spiking"``.
        reciprocal: the Reciprocal approximator (``d >= 1`` to ``1/d``), for ``"spiking"``.
        causal: mask keys after the query (query ``i`` of ``m`` aligned to the last
            ``m`` of ``n`` keys, as with a KV cache).
    """

    def __init__(
        self,
        mode: str = "float",
        *,
        exp: Callable[[Tensor], Tensor] | None = None,
        reciprocal: Callable[[Tensor], Tensor] | None = None,
        causal: bool = False,
    ) -> None:
        super().__init__()
        _checks.check_choice("mode", mode, ("spiking", "float"))
        if mode == "spiking" and (exp is None or reciprocal is None):
            raise ValueError(
                "mode='spiking' needs the exp and reciprocal approximators "
                "(bt_neurons.approximators.spiking_softmax() passes the shipped ones)"
            )
        for name, fn in (("exp", exp), ("reciprocal", reciprocal)):
            if fn is not None:
                _checks.check_callable(name, fn)
        self.mode = mode
        self.exp = exp
        self.reciprocal = reciprocal
        self.causal = _checks.check_bool("causal", causal)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, causal={self.causal}"

    def allowed(self, scores: Tensor, mask: Tensor | None) -> Tensor | None:
        """Boolean mask of the allowed positions (None: everything)."""
        allowed = None
        if self.causal:
            m, n = scores.shape[-2], scores.shape[-1]
            i = torch.arange(m, device=scores.device).unsqueeze(-1)
            j = torch.arange(n, device=scores.device)
            allowed = j <= i + (n - m)
        if mask is not None:
            _checks.check_tensor("mask", mask)
            if mask.dtype != torch.bool:
                raise TypeError(f"mask must be a bool tensor (True = allowed), got {mask.dtype}")
            _checks.check_same_device("mask", mask, "scores", scores)
            if _checks.check_broadcastable("mask and scores", mask=mask.shape, scores=scores.shape) != tuple(
                scores.shape
            ):
                raise ValueError(
                    f"mask must broadcast to the shape of scores {tuple(scores.shape)}, "
                    f"got {tuple(mask.shape)}"
                )
            allowed = mask if allowed is None else allowed & mask
        return allowed

    def forward(self, scores: Tensor, mask: Tensor | None = None) -> Tensor:
        """Probabilities with the shape and dtype of ``scores`` ``[..., m, n]`` (or ``[..., n]``)."""
        _checks.check_floating("scores", scores)
        _checks.check_rank("scores", scores, 1, "[..., n]")
        if scores.shape[-1] == 0:
            raise ValueError("softmax over an axis of length 0: scores must have at least one key")
        if self.causal:
            _checks.check_rank("scores", scores, 2, "[..., queries, keys] (causal)")
        _checks.check_finite("scores", scores)  # in both modes: the float mode would pass NaN on silently
        allowed = self.allowed(scores, mask)
        if allowed is not None:
            allowed = allowed.expand(scores.shape)
            if not bool(allowed.any(-1).all()):
                raise ValueError("every query must be allowed to attend to at least one key")
        if self.mode == "float":
            s = scores if allowed is None else scores.masked_fill(~allowed, float("-inf"))
            return torch.softmax(s.float(), dim=-1).to(scores.dtype)
        s = scores.float()
        if allowed is not None:
            s = s.masked_fill(~allowed, float("-inf"))
        z = s - s.amax(-1, keepdim=True).detach()  # <= 0: the Exp approximator's domain
        if allowed is not None:
            z = z.masked_fill(~allowed, 0.0)  # masked entries (-inf) are not evaluated: zeroed below
        e = self.exp(z)
        if allowed is not None:
            e = e.masked_fill(~allowed, 0.0)
        d = e.sum(-1, keepdim=True)
        r = self.reciprocal(d)
        if tracking():
            with torch.no_grad():
                spikes = 0.0
                for approx, inp in ((self.exp, z), (self.reciprocal, d)):
                    if hasattr(approx, "spikes_per_input"):
                        counted = approx.spikes_per_input(inp)
                        spikes = (
                            spikes + (counted if allowed is None or inp is d else counted * allowed).sum()
                        )
                record("SNNSoftmax", spikes, e.numel(), e.numel() * 2)
        return (e * r).to(scores.dtype)
