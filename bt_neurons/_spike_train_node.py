r"""What the spike-train faces of the operators share: integrate a window of spikes, then fire.

`SynapsisNode`, `SNNMatmulNode` and `SNNMultiplyNode` take the spike trains
that a user's own neurons fired and return spike trains, as SpikingJelly
nodes. They all work the same way (paper 2.2):

1. **Integrate** a window of ``T`` presynaptic steps. Each spike of value
   $S_t \in \{-1, 0, +1\}$ stands for $s$ (its *scale*: the layer that fired
   it encoded $x / s$), so the window's input is $\hat x = s \sum_t S_t$.
   The operator accumulates its result $y$ from the spikes with additions
   only (``path="spike"``) or from the counts in closed form
   (``path="count"``).
2. **Fire**: postsynaptic EI_IF neurons (``theta_0 = 0.5, alpha = 1, r = 1``)
   are driven by the constant $d = y / s_{post}$ for ``T_post`` steps. They
   fire the code of $\operatorname{round}(d)$ ($\operatorname{sign}(d)$ at
   steps $0 .. |q| - 1$), so the output trains stand for
   $s_{post}\,\operatorname{clip}(\operatorname{round}(y / s_{post}), \pm T_{post})$:
   exactly what the float-input operator returns. The scale $s_{post}$ of
   the spikes fired is ``output_scale``, which the next layer reads.

**Multi-step** (``step_mode="m"``): spikes ``[T, N, ...]`` in, spikes
``[T_post, N, ...]`` out (or, with ``post=False``, the synaptic current of
every input step ``[T, N, ...]``, whose sum over the steps is $y$).

**Single-step** (``step_mode="s"``): one step per call, in windows of ``T``
calls counted from the last reset. The spikes of window ``k`` are integrated
during its ``T`` calls, and the postsynaptic neurons fire their code during
window ``k + 1`` (the first ``T_post`` calls of it; silence in window 0). A
network of ``L`` such layers thus answers after ``L`` windows: step it
``(L + 1) T`` times. With ``post=False`` the current of every step comes out
at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from spikingjelly.activation_based import base, surrogate
from torch import Tensor, nn

from . import _checks
from .accounting import tracking
from .eiif_node import EIIFNode
from .quantizer import Quantizer

__all__ = ["SpikeTrainNode", "check_spikes", "ScaleSource"]

#: what a scale may be given as: a number, a tensor, or a module whose ``output_scale`` it reads
ScaleSource = float | Tensor | nn.Module | None


def check_spikes(
    name: str, spikes: object, min_rank: int, what: str, device: tuple[str, Tensor] | None = None
) -> Tensor:
    """A floating tensor of rank ``>= min_rank`` whose values are -1, 0 or +1 (checked in eager mode).

    ``device``: ``(what, tensor)`` whose device the spikes must be on (checked before the values).
    """
    _checks.check_floating(name, spikes)
    _checks.check_rank(name, spikes, min_rank, what)
    if device is not None:
        _checks.check_same_device(name, spikes, *device)
    if not _checks.tracing() and bool(((spikes != 0) & (spikes.abs() != 1)).any()):
        bad = spikes[(spikes != 0) & (spikes.abs() != 1)].flatten()[0].item()
        raise ValueError(
            f"{name} must hold spikes, values in {{-1, 0, +1}}, but it contains {bad!r}: pass the spike "
            "trains a layer of neurons fired (an EIIFNode's output), not the values they encode"
        )
    return spikes


class SpikeTrainNode(base.MemoryModule):
    """The windowed integrate-then-fire machinery of the spike-train faces (see the module docs).

    Subclasses name their inputs (``_inputs``) and scales (``_scale_names``)
    and implement `_fresh` (an empty accumulator), `_accumulate` (one input
    step), `_finish` (the window's result ``y``) and `_current` (one step's
    synaptic current, for ``post=False``).

    Memories (SpikingJelly's ``register_memory``, reset by
    ``functional.reset_net``, detached by ``functional.detach_net``): ``t``
    (steps since reset, 0-d int64), ``acc`` (the accumulators of the window
    being integrated, a tuple), ``window_scales`` (the input scales of that
    window), ``drive`` (the postsynaptic neurons' input $y / s_{post}$ while
    they fire), ``output_scale`` (the scale of the spikes fired now).
    """

    _inputs: tuple[str, ...] = ("spikes",)
    _scale_names: tuple[str, ...] = ("scale",)

    def __init__(
        self,
        timesteps: int,
        *,
        post_timesteps: int | None,
        post: bool,
        post_quantizer: Quantizer | None,
        surrogate_function: surrogate.SurrogateFunctionBase | None,
        path: str,
        step_mode: str,
        scales: Sequence[ScaleSource],
    ) -> None:
        super().__init__()
        self.T = _checks.check_timesteps("timesteps", timesteps)
        post = _checks.check_bool("post", post)
        if not post and post_timesteps is not None:
            raise ValueError("post_timesteps needs postsynaptic neurons: leave it None with post=False")
        if not post and post_quantizer is not None:
            raise ValueError("post_quantizer needs postsynaptic neurons: leave it None with post=False")
        self.T_post = (
            _checks.check_timesteps(
                "post_timesteps", post_timesteps if post_timesteps is not None else self.T
            )
            if post
            else None
        )
        self.path = _checks.check_choice("path", path, ("count", "spike"))
        self.step_mode = _checks.check_choice("step_mode", step_mode, ("s", "m"))
        if post_quantizer is not None:
            if not isinstance(post_quantizer, Quantizer):
                raise TypeError(
                    f"post_quantizer must be a bt_neurons.Quantizer, got {type(post_quantizer).__name__}"
                )
            if not post_quantizer.symmetric:
                raise ValueError(
                    "post_quantizer must be symmetric: EI_IF neurons fire +1 and -1 symmetrically"
                )
            if post_quantizer.qmax != self.T_post:
                raise ValueError(
                    f"post_quantizer.qmax ({post_quantizer.qmax}) must equal the postsynaptic neurons' "
                    f"time steps post_timesteps ({self.T_post})"
                )
        self.post_quantizer = (
            (post_quantizer if post_quantizer is not None else Quantizer(qmax=self.T_post)) if post else None
        )
        if surrogate_function is not None:
            _checks.check_callable("surrogate_function", surrogate_function)
        #: the postsynaptic EI_IF neurons (the paper's defaults); their surrogate carries the gradient
        self.post_neurons = EIIFNode(surrogate_function=surrogate_function) if post else None
        self._sources: dict[str, nn.Module] = {}
        for name, value in zip(self._scale_names, scales, strict=True):
            self._set_scale(name, value)
        self.register_memory("t", torch.zeros((), dtype=torch.long))
        self.register_memory("acc", None)
        self.register_memory("window_scales", None)
        self.register_memory("drive", None)
        self.register_memory("output_scale", None)

    def supported_step_mode(self):
        return ("s", "m")

    @property
    def post(self) -> bool:
        """Whether postsynaptic neurons encode the result (else the currents come out)."""
        return self.post_quantizer is not None

    # ------------------------------------------------------------------ scales
    def _set_scale(self, name: str, value: ScaleSource) -> None:
        """A scale given at construction: a buffer (number / tensor) or a linked module (not registered)."""
        if value is None:
            self.register_buffer(name, None)
        elif isinstance(value, nn.Module):
            if not hasattr(value, "output_scale"):
                raise TypeError(
                    f"{name} as a module must be a layer that fires spikes with a known scale (a "
                    f"SynapsisNode, SNNMatmulNode or SNNMultiplyNode: they have output_scale), "
                    f"got {type(value).__name__}"
                )
            self.register_buffer(name, None)
            self._sources[name] = value  # a plain dict: not a submodule (no second copy in state_dict)
        else:
            if isinstance(value, Tensor):
                _checks.check_floating(name, value)
                tensor = value.detach().clone()
            else:
                tensor = torch.tensor(_checks.check_number(name, value))
            _checks.check_finite(name, tensor)
            _checks.check_positive(name, tensor)
            self.register_buffer(name, tensor)

    def _resolve_scale(self, name: str, given: Tensor | None, like: Tensor, spikes: Tensor) -> Tensor | None:
        """The scale of one input for a window: the call's, the linked layer's or the buffer.

        ``None`` when the linked layer has fired nothing yet (its spikes must then be silent).
        """
        if given is not None:
            scale = _checks.check_floating(name, given.to(like.device) if given.dim() == 0 else given)
            if not _checks.tracing():
                _checks.check_finite(name, scale)
                _checks.check_positive(name, scale)
        elif name in self._sources:
            source = self._sources[name]
            scale = source.output_scale
            if scale is None:
                if not _checks.tracing() and bool(spikes.any()):
                    raise ValueError(
                        f"{name}: the linked layer {type(source).__name__} has not fired yet (its "
                        "output_scale is None), but spikes arrived; run it before this layer in every step"
                    )
                return None
        else:
            scale = getattr(self, name)
            if scale is None:
                raise ValueError(
                    f"{name} is missing: say what one spike stands for, as {name}= at construction (a "
                    f"number, a tensor, or the layer that fired the spikes) or {name}= in the call"
                )
        _checks.check_same_device(name, scale, self._inputs[0], like)
        _checks.check_broadcastable(
            f"{name} and the spikes of one step", **{name: scale.shape, "spikes": like.shape}
        )
        return scale.to(like.dtype)

    # ------------------------------------------------------------- subclasses
    def _check_inputs(self, inputs: tuple[Tensor, ...], multi: bool) -> None:  # pragma: no cover
        raise NotImplementedError

    def _fresh(
        self, inputs: tuple[Tensor, ...], scales: tuple[Tensor | None, ...]
    ) -> tuple[Tensor, ...]:  # pragma: no cover
        """Empty accumulators for a window whose steps look like ``inputs``."""
        raise NotImplementedError

    def _accumulate(self, acc, inputs, scales) -> tuple[Tensor, ...]:  # pragma: no cover
        """The accumulators after one more input step."""
        raise NotImplementedError

    def _finish(self, acc, scales) -> Tensor:  # pragma: no cover
        """The window's result ``y``."""
        raise NotImplementedError

    def _current(self, acc, inputs, scales, first: bool) -> Tensor:  # pragma: no cover
        """The synaptic current of one step (``post=False``) given the accumulators before it; the bias,
        if any, enters with the first step."""
        raise NotImplementedError

    def _record(self, inputs, out_spikes: Tensor | None, window_done: bool) -> None:  # pragma: no cover
        """Report to ``track_spikes``: the additions that one step's input spikes trigger (``inputs``, or
        None; the spikes themselves are counted by the layer that fired them), the spikes this node's
        postsynaptic neurons fire (``out_spikes``, or None), and once per window (``window_done``) the
        bias additions and the multiply-accumulates of the ANN twin."""
        raise NotImplementedError

    def _track(self, inputs, out_spikes: Tensor | None, window_done: bool) -> None:
        if tracking():
            with torch.no_grad():
                self._record(inputs, out_spikes, window_done)

    def _activate(self, y: Tensor) -> Tensor:
        """What the postsynaptic neurons encode (``y``; `SynapsisNode` may apply an activation)."""
        return y

    # ------------------------------------------------------------------- firing
    def _encode(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(d, s_post)``: the postsynaptic drive ``y / s_post`` and the scale of the spikes it fires."""
        z = self._activate(y)
        q = self.post_quantizer
        if q._observing:
            raise ValueError(
                "the spike-train face cannot calibrate its post_quantizer: calibrate the float operator "
                "it was made from (with quantizer.calibrating()) and build this node with from_...()"
            )
        scale, _ = q.scales(z.detach())
        scale = scale.to(z.dtype).detach()
        return z / scale, scale

    def _fire(self, drive: Tensor, j: int) -> Tensor:
        """Step ``j`` of the postsynaptic EI_IF neurons under the constant drive (with their surrogate)."""
        spikes, _ = self.post_neurons.step(drive, torch.zeros((), dtype=drive.dtype, device=drive.device), j)
        return spikes

    # ------------------------------------------------------------------ forward
    def _split_scales(self, kwargs: dict) -> tuple[Tensor | None, ...]:
        """The scales given in the call, by name (numbers as 0-d tensors)."""
        unknown = set(kwargs) - set(self._scale_names)
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {sorted(unknown)}; the scales are {self._scale_names}"
            )
        given = []
        for name in self._scale_names:
            value = kwargs.get(name)
            if value is not None and not isinstance(value, Tensor):
                value = torch.tensor(_checks.check_number(name, value))
            given.append(value)
        return tuple(given)

    def _scales_for(
        self, inputs: tuple[Tensor, ...], given: tuple[Tensor | None, ...]
    ) -> tuple[Tensor | None, ...]:
        return tuple(
            self._resolve_scale(name, g, x[0] if x.dim() and self.step_mode == "m" else x, x)
            for name, g, x in zip(self._scale_names, given, inputs, strict=True)
        )

    def multi_step_forward(self, *inputs: Tensor, **kwargs) -> Tensor:
        self._check_inputs(inputs, multi=True)
        scales = self._scales_for(inputs, self._split_scales(kwargs))
        steps = [x.unbind(0) for x in inputs]
        acc = self._fresh(tuple(s[0] for s in steps), scales)
        currents = []
        for t, step in enumerate(zip(*steps, strict=True)):
            if not self.post:
                currents.append(self._current(acc, step, scales, t == 0))
            acc = self._accumulate(acc, step, scales)
            self._track(step, None, t == 0 and not self.post)
        if not self.post:
            return torch.stack(currents)
        drive, out_scale = self._encode(self._finish(acc, scales))
        out = torch.stack([self._fire(drive, j) for j in range(self.T_post)]).to(inputs[0].dtype)
        self.output_scale = out_scale
        self._track(None, out, True)
        return out

    def single_step_forward(self, *inputs: Tensor, **kwargs) -> Tensor:
        self._check_inputs(inputs, multi=False)
        given = self._split_scales(kwargs)
        step = int(self.t)
        shapes = tuple(x.shape for x in inputs)
        if step and self.window_scales is not None and self.window_scales[0] != shapes:
            # another batch size (or shape) without reset_net: a new sequence, as SpikingJelly's nodes do
            step, self.acc, self.drive, self.output_scale = 0, None, None, None
        j = step % self.T
        finished = False
        if j == 0:
            if step and self.post:  # the window just integrated: its neurons fire from now on
                self.drive, self.output_scale = self._encode(self._finish(self.acc, self.window_scales[1]))
                finished = True
            scales = self._scales_for(inputs, given)
            self.window_scales = (shapes, scales, given)
            self.acc = self._fresh(inputs, scales)
        else:
            scales = self.window_scales[1]
            for name, g, captured in zip(self._scale_names, given, self.window_scales[2], strict=True):
                if g is not None and (captured is None or not torch.equal(g.to(captured.device), captured)):
                    raise ValueError(
                        f"{name} changed within a window of T={self.T} steps (step {j} of it): a window's "
                        "spikes all stand for the scale given with its first step"
                    )
            for name, scale, x in zip(self._scale_names, scales, inputs, strict=True):
                if scale is None and not _checks.tracing() and bool(x.any()):
                    raise ValueError(
                        f"{name}: spikes arrived in a window whose linked layer had not fired yet"
                    )
        if self.post:
            if self.drive is None or j >= self.T_post:
                out = torch.zeros(self._output_shape(inputs), dtype=inputs[0].dtype, device=inputs[0].device)
            else:
                out = self._fire(self.drive, j).to(inputs[0].dtype)
        else:
            out = self._current(self.acc, inputs, scales, j == 0)
        self.acc = self._accumulate(self.acc, inputs, scales)
        self.t = torch.as_tensor(step + 1, dtype=torch.long, device=self.t.device)
        self._track(inputs, out if self.post else None, finished if self.post else j == 0)
        return out

    def detach(self) -> None:
        """Detach every memory from the graph, also the accumulators held in tuples (truncated BPTT)."""
        super().detach()
        if self.acc is not None:
            self.acc = tuple(a.detach() for a in self.acc)

    def _output_shape(self, inputs: tuple[Tensor, ...]) -> tuple[int, ...]:  # pragma: no cover
        raise NotImplementedError
