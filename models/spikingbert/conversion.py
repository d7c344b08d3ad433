r"""Our own route: the fine-tuned BERT teacher converted into bt-neurons' spiking operators, without training.

The BrainTransformers conversion, applied to a BERT classifier. Every linear
layer becomes a `Synapsis` whose presynaptic EI_IF neurons encode its input
in ``T`` steps (a dynamic scale per token, clipped at a calibrated ratio);
the attention products are `SNNMatmul` on two encoded operands; the softmax
is `SNNSoftmax` with the shipped exp and reciprocal approximators; GELU is
the shipped GELU approximator; a LayerNorm stays float (``layernorm="float"``)
or becomes ``LN(x) = RMSNorm(x - mean(x)) \odot \gamma + \beta`` with the
spiking `SNNRMSNorm` (its square and rsqrt approximators;
``layernorm="spiking"``). Outputs of a spiking product reach the next
synapse as graded events (as in the converted LLM). What stays float: the
embedding lookup, the pooler's ``tanh`` (one per sequence) and, with
``layernorm="float"``, the LayerNorms.

`calibrate_converted` chooses each encoder's clip ratio on sample passages
(the same search as the LLM's, `models._calibration`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bt_neurons import Quantizer, SNNMatmul, SNNRMSNorm, SNNSoftmax, Synapsis, _checks

from .._calibration import DEFAULT_CLIP_GRID, register_clip_search
from .._inputs import check_input_ids
from .._shipped import ShippedApproximator

from transformers.modeling_outputs import SequenceClassifierOutput  # noqa: E402  isort: skip

__all__ = [
    "ConvertedBertForSequenceClassification",
    "SpikingLayerNorm",
    "calibrate_converted",
    "convert_teacher",
]

LAYERNORMS = ("float", "spiking")


def _synapsis(linear: nn.Linear, timesteps: int) -> Synapsis:
    return Synapsis(copy.deepcopy(linear), timesteps, post=False, pre_quantizer=Quantizer(qmax=timesteps))


class SpikingLayerNorm(nn.Module):
    r"""A LayerNorm from spiking parts: ``SNNRMSNorm(x - mean(x)) * gamma + beta``.

    The mean is a synaptic sum; the variance of ``x`` is the mean square of the
    centred ``x``, so `SNNRMSNorm` (square and rsqrt approximators) with
    weight ``gamma`` normalises it; ``beta`` is a bias.
    """

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        d = norm.normalized_shape[-1]
        self.rms = SNNRMSNorm(
            d,
            norm.eps,
            mode="spiking",
            square=ShippedApproximator("square"),
            rsqrt=ShippedApproximator("rsqrt"),
        )
        with torch.no_grad():
            self.rms.weight.copy_(norm.weight)
        self.bias = nn.Parameter(norm.bias.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        """``[..., d]`` -> ``[..., d]``."""
        return self.rms(x - x.mean(-1, keepdim=True)) + self.bias


def _norm(norm: nn.LayerNorm, layernorm: str) -> nn.Module:
    return copy.deepcopy(norm) if layernorm == "float" else SpikingLayerNorm(norm)


class ConvertedBertLayer(nn.Module):
    """One BERT block from spiking operators (`ConvertedBertForSequenceClassification`)."""

    def __init__(self, layer: nn.Module, heads: int, timesteps: int, layernorm: str) -> None:
        super().__init__()
        att = layer.attention
        self.heads = heads
        self.head_size = att.self.query.out_features // heads
        self.query = _synapsis(att.self.query, timesteps)
        self.key = _synapsis(att.self.key, timesteps)
        self.value = _synapsis(att.self.value, timesteps)
        self.scores = SNNMatmul(timesteps, transpose_y=True)
        self.weighted_values = SNNMatmul(timesteps, transpose_y=False)
        self.softmax = SNNSoftmax(
            "spiking", exp=ShippedApproximator("exp"), reciprocal=ShippedApproximator("reciprocal")
        )
        self.attention_dense = _synapsis(att.output.dense, timesteps)
        self.attention_norm = _norm(att.output.LayerNorm, layernorm)
        self.intermediate = _synapsis(layer.intermediate.dense, timesteps)
        self.gelu = ShippedApproximator("gelu")
        self.output_dense = _synapsis(layer.output.dense, timesteps)
        self.output_norm = _norm(layer.output.LayerNorm, layernorm)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, self.head_size)).transpose(1, 2)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """``[B, L, d]`` -> ``[B, L, d]``; ``allowed`` ``[B, 1, 1, L]`` marks the unpadded keys."""
        q = self._heads(self.query(x)) / math.sqrt(self.head_size)
        k, v = self._heads(self.key(x)), self._heads(self.value(x))
        p = self.softmax(self.scores(q, k), allowed)
        context = self.weighted_values(p, v).transpose(1, 2).flatten(2)
        h = self.attention_norm(self.attention_dense.layer(context) + x)  # graded events: not re-encoded
        return self.output_norm(self.output_dense(self.gelu(self.intermediate(h))) + h)


class ConvertedBertForSequenceClassification(nn.Module):
    """A transformers ``BertForSequenceClassification`` converted into bt-neurons' spiking operators.

    Args:
        teacher: the fine-tuned classifier (copied; it is left as it is).
        timesteps: ``T`` of every encoder. Default 15.
        layernorm: ``"float"`` (default) or ``"spiking"`` (`SpikingLayerNorm`).
        path: ``"count"`` (default: the neurons' exact closed form, at about an
            ANN's cost) or ``"spike"`` (step by step; the same outputs).
    """

    def __init__(self, teacher: Any, timesteps: int = 15, *, layernorm: str = "float", path: str = "count"):
        super().__init__()
        timesteps = _checks.check_timesteps("timesteps", timesteps)
        _checks.check_choice("layernorm", layernorm, LAYERNORMS)
        _checks.check_choice("path", path, ("count", "spike"))
        bert = getattr(teacher, "bert", None)
        if bert is None or not hasattr(teacher, "classifier"):
            raise TypeError(
                f"teacher must be a transformers BertForSequenceClassification, got {type(teacher).__name__}"
            )
        self.config = teacher.config
        self.timesteps, self.layernorm = timesteps, layernorm
        embeddings = copy.deepcopy(bert.embeddings)
        if layernorm == "spiking":
            embeddings.LayerNorm = SpikingLayerNorm(bert.embeddings.LayerNorm)
        embeddings.dropout = nn.Identity()
        self.embeddings = embeddings
        heads = teacher.config.num_attention_heads
        self.layers = nn.ModuleList(
            ConvertedBertLayer(lay, heads, timesteps, layernorm) for lay in bert.encoder.layer
        )
        self.pooler = _synapsis(bert.pooler.dense, timesteps) if bert.pooler is not None else None
        self.classifier = _synapsis(teacher.classifier, timesteps)
        self.set_path(path)
        self.eval()

    def set_path(self, path: str) -> ConvertedBertForSequenceClassification:
        """Run every operator on ``"count"`` or ``"spike"``; returns ``self``."""
        _checks.check_choice("path", path, ("count", "spike"))
        for module in self.modules():
            if hasattr(module, "path") and module is not self:
                module.path = path
        self.path = path
        return self

    def forward(
        self,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        labels: Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """Logits ``[B, num_labels]`` for token ids ``[B, L]`` (and the cross-entropy with ``labels``).

        Args:
            input_ids: ``[B, L]`` token ids.
            attention_mask: ``[B, L]``, 1 for tokens, 0 for padding.
            token_type_ids: ``[B, L]`` segment ids.
            labels: ``[B]`` class ids.
            **kwargs: other arguments transformers passes (ignored).
        """
        input_ids = check_input_ids(input_ids, self.config.vocab_size)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}")
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = self.embeddings(input_ids=input_ids, token_type_ids=types)
        allowed = mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, allowed)
        cls = x[:, 0]
        pooled = torch.tanh(self.pooler(cls)) if self.pooler is not None else cls
        logits = self.classifier(pooled)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


@torch.no_grad()
def calibrate_converted(
    model: ConvertedBertForSequenceClassification,
    input_ids: Tensor,
    attention_mask: Tensor | None = None,
    grid: Sequence[float] = DEFAULT_CLIP_GRID,
) -> dict[str, float]:
    """Choose every encoder's clip ratio on sample passages ``[B, L]``; returns ``{module name: clip}``.

    Each operator keeps the clip of the grid whose output is closest to its
    float twin's, on the errors of the operators before it (the count path).
    """
    chosen: dict[str, float] = {}
    handles = register_clip_search(model, grid, chosen)
    path = model.path
    model.set_path("count")
    try:
        model(input_ids, attention_mask)
    finally:
        for handle in handles:
            handle.remove()
        model.set_path(path)
    return chosen


def convert_teacher(
    teacher: Any,
    timesteps: int = 15,
    *,
    layernorm: str = "float",
    calibration_ids: Tensor | None = None,
    calibration_mask: Tensor | None = None,
    grid: Sequence[float] = DEFAULT_CLIP_GRID,
) -> ConvertedBertForSequenceClassification:
    """Convert a fine-tuned BERT classifier into spiking operators, calibrated on sample passages.

    Args:
        teacher: a transformers ``BertForSequenceClassification``.
        timesteps: ``T`` of every encoder. Default 15.
        layernorm: ``"float"`` or ``"spiking"``.
        calibration_ids: ``[B, L]`` token ids of training passages (None: every clip ratio stays 1).
        calibration_mask: their attention mask.
        grid: the clip ratios tried.
    """
    model = ConvertedBertForSequenceClassification(teacher, timesteps, layernorm=layernorm)
    if calibration_ids is not None:
        calibrate_converted(model, calibration_ids, calibration_mask, grid)
    return model
