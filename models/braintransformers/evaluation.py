r"""Measure a causal LM on text: perplexity over fixed windows, and spikes and energy per token.

Perplexity is $\exp$ of the mean next-token negative log-likelihood over
non-overlapping windows of ``window`` tokens (the first token of each window
is context only). Works for any transformers causal LM, spiking or not, so the
ANN and its spiking twin are measured on exactly the same windows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bt_neurons import _checks

from .._evaluation import perplexity, tracked_run, windows

__all__ = ["EnergyReport", "ann_macs_per_token", "energy_per_token", "perplexity", "windows"]


def ann_macs_per_token(config, context: int) -> float:
    r"""Multiply-accumulates per token of the Llama / Qwen2 ANN at an average context of ``context`` keys.

    Linear layers (attention projections, MLP, ``lm_head``) plus the two
    attention products $q k^\top$ and $P v$ (``2 * heads * head_dim * context``).
    """
    _checks.check_int("context", context, 0)
    h, i, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    d = config.head_dim or h // config.num_attention_heads
    q, kv = config.num_attention_heads * d, config.num_key_value_heads * d
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * config.num_attention_heads * d * context
    return float(L * per_layer + h * config.vocab_size)


@dataclass
class EnergyReport:
    """Spikes, synaptic additions and energy per token, against the ANN's multiply-accumulates.

    Energies use 0.9 pJ per addition and 4.6 pJ per multiply-accumulate (45 nm,
    Horowitz 2014). ``ann_macs`` counts the whole ANN (`ann_macs_per_token`);
    operators left in float mode are charged as MACs on the spiking side too.
    """

    tokens: int
    spikes: float
    additions: float
    float_macs: float
    ann_macs: float

    @property
    def energy_pj(self) -> float:
        """Spiking model: ``0.9 pJ x additions + 4.6 pJ x MACs`` of the float-mode operators, per token."""
        return 0.9 * self.additions + 4.6 * self.float_macs

    @property
    def ann_energy_pj(self) -> float:
        """ANN: ``4.6 pJ x MACs`` per token."""
        return 4.6 * self.ann_macs

    def summary(self) -> str:
        return (
            f"{self.spikes:.3g} spikes, {self.additions:.3g} additions and {self.float_macs:.3g} float MACs "
            f"per token: {self.energy_pj / 1e6:.3g} uJ vs the ANN's {self.ann_macs:.3g} MACs, "
            f"{self.ann_energy_pj / 1e6:.3g} uJ ({self.energy_pj / self.ann_energy_pj:.2f}x)"
        )


@torch.no_grad()
def energy_per_token(model: nn.Module, input_ids: Tensor) -> EnergyReport:
    """Run ``model`` once on ``input_ids`` ``[B, L]`` with spike tracking; per-token figures.

    Operators in spiking mode report their spikes and additions
    (`bt_neurons.track_spikes`); the MACs of the operators that run in
    float mode are counted from ``ann_macs_per_token`` (plus a final
    mixer's ``hidden x hidden``, a layer the ANN does not have) minus the
    MACs that spiking operators replaced.
    """
    stats, ids = tracked_run(model, input_ids)
    tokens = ids.numel()
    context = ids.shape[1]  # dense attention, as the spiking products count it
    ann = ann_macs_per_token(model.config, context)
    replaced = stats.macs / tokens
    cfg = model.config
    # a final mixer is a layer the ANN does not have: its hidden x hidden MACs are the spiking model's
    # own (a spiking mixer records the ones it replaced, a float one none)
    # (a factored head has none: its two factors are one layer, lm_head, recorded as such)
    factored = getattr(cfg, "final_mixer_mode", "spiking") == "factored"
    mixer = cfg.hidden_size**2 if getattr(cfg, "final_mixer", False) and not factored else 0
    return EnergyReport(
        tokens=tokens,
        spikes=stats.spikes / tokens,
        additions=stats.additions / tokens,
        float_macs=max(0.0, ann + mixer - replaced),
        ann_macs=ann,
    )
