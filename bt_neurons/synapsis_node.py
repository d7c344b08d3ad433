r"""SynapsisNode: a Synapsis that takes the spike trains a network fired (SpikingJelly face).

The float-input `Synapsis` encodes its input with presynaptic neurons of its
own. ``SynapsisNode`` is the same synapse placed *between* two layers of a
user's spiking network: its input is the spike trains ``S_t`` of the layer
before (for an `EIIFNode` encoding $x / s$: $s$ is what one spike stands
for, the ``scale``), and it returns the spikes of its postsynaptic EI_IF
neurons. Over a window of ``T`` steps

$$
y = W\,\Big(s \odot \sum_{t<T} S_t\Big) + b, \qquad
\text{out}_j = \mathrm{EIIF}_j\big(\mathrm{act}(y) / s_{post}\big),\ j < T_{post},
$$

every spike adding (or subtracting) one weight column (``path="spike"``),
or the counts multiplied once (``path="count"``, the same numbers as the
float Synapsis' count path). The windows, the step modes and the scales are
described in `bt_neurons._spike_train_node`.

**One truth.** For ``x`` ``[N, in]`` and its spike trains from an `EIIFNode`
driven by $x / s$ ($s$ the float Synapsis' presynaptic scale), the output
trains equal ``Synapsis.spikes(x)`` bit for bit and
``out.sum(0) * output_scale == Synapsis(x)``, on both paths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import surrogate
from torch import Tensor, nn

from . import _checks
from ._spike_train_node import ScaleSource, SpikeTrainNode, check_spikes
from .accounting import record, tracking
from .quantizer import Quantizer
from .synapsis import Synapsis, accumulate_spikes

__all__ = ["SynapsisNode"]


class SynapsisNode(SpikeTrainNode):
    """A linear layer between two layers of spiking neurons: spike trains in, spike trains out.

    Args:
        layer: the ``nn.Linear`` whose weight and bias are used (shared, not copied).
        timesteps: ``T``, the steps of a window of input spikes. Default 15.
        scale: what one input spike stands for: a number, a tensor broadcastable
            to one step's spikes ``[N, ..., in]`` (per tensor, per channel
            ``[in]``; stored as the buffer ``scale``), or the layer that fired
            the spikes (a `SynapsisNode` / `SNNMatmulNode` / `SNNMultiplyNode`,
            whose ``output_scale`` is read). ``scale=`` in the call (e.g. per
            token ``[N, ..., 1]``) takes precedence. Default None: every call
            must give it.
        post_timesteps: ``T_post``, steps of the postsynaptic neurons (default ``T``).
        post: postsynaptic neurons (default True); ``False`` returns the
            synaptic current of every step, ``s (W S_t)``, the bias added to
            the first step's.
        post_quantizer: where the postsynaptic scale $s_{post}$ comes from
            (default: dynamic per token, $\\max|y| / T_{post}$); a calibrated
            static one gives a fixed ``output_scale``.
        activation: applied to ``y`` before the postsynaptic neurons encode it
            (e.g. a bt approximator on its count path, ``SiLUApproximator()``; its
            parameters train with the network unless frozen with
            ``requires_grad_(False)``). Default none.
        path: ``"count"`` (default) or ``"spike"``.
        step_mode: ``"m"`` (default) or ``"s"``.
        surrogate_function: the postsynaptic neurons' surrogate (default ``surrogate.Sigmoid()``).

    Shapes: multi-step ``[T, N, ..., in] -> [T_post, N, ..., out]``
    (``post=False``: ``[T, N, ..., out]``); single-step ``[N, ..., in] -> [N, ..., out]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from bt_neurons import EIIFNode, Quantizer, Synapsis, SynapsisNode
        >>> fc = nn.Linear(4, 3)
        >>> x = torch.randn(2, 4)
        >>> s = Quantizer(qmax=15).scales(x)[0]  # the float Synapsis' per-token scale [2, 1]
        >>> spikes = EIIFNode(step_mode="m")((x / s).expand(15, 2, 4))  # what a network fired
        >>> node = SynapsisNode(fc, 15)
        >>> out = node(spikes, scale=s)  # [15, 2, 3] postsynaptic spikes
        >>> bool(torch.equal(out, Synapsis(fc, 15).spikes(x)))
        True
        >>> bool(torch.equal(out.sum(0) * node.output_scale, Synapsis(fc, 15)(x)))
        True
    """

    def __init__(
        self,
        layer: nn.Linear,
        timesteps: int = 15,
        *,
        scale: ScaleSource = None,
        post_timesteps: int | None = None,
        post: bool = True,
        post_quantizer: Quantizer | None = None,
        activation: nn.Module | None = None,
        path: str = "count",
        step_mode: str = "m",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
    ) -> None:
        if not isinstance(layer, nn.Linear):
            raise TypeError(f"layer must be an nn.Linear, got {type(layer).__name__}")
        super().__init__(
            timesteps,
            post_timesteps=post_timesteps,
            post=post,
            post_quantizer=post_quantizer,
            surrogate_function=surrogate_function,
            path=path,
            step_mode=step_mode,
            scales=(scale,),
        )
        if activation is not None:
            if not post:
                raise ValueError(
                    "activation acts on what the postsynaptic neurons encode: it needs post=True"
                )
            _checks.check_callable("activation", activation)
        self.layer = layer
        self.activation = activation

    @classmethod
    def from_synapsis(cls, synapsis: Synapsis, **kwargs) -> SynapsisNode:
        """The spike-train face of a float `Synapsis`: same layer, ``T``, postsynaptic quantizer and path.

        A calibrated (static) presynaptic quantizer becomes the ``scale``
        buffer; with dynamic per-token scales give ``scale=`` in the call.
        """
        if not isinstance(synapsis, Synapsis):
            raise TypeError(f"synapsis must be a Synapsis, got {type(synapsis).__name__}")
        if synapsis.embedding:
            raise ValueError(
                "an embedding's Synapsis takes token ids, not spikes: it has no spike-train face"
            )
        pre = synapsis.pre
        options = {
            "scale": None if pre.dynamic or pre.scale is None else pre.scale,
            "post": synapsis.post is not None,
            "post_timesteps": synapsis.T_post,
            "post_quantizer": synapsis.post,
            "path": synapsis.path,
        }
        options.update(kwargs)
        return cls(synapsis.layer, synapsis.T, **options)

    def extra_repr(self) -> str:
        return (
            f"in={self.layer.in_features}, out={self.layer.out_features}, T={self.T}, T_post={self.T_post}, "
            f"path={self.path!r}, step_mode={self.step_mode!r}"
        )

    # ------------------------------------------------------------------ pieces
    def _check_inputs(self, inputs: tuple[Tensor, ...], multi: bool) -> None:
        if len(inputs) != 1:
            raise TypeError(f"a SynapsisNode takes one spike train, got {len(inputs)} positional inputs")
        (spikes,) = inputs
        n_in = self.layer.in_features
        what = f"[T, N, ..., {n_in}] (step_mode='m')" if multi else f"[N, ..., {n_in}] (step_mode='s')"
        check_spikes("spikes", spikes, 2 if multi else 1, what, ("the layer's weight", self.layer.weight))
        if spikes.shape[-1] != n_in:
            raise ValueError(
                f"spikes must have {n_in} features in their last axis (in_features), got {spikes.shape[-1]}"
            )
        if multi and spikes.shape[0] != self.T:
            raise ValueError(
                f"spikes must have T={self.T} steps along their first axis (a window), got {spikes.shape[0]}"
            )

    def _output_shape(self, inputs: tuple[Tensor, ...]) -> tuple[int, ...]:
        return (*inputs[0].shape[:-1], self.layer.out_features)

    @staticmethod
    def _per_token(scale: Tensor | None) -> bool:
        """Whether the scale is one per vector (it factors out of the product)."""
        return scale is None or scale.dim() == 0 or scale.shape[-1] == 1

    def _rows(self, spikes: Tensor) -> Tensor:
        return spikes.to(self.layer.weight.dtype).reshape(-1, spikes.shape[-1])

    def _fresh(self, inputs, scales):
        (spikes,) = inputs
        rows = spikes.shape[:-1]
        width = spikes.shape[-1] if self.path == "count" else self.layer.out_features
        return (torch.zeros(*rows, width, dtype=self.layer.weight.dtype, device=spikes.device),)

    def _accumulate(self, acc, inputs, scales):
        (spikes,), (scale,), (total,) = inputs, scales, acc
        if self.path == "count":
            return (total + spikes.to(total.dtype),)  # the count: integers, exact
        s = spikes if self._per_token(scale) else spikes * scale  # a spike carries its channel's scale
        step = accumulate_spikes(self._rows(s).unsqueeze(0), self.layer.weight)  # what the Synapsis adds
        return (total + step.reshape(total.shape),)

    def _finish(self, acc, scales):
        (total,), (scale,) = acc, scales
        weight, bias = self.layer.weight, self.layer.bias
        if self.path == "count":
            x_hat = total if scale is None else total * scale  # the decoded input: s * C
            rows = x_hat.reshape(-1, x_hat.shape[-1])
            y = F.linear(rows, weight) if bias is None else torch.addmm(bias, rows, weight.t())
            return y.reshape(*total.shape[:-1], weight.shape[0])
        y = total * scale if scale is not None and self._per_token(scale) else total
        return y if bias is None else y + bias

    def _current(self, acc, inputs, scales, first):
        (spikes,), (scale,) = inputs, scales
        s = spikes.to(self.layer.weight.dtype)
        current = F.linear(s if scale is None else s * scale, self.layer.weight)
        if first and self.layer.bias is not None:
            current = current + self.layer.bias
        return current

    def _activate(self, y: Tensor) -> Tensor:
        if self.activation is None:
            return y
        z = self.activation(y)
        if tracking() and hasattr(self.activation, "spikes_per_input"):  # a bt approximator's neurons
            with torch.no_grad():
                record("SynapsisNode", self.activation.spikes_per_input(y.detach()).sum(), y.numel(), 0)
        return z

    def _record(self, inputs, out_spikes, window_done):
        n_in, n_out = self.layer.in_features, self.layer.out_features
        pre = float(inputs[0].abs().sum()) if inputs is not None else 0.0
        post = float(out_spikes.abs().sum()) if out_spikes is not None else 0.0
        additions, macs = pre * n_out, 0.0
        if window_done:
            shape = (inputs[0] if inputs is not None else out_spikes[0]).shape[:-1]
            tokens = int(torch.Size(shape).numel())
            macs = tokens * n_in * n_out
            if self.layer.bias is not None:
                additions += tokens * n_out
        record("SynapsisNode", post, additions, macs)  # the input spikes are the firing layer's
