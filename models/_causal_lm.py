"""What every causal-LM family's ``ForCausalLM.forward`` does after its model: logits, loss, the output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bt_neurons import _checks

from ._transformers import cache_field, with_cache

from transformers.modeling_outputs import CausalLMOutputWithPast  # noqa: E402  isort: skip  (bt_neurons first)

__all__ = ["check_logits_to_keep", "causal_lm_output"]


def check_logits_to_keep(logits_to_keep: object) -> None:
    """``logits_to_keep``: an int >= 0 (0: every position) or a tensor of positions."""
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int | Tensor):
        raise TypeError(
            f"logits_to_keep must be an int >= 0 or a tensor of positions, got {logits_to_keep!r}"
        )
    if isinstance(logits_to_keep, int) and logits_to_keep < 0:
        raise ValueError(f"logits_to_keep must be >= 0 (0: every position), got {logits_to_keep}")


def causal_lm_output(
    out: Any,
    head: Callable[[Tensor], Tensor],
    loss_function: Callable[..., Tensor],
    vocab_size: int,
    labels: Tensor | None,
    logits_to_keep: int | Tensor,
    **kwargs: Any,
) -> CausalLMOutputWithPast:
    """Logits of the kept positions, the shifted next-token loss and the cache, as transformers returns them.

    Args:
        out: the base model's output (``last_hidden_state`` ``[B, L, d]`` and its cache field).
        head: hidden states -> logits ``[..., vocab]``.
        loss_function: the model's ``loss_function`` (transformers' shifted cross-entropy).
        vocab_size: the vocabulary size for the loss.
        labels: ``[B, L]`` integer token ids (-100 ignored), or None.
        logits_to_keep: checked by `check_logits_to_keep`.
        kwargs: passed on to ``loss_function`` (e.g. ``num_items_in_batch``).
    """
    hidden = out.last_hidden_state
    if labels is not None:
        _checks.check_tensor("labels", labels)
        integer = not (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool)
        if not integer or labels.shape != hidden.shape[:2]:
            raise ValueError(
                f"labels must be integer token ids of shape {tuple(hidden.shape[:2])} (as input_ids), "
                f"got {labels.dtype} {tuple(labels.shape)}"
            )
    if isinstance(logits_to_keep, int) and logits_to_keep > 0:
        hidden = hidden[:, -logits_to_keep:]
    elif isinstance(logits_to_keep, Tensor):
        hidden = hidden[:, logits_to_keep]
    logits = head(hidden)
    loss = None
    if labels is not None:
        loss = loss_function(logits=logits, labels=labels, vocab_size=vocab_size, **kwargs)
    return with_cache(CausalLMOutputWithPast, getattr(out, cache_field(type(out))), loss=loss, logits=logits)
