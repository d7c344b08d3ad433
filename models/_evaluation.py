r"""What the model families share to measure a causal LM on text: perplexity over fixed windows.

Perplexity is $\exp$ of the mean next-token negative log-likelihood over
non-overlapping windows of ``window`` tokens (the first token of each window
is context only). Works for any transformers causal LM, spiking or not, so a
model and its twin are measured on exactly the same windows.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bt_neurons import _checks, track_spikes
from bt_neurons.accounting import SpikeStats

__all__ = ["perplexity", "tracked_run", "windows"]


def windows(input_ids: Tensor, window: int, max_windows: int | None = None) -> Tensor:
    """Non-overlapping windows ``[W, window]`` of a token sequence ``[L]`` or ``[1, L]``."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise ValueError(f"window must be an int >= 2, got {window!r}")
    _check_sequence(input_ids)
    ids = input_ids.reshape(-1)
    count = ids.numel() // window
    if max_windows is not None:
        count = min(count, _checks.check_int("max_windows", max_windows, 1))
    if count == 0:
        raise ValueError(f"input_ids has {ids.numel()} tokens, fewer than one window of {window}")
    return ids[: count * window].view(count, window)


def _check_sequence(input_ids: object) -> None:
    """One sequence of token ids: an integer tensor ``[L]`` or ``[1, L]``."""
    _checks.check_tensor("input_ids", input_ids)
    if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
        raise TypeError(f"input_ids must be an integer tensor of token ids, got {input_ids.dtype}")
    if input_ids.dim() not in (1, 2) or (input_ids.dim() == 2 and input_ids.shape[0] != 1):
        raise ValueError(
            f"input_ids must be one sequence [L] or [1, L], got shape {tuple(input_ids.shape)} "
            "(measure several texts one by one, or join them)"
        )


@torch.no_grad()
def perplexity(
    model: nn.Module, input_ids: Tensor, window: int = 256, *, max_windows: int | None = None, batch: int = 1
) -> float:
    """Perplexity of ``model`` on ``input_ids`` over fixed windows (see the module docs).

    Args:
        model: a causal LM returning ``.logits``.
        input_ids: token ids ``[L]`` or ``[1, L]``.
        window: tokens per window. Default 256.
        max_windows: use at most this many windows.
        batch: windows per forward pass (>= 1).
    """
    _checks.check_int("batch", batch, 1)
    chunks = windows(input_ids, window, max_windows)
    nll, count = 0.0, 0
    for start in range(0, chunks.shape[0], batch):
        ids = chunks[start : start + batch]
        logits = model(input_ids=ids, use_cache=False).logits.float()
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="sum"
        )
        nll += loss.item()
        count += ids[:, 1:].numel()
    return math.exp(nll / count)


@torch.no_grad()
def tracked_run(model: nn.Module, input_ids: Tensor) -> tuple[SpikeStats, Tensor]:
    """Run ``model`` once on ``input_ids`` ``[B, L]`` or ``[L]`` inside `bt_neurons.track_spikes`.

    Returns ``(stats, ids)``: the totals of the run and the ids as ``[B, L]``.
    """
    _checks.check_tensor("input_ids", input_ids)
    if input_ids.dim() not in (1, 2) or input_ids.numel() == 0:
        raise ValueError(
            f"input_ids must be token ids [B, L] or [L], not empty, got {tuple(input_ids.shape)}"
        )
    ids = input_ids if input_ids.dim() == 2 else input_ids.unsqueeze(0)
    with track_spikes() as stats:
        model(input_ids=ids, use_cache=False)
    return stats, ids
