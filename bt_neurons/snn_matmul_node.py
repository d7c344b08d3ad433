r"""SNNMatmulNode: the product of two spike trains a network fired (SpikingJelly face of `SNNMatmul`).

``x`` ``[..., m, k]`` and ``y`` (``[..., n, k]`` for $X Y^\top$, attention's
$Q K^\top$; ``[..., k, n]`` for $X Y$, attention's $P V$) arrive as spike
trains with their scales; the result $\hat X \hat Y^\top$ is accumulated
with additions only (`telescoping_step`) and fired by postsynaptic EI_IF
neurons, or returned as per-step currents (``post=False``). Windows, step
modes and scales: `bt_neurons._spike_train_node`; the product:
`bt_neurons._spike_product_node`.

Exact scales. With a scale per row of ``x`` (``[..., m, 1]``) and per row
of ``y`` for $X Y^\top$ (``[..., n, 1]``) or per column for $X Y$
(``[..., 1, n]``), or per tensor, the counts multiply as integers and the
result is what `SNNMatmul` returns. `SNNMatmul` itself moves ``y``'s per-row
scale of $X Y$ onto the columns of ``x`` before encoding it; spikes of that
``x diag(s_Y)`` with ``y_scale=1`` give its result bit for bit.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor

from . import _checks
from ._spike_product_node import SpikeProductNode
from ._spike_train_node import ScaleSource
from .quantizer import Quantizer
from .snn_matmul import check_product_shapes, exact_dtype

__all__ = ["SNNMatmulNode"]


class SNNMatmulNode(SpikeProductNode):
    """Spiking matrix product of two spike trains; see the module docs.

    Args:
        timesteps: ``T``, the steps of a window of input spikes. Default 15.
        transpose_y: $X Y^\\top$ (default) or $X Y$.
        groups: repeat ``y``'s heads (axis -3) this many times (grouped-query attention). Default 1.
        x_scale: what one spike of ``x`` stands for: a number, a tensor broadcastable
            to one step (stored as a buffer), or the layer that fired it (its
            ``output_scale``); the call's ``x_scale=`` takes precedence.
        y_scale: the same for ``y``.
        post_timesteps: steps of the postsynaptic neurons (default ``T``).
        post: postsynaptic neurons encode the product (default); ``False``
            returns every step's current, $(s_X s_Y) \\odot \\Delta A(t)$.
        post_quantizer: the postsynaptic scale (default: dynamic per row of the result).
        path: ``"count"`` (default) or ``"spike"``.
        step_mode: ``"m"`` (default) or ``"s"``.
        surrogate_function: the postsynaptic neurons' surrogate.

    Shapes: multi-step ``[T, ..., m, k]`` and ``[T, ..., n, k]`` ->
    ``[T_post, ..., m, n]``; single-step without the leading ``T``.

    Example:
        >>> import torch
        >>> from bt_neurons import EIIFNode, Quantizer, SNNMatmul, SNNMatmulNode
        >>> q, k = torch.randn(3, 8), torch.randn(5, 8)
        >>> sq, sk = (Quantizer(qmax=15).scales(t)[0] for t in (q, k))  # per-token scales
        >>> spikes_q = EIIFNode(step_mode="m")((q / sq).expand(15, 3, 8))
        >>> spikes_k = EIIFNode(step_mode="m")((k / sk).expand(15, 5, 8))
        >>> node = SNNMatmulNode(15, post=False)  # the currents of every step
        >>> scores = node(spikes_q, spikes_k, x_scale=sq, y_scale=sk)
        >>> bool(torch.allclose(scores.sum(0), SNNMatmul(15)(q, k), atol=1e-5))
        True
    """

    _op = staticmethod(torch.matmul)

    def __init__(
        self,
        timesteps: int = 15,
        *,
        transpose_y: bool = True,
        groups: int = 1,
        x_scale: ScaleSource = None,
        y_scale: ScaleSource = None,
        post_timesteps: int | None = None,
        post: bool = True,
        post_quantizer: Quantizer | None = None,
        path: str = "count",
        step_mode: str = "m",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
    ) -> None:
        super().__init__(
            timesteps,
            x_scale=x_scale,
            y_scale=y_scale,
            post_timesteps=post_timesteps,
            post=post,
            post_quantizer=post_quantizer,
            path=path,
            step_mode=step_mode,
            surrogate_function=surrogate_function,
        )
        self.transpose_y = _checks.check_bool("transpose_y", transpose_y)
        self.groups = _checks.check_timesteps("groups", groups)

    def extra_repr(self) -> str:
        return (
            f"T={self.T}, T_post={self.T_post}, transpose_y={self.transpose_y}, groups={self.groups}, "
            f"path={self.path!r}, step_mode={self.step_mode!r}"
        )

    def _ready_y(self, y: Tensor) -> Tensor:
        if self.groups > 1 and y.dim() >= 3 and y.shape[-3] > 1:
            y = y.repeat_interleave(self.groups, dim=-3)
        if y.dim() >= 2 and self.transpose_y:
            y = y.transpose(-1, -2)
        return y

    def _factorable(self, sx, sy) -> bool:
        rows_x = sx is None or sx.dim() == 0 or sx.shape[-1] == 1
        cols_y = sy is None or sy.dim() == 0 or (sy.dim() >= 2 and sy.shape[-2] == 1) or sy.numel() == 1
        return rows_x and cols_y

    def _dtype(self, x: Tensor) -> torch.dtype:
        return exact_dtype(x.shape[-1], self.T, x.dtype)  # as SNNMatmul: integer products exact

    def _check_pair(self, x: Tensor, y: Tensor) -> None:
        for name, t in (("x", x), ("y", y)):
            _checks.check_rank(name, t, 2, "[..., rows, cols] per step")
        check_product_shapes(x.shape, y.shape, self.transpose_y, self.groups, "one step of ")

    def _output_shape(self, inputs):
        x, y = inputs
        ready = self._ready_y(y)
        lead = torch.broadcast_shapes(x.shape[:-2], ready.shape[:-2])
        return (*lead, x.shape[-2], ready.shape[-1])

    def _fan_out(self, x: Tensor, y: Tensor) -> tuple[int, int, int]:
        m, n, k = x.shape[-2], self._output_shape((x, y))[-1], x.shape[-1]
        return n, m, int(torch.Size(self._output_shape((x, y))).numel()) * k
