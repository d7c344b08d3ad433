r"""EIIFEncoder: a layer of EI_IF neurons with a Quantizer's scales (paper 3.3.2, eq. 21).

The spiking twin of a stand-alone `Quantizer`, which is what stage-2
conversion turns an activation quantizer into. With the quantizer's scale
$s$ (per token, per channel or per tensor, calibrated or dynamic) and
$T = Q$ (its largest level), every value drives one EI_IF neuron with the
default thresholds ($\theta_0 = 0.5$, $\alpha = 1$, $r = 1$) by the
constant input $x / s$ for $T$ steps; the output is the decoded count

$$
\hat x = s \sum_{t=1}^{T} S_t = s\,\operatorname{clip}(\operatorname{round}(x / s), -T, T),
$$

which is the quantizer's output bit for bit.

- ``path="count"``: the closed form (the quantizer itself, with its
  straight-through gradient);
- ``path="spike"``: the neurons are simulated step by step by an
  `EIIFNode` in multi-step mode and their spikes are summed.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional
from torch import Tensor, nn

from . import _checks
from .accounting import record, tracking
from .eiif_node import EIIFNode
from .quantizer import Quantizer

__all__ = ["EIIFEncoder"]


class EIIFEncoder(nn.Module):
    """EI_IF neurons encoding ``x / s`` over ``T = quantizer.qmax`` steps; output ``s * counts``.

    Args:
        quantizer: a symmetric `Quantizer` (its scales and ``qmax``); shared, not copied.
        path: ``"count"`` (default) or ``"spike"``.

    Forward: ``[..., C]`` float -> ``[..., C]`` decoded values (equal to
    ``quantizer(x)``). `spikes` returns the spike trains ``[T, ..., C]``.

    Example:
        >>> import torch
        >>> from bt_neurons import EIIFEncoder, Quantizer
        >>> enc = EIIFEncoder(Quantizer(qmax=7), path="spike")
        >>> x = torch.tensor([[0.7, -2.0, 0.1]])
        >>> bool(torch.equal(enc(x), Quantizer(qmax=7)(x)))
        True
    """

    def __init__(self, quantizer: Quantizer, *, path: str = "count") -> None:
        super().__init__()
        if not isinstance(quantizer, Quantizer):
            raise TypeError(f"quantizer must be a Quantizer, got {type(quantizer).__name__}")
        if not quantizer.symmetric:
            raise ValueError("quantizer must be symmetric: EI_IF neurons fire +1 and -1 symmetrically")
        _checks.check_choice("path", path, ("count", "spike"))
        self.quantizer = quantizer
        self.path = path
        self.node = EIIFNode(step_mode="m")

    @property
    def T(self) -> int:
        """Time steps of the neurons: the quantizer's largest level."""
        return self.quantizer.qmax

    def extra_repr(self) -> str:
        return f"T={self.T}, path={self.path!r}"

    def _simulate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The spike trains ``[T, ..., C]`` of the neurons driven by ``x / s``, and the scale ``s``."""
        _checks.check_floating("x", x)
        scale, _ = self.quantizer.scales(x)
        scale = scale.to(x.dtype)
        if not bool(torch.isfinite(scale).all()):
            raise ValueError("x must be finite, but it contains NaN or Inf (its scale is not finite)")
        drive = (x.detach() / scale).unsqueeze(0).expand(self.T, *x.shape)
        functional.reset_net(self.node)
        try:
            with torch.no_grad():
                return self.node(drive), scale
        finally:
            functional.reset_net(self.node)

    def spikes(self, x: Tensor) -> Tensor:
        """Spike trains ``[T, ..., C]`` of the neurons driven by ``x / s`` (simulated)."""
        return self._simulate(x)[0]

    def forward(self, x: Tensor) -> Tensor:
        out = self.quantizer(x)  # the count path: the closed form, with the straight-through gradient
        if self.path == "spike":
            spikes, scale = self._simulate(x)
            decoded = spikes.sum(0) * scale
            out = decoded + (out - out.detach()) if out.requires_grad else decoded
        if tracking():
            with torch.no_grad():
                n = self.quantizer.quantize(x)[0].abs().sum()
                record("EIIFEncoder", n, 0.0, 0)
        return out
