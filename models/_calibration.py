"""Clip-ratio calibration of spiking encoders, shared by the converted model families.

Every encoder of a converted model (the presynaptic quantizer of a `Synapsis`,
the operand quantizers of `SNNMatmul` / `SNNMultiply`) clips its inputs at
``clip_ratio`` times their largest magnitude before it spreads them over ``T``
steps. `register_clip_search` hooks every such operator of a model so that,
when a forward pass reaches it, it tries each clip ratio of a grid and keeps
the one whose output is closest (squared error) to its float twin's; each
operator is thus calibrated on the errors of the operators before it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from bt_neurons import SNNMatmul, SNNMultiply, Synapsis
from bt_neurons.synapsis import quantized_linear

__all__ = ["DEFAULT_CLIP_GRID", "register_clip_search"]

#: The clip ratios tried for every encoder.
DEFAULT_CLIP_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5)


def _reference(module: nn.Module, args: tuple, kwargs: dict) -> Tensor:
    """What ``module`` computes in float (its ANN twin), for the calibration error."""
    if isinstance(module, Synapsis):
        return module.layer(args[0])
    if isinstance(module, SNNMultiply):
        return args[0] * args[1]
    x, y = args
    groups = kwargs.get("groups", 1)
    if groups > 1:
        y = y.repeat_interleave(groups, dim=-3)
    return x @ (y.transpose(-1, -2) if module.transpose_y else y)


def _quantizer(module: nn.Module):
    return module.pre if isinstance(module, Synapsis) else module.quantizer


def _candidate(module: nn.Module, args: tuple, kwargs: dict) -> Tensor:
    if isinstance(module, Synapsis):  # without the in-place / tracking detours of forward
        return quantized_linear(args[0], module.pre, module.layer.weight, module.layer.bias)
    return module.forward(*args, **kwargs)


def register_clip_search(
    model: nn.Module,
    grid: Sequence[float],
    chosen: dict[str, float],
    *,
    channel_strength: float = 0.5,
    on_enter: Callable[[str], None] | None = None,
) -> list:
    """Hook each Synapsis / SNNMatmul / SNNMultiply of ``model`` to choose its clip ratio on the next forward.

    Args:
        model: the converted model (run it on the count path, without a graph).
        grid: clip ratios in (0, 1] to try.
        chosen: filled with ``{module name: clip ratio}`` as the operators are reached.
        channel_strength: an `SNNMultiply` with per-channel scales gets thresholds
            ``(max_t |x_tc|)^channel_strength`` (normalised), so that a few large
            channels do not set every token's scale.
        on_enter: called with the module's name as each operator is reached (progress).

    Returns:
        The hook handles: ``remove()`` each when done.
    """
    if not grid or any(not 0.0 < float(c) <= 1.0 for c in grid):
        raise ValueError(f"grid must hold clip ratios in (0, 1], got {list(grid)!r}")

    def hook(name: str):
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            if on_enter is not None:
                on_enter(name)
            if isinstance(module, SNNMultiply) and module.x_channel_scale is not None:
                for operand, buffer in zip(
                    args, (module.x_channel_scale, module.y_channel_scale), strict=True
                ):
                    peak = operand.detach().abs().reshape(-1, operand.shape[-1]).amax(0).double()
                    peak = peak.clamp_min(peak.max() * 1e-3).pow(channel_strength)
                    buffer.copy_(peak / peak.max())
            with torch.no_grad():
                ref = _reference(module, args, kwargs).double()
                q = _quantizer(module)
                best, best_err = 1.0, float("inf")
                for c in grid:
                    q.clip_ratio.fill_(float(c))
                    err = (_candidate(module, args, kwargs).double() - ref).pow(2).sum().item()
                    if err < best_err:
                        best, best_err = float(c), err
                q.clip_ratio.fill_(best)
            chosen[name] = best

        return pre_hook

    return [
        module.register_forward_pre_hook(hook(name), with_kwargs=True)
        for name, module in model.named_modules()
        if isinstance(module, Synapsis | SNNMatmul | SNNMultiply)
    ]
