r"""SNNMultiplyNode: the elementwise product of two spike trains (SpikingJelly face of `SNNMultiply`).

``x`` and ``y`` of one shape ``[..., C]`` arrive as spike trains with their
scales (any shape broadcastable to one step: per token, per group, per
channel); the product $(s_x s_y) \odot (C_x \odot C_y)$ is accumulated with
the elementwise telescoping sum (additions only, ``path="spike"``) or from
the counts (``path="count"``), then fired by postsynaptic EI_IF neurons or
returned as per-step currents (``post=False``). With per-token (or group)
scales it is what `SNNMultiply` returns bit for bit. Windows, step modes and
scales: `bt_neurons._spike_train_node`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _checks
from ._spike_product_node import SpikeProductNode

__all__ = ["SNNMultiplyNode"]


class SNNMultiplyNode(SpikeProductNode):
    """Spiking elementwise product of two spike trains; see the module docs.

    Args:
        timesteps: ``T``, the steps of a window of input spikes. Default 15.
        x_scale: what one spike of ``x`` stands for: a number, a tensor broadcastable
            to one step (stored as a buffer), or the layer that fired it (its
            ``output_scale``); the call's ``x_scale=`` takes precedence.
        y_scale: the same for ``y``.
        post_timesteps: steps of the postsynaptic neurons (default ``T``).
        post: postsynaptic neurons encode the product (default); ``False``
            returns every step's current.
        post_quantizer: the postsynaptic scale (default: dynamic per token).
        path: ``"count"`` (default) or ``"spike"``.
        step_mode: ``"m"`` (default) or ``"s"``.
        surrogate_function: the postsynaptic neurons' surrogate.

    Shapes: multi-step ``[T, N, ..., C]`` (both) -> ``[T_post, N, ..., C]``;
    single-step without the leading ``T``.
    """

    _op = staticmethod(torch.mul)

    def extra_repr(self) -> str:
        return f"T={self.T}, T_post={self.T_post}, path={self.path!r}, step_mode={self.step_mode!r}"

    def _factorable(self, sx, sy) -> bool:
        return True  # elementwise: every scale factors out

    def _dtype(self, x: Tensor) -> torch.dtype:
        return _checks.compute_dtype(x.dtype)  # as SNNMultiply

    def _check_pair(self, x: Tensor, y: Tensor) -> None:
        if x.shape != y.shape:
            raise ValueError(
                f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)} per step"
            )

    def _output_shape(self, inputs):
        return tuple(inputs[0].shape)

    def _fan_out(self, x: Tensor, y: Tensor) -> tuple[int, int, int]:
        return 1, 1, x.numel()  # a spike adds the other operand's running count
