r"""What the spike-train faces of the two products share: two trains in, one train out.

Both operands arrive as spike trains $S_X(t), S_Y(t)$ with their scales
$s_X, s_Y$ ($\hat X = s_X \odot C_X$, $C = \sum_t S(t)$). The product is
accumulated with the telescoping sum of `telescoping_step`,

$$
A(t) = A(t-1) + S_X(t)\,C_Y(t-1) + C_X(t-1)\,S_Y(t) + S_X(t)\,S_Y(t),
\qquad A(T) = C_X C_Y,
$$

every term a spike times an integer count (``path="spike"``), or from the
counts once (``path="count"``). When the scales factor out of the product
(per row of ``x``; per row of ``y`` for $X Y^\top$, per column for
$X Y$; anything for the elementwise product) the counts are integers and the
result is $(s_X s_Y) \odot A(T)$, exactly what the float operators compute;
otherwise the spikes carry their scales and $A(T) = \hat X \hat Y$.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor

from ._spike_train_node import ScaleSource, SpikeTrainNode, check_spikes
from .accounting import record
from .quantizer import Quantizer
from .snn_matmul import telescoping_step

__all__ = ["SpikeProductNode"]


class SpikeProductNode(SpikeTrainNode):
    """A product of two spike trains (subclasses: `SNNMatmulNode`, `SNNMultiplyNode`)."""

    _inputs = ("x", "y")
    _scale_names = ("x_scale", "y_scale")
    #: the product of one step's operands (``torch.matmul`` or ``torch.mul``)
    _op: Callable[[Tensor, Tensor], Tensor]

    def __init__(
        self,
        timesteps: int = 15,
        *,
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
            post_timesteps=post_timesteps,
            post=post,
            post_quantizer=post_quantizer,
            surrogate_function=surrogate_function,
            path=path,
            step_mode=step_mode,
            scales=(x_scale, y_scale),
        )

    # ----------------------------------------------------------- subclasses
    def _check_pair(self, x: Tensor, y: Tensor) -> None:  # pragma: no cover
        """Shapes of one step's operands (they must fit the product)."""
        raise NotImplementedError

    def _ready_y(self, y: Tensor) -> Tensor:
        """One step of ``y`` (or its scale) in the layout that ``_op`` takes."""
        return y

    def _factorable(self, sx: Tensor | None, sy: Tensor | None) -> bool:  # pragma: no cover
        """Whether the (ready) scales factor out of the product."""
        raise NotImplementedError

    def _dtype(self, x: Tensor) -> torch.dtype:  # pragma: no cover
        """The dtype the integer products are exact in."""
        raise NotImplementedError

    def _fan_out(self, x: Tensor, y: Tensor) -> tuple[int, int, int]:  # pragma: no cover
        """Additions one spike of ``x`` (and of ``y``) triggers, and the ANN's MACs of the whole product."""
        raise NotImplementedError

    # ------------------------------------------------------------------ pieces
    def _check_inputs(self, inputs: tuple[Tensor, ...], multi: bool) -> None:
        if len(inputs) != 2:
            raise TypeError(
                f"{type(self).__name__} takes two spike trains, x and y; got {len(inputs)} inputs"
            )
        x, y = inputs
        what = "[T, N, ...] (step_mode='m')" if multi else "[N, ...] (step_mode='s')"
        for name, t in (("x", x), ("y", y)):
            check_spikes(name, t, 2 if multi else 1, what, None if name == "x" else ("x", x))
            if multi and t.shape[0] != self.T:
                raise ValueError(
                    f"{name} must have T={self.T} steps along its first axis (one window), got {t.shape[0]}"
                )
        if x.dtype != y.dtype:
            raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
        self._check_pair(x[0] if multi else x, y[0] if multi else y)

    def _ready_scales(self, scales) -> tuple[Tensor | None, Tensor | None]:
        sx, sy = scales
        return sx, (None if sy is None else self._ready_y(sy))

    def _prepared(self, inputs, scales) -> tuple[Tensor, Tensor]:
        """One step's ``x`` and ``y`` (made ready) in the exact dtype; spikes times their scales when the
        scales do not factor out of the product."""
        x, y = inputs
        sx, sy = self._ready_scales(scales)
        dt = self._dtype(x)
        x, y = x.to(dt), self._ready_y(y).to(dt)
        if not self._factorable(sx, sy):
            x = x if sx is None else x * sx.to(dt)
            y = y if sy is None else y * sy.to(dt)
        return x, y

    def _fresh(self, inputs, scales):
        x, y = self._prepared(inputs, scales)
        self._out_dtype = inputs[0].dtype  # of the window: the result comes back in the spikes' dtype
        self._window_macs = self._fan_out(inputs[0], inputs[1])[2]
        cx, cy = torch.zeros_like(x), torch.zeros_like(y)
        if self.path == "count":
            return (cx, cy)
        return (torch.zeros_like(self._op(x, y)), cx, cy)

    def _accumulate(self, acc, inputs, scales):
        x, y = self._prepared(inputs, scales)
        if self.path == "count":
            cx, cy = acc
            return (cx + x, cy + y)
        return telescoping_step(*acc, x, y, self._op)

    def _scaled_result(self, prod: Tensor, scales) -> Tensor:
        """``(s_X s_Y) * prod`` if the scales factor out (else ``prod`` is scaled already)."""
        sx, sy = self._ready_scales(scales)
        if self._factorable(sx, sy):
            outer = _outer(sx, sy)
            if outer is not None:
                prod = prod * outer.to(prod.dtype)
        return prod.to(self._out_dtype)

    def _finish(self, acc, scales):
        prod = self._op(acc[-2], acc[-1]) if self.path == "count" else acc[0]
        return self._scaled_result(prod, scales)

    def _current(self, acc, inputs, scales, first):
        x, y = self._prepared(inputs, scales)
        cx, cy = acc[-2], acc[-1]
        return self._scaled_result(self._op(x, cy) + self._op(cx, y) + self._op(x, y), scales)

    def _record(self, inputs, out_spikes, window_done):
        spikes = additions = 0.0
        if inputs is not None:
            x, y = inputs
            nx, ny = float(x.abs().sum()), float(y.abs().sum())
            fan_x, fan_y, _ = self._fan_out(x, y)
            additions = nx * fan_x + ny * fan_y  # the input spikes themselves are the firing layers'
        if out_spikes is not None:
            spikes = float(out_spikes.abs().sum())
        record(type(self).__name__, spikes, additions, self._window_macs if window_done else 0)


def _outer(sx: Tensor | None, sy: Tensor | None) -> Tensor | None:
    """``sx * sy`` (either may be None: a silent operand's scale)."""
    if sx is None:
        return sy
    return sx if sy is None else sx * sy
