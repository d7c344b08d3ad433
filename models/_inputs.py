"""Checks of the inputs every model family's ``forward`` takes."""

from __future__ import annotations

import torch
from torch import Tensor

from bt_neurons import _checks

__all__ = ["check_input_ids"]


def check_input_ids(input_ids: object, vocab_size: int) -> Tensor:
    """Token ids ``[batch, tokens]`` (an integer tensor, at least one token) in ``[0, vocab_size)``.

    Raises:
        TypeError: not a tensor, or not an integer one.
        ValueError: not two axes, no token, or an id outside the vocabulary (the message gives it).
    """
    _checks.check_tensor("input_ids", input_ids)
    if input_ids.dtype not in (torch.int32, torch.int64):
        raise TypeError(
            f"input_ids must be an integer tensor (int64 or int32 token ids), got {input_ids.dtype}"
        )
    if input_ids.dim() != 2 or input_ids.shape[1] == 0:
        hint = " (add a batch axis: input_ids[None])" if input_ids.dim() == 1 else ""
        raise ValueError(
            f"input_ids must have shape [batch, tokens] with at least one token, got "
            f"{tuple(input_ids.shape)}{hint}"
        )
    if not _checks.tracing() and input_ids.numel() and input_ids.device.type != "meta":
        lo, hi = torch.aminmax(input_ids)
        if int(lo) < 0 or int(hi) >= vocab_size:
            bad = int(lo) if int(lo) < 0 else int(hi)
            raise ValueError(f"input_ids must lie in [0, {vocab_size}) (the vocabulary size), got {bad}")
    return input_ids
