r"""Measure a SpikeGPT model on text: bits per token, and spikes, operations and energy per token.

Costs come from `bt_neurons.track_spikes`: every part of the model reports
what it did while it runs (`SpikeGPTForCausalLM` records them by itself).

- **spikes**: the events the neurons fire (each +-1 spike once), the binary
  embedding's ones included;
- **additions**: a spike arriving on the residual stream adds one number to
  one channel: one addition per event. The ANN twin (``neuron="none"``) adds
  its branches densely: one addition per element;
- **dense MACs**: the mixers' and the head's linear layers read layer-normalised
  real-valued inputs, in the spiking model as in its twin, so both pay them as
  multiply-accumulates.

Energy per token at 45 nm (Horowitz 2014, the figures used across bt-neurons):
$E = 0.9\,\text{pJ} \times \text{additions} + 4.6\,\text{pJ} \times \text{MACs}$.
The elementwise work (the WKV recurrence, sigmoids, layer norms, the neurons'
own updates) is the same in both models and is not charged to either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from bt_neurons.accounting import ADD_PJ, MAC_PJ

from .._evaluation import perplexity, tracked_run
from .modeling import SpikeGPTForCausalLM

__all__ = ["LayerCost", "SpikeGPTCost", "bits_per_token", "cost_per_token"]


@dataclass
class LayerCost:
    """One part's figures per token: spikes, additions, dense MACs, and the firing rate of its neurons."""

    spikes: float
    additions: float
    dense_macs: float
    firing_rate: float | None  #: spikes per neuron per token (None: no neurons)

    @property
    def energy_pj(self) -> float:
        """``0.9 pJ x additions + 4.6 pJ x dense MACs`` per token."""
        return ADD_PJ * self.additions + MAC_PJ * self.dense_macs


@dataclass
class SpikeGPTCost:
    """Per-token totals of one run, and the same per part (``"emb"``, ``"blocks.N.att"``, ...).

    Attributes:
        tokens: tokens the run consumed.
        spikes: spikes per token.
        additions: additions per token (spike events, or dense for the ANN twin).
        dense_macs: multiply-accumulates per token.
        by_layer: `LayerCost` per part, in the order the model ran them.
    """

    tokens: int
    spikes: float
    additions: float
    dense_macs: float
    by_layer: dict[str, LayerCost] = field(default_factory=dict)

    @property
    def energy_pj(self) -> float:
        """``0.9 pJ x additions + 4.6 pJ x MACs`` per token."""
        return ADD_PJ * self.additions + MAC_PJ * self.dense_macs

    def summary(self) -> str:
        return (
            f"{self.spikes:.4g} spikes, {self.additions:.4g} additions and {self.dense_macs:.4g} MACs per "
            f"token: {self.energy_pj / 1e6:.4g} uJ"
        )


@torch.no_grad()
def cost_per_token(model: SpikeGPTForCausalLM, input_ids: Tensor) -> SpikeGPTCost:
    """Run ``model`` once on ``input_ids`` ``[B, L]`` (or ``[L]``) with `track_spikes`; per-token figures.

    The head is charged for every position (as when scoring a text); in
    generation it runs once per new token too, so the figure is the same.

    Raises:
        TypeError: ``model`` is not a `SpikeGPTForCausalLM`, or ``input_ids`` not integer ids.
        ValueError: ``input_ids`` empty or of another rank.
    """
    if not isinstance(model, SpikeGPTForCausalLM):
        raise TypeError(f"model must be a SpikeGPTForCausalLM, got {type(model).__name__}")
    stats, ids = tracked_run(model, input_ids)
    tokens = ids.numel()
    width = model.config.hidden_size
    by_layer = {}
    for name, (spikes, additions, _, dense) in stats.by_operator.items():
        neurons = name == "emb" or name.endswith("_neuron")
        rate = spikes / (tokens * width) if neurons and model.config.neuron != "none" else None
        by_layer[name] = LayerCost(spikes / tokens, additions / tokens, dense / tokens, rate)
    return SpikeGPTCost(
        tokens=tokens,
        spikes=stats.spikes / tokens,
        additions=stats.additions / tokens,
        dense_macs=stats.dense_macs / tokens,
        by_layer=by_layer,
    )


def bits_per_token(
    model: SpikeGPTForCausalLM | torch.nn.Module,
    input_ids: Tensor,
    window: int = 256,
    *,
    max_windows: int | None = None,
    batch: int = 1,
) -> float:
    r"""Mean next-token cross-entropy in bits, $\log_2$ of the perplexity over fixed windows.

    With a character-level tokenizer this is bits per character (BPC). Any
    causal LM works (the ANN twin, a GPT-2), so contenders are scored on the
    same windows; see `bt_neurons.models.perplexity` for the windows.
    """
    return math.log2(perplexity(model, input_ids, window, max_windows=max_windows, batch=batch))
