r"""SpikeTrainOperator: any one-input bt operator between two layers of a user's neurons.

`SNNSoftmax`, `SNNRMSNorm` and the approximators take floats: their own
neurons are driven by the value they are given. Between two layers of spiking
neurons that value is what the spikes of a window encode,
$\hat x = s \sum_{t<T} S_t$. ``SpikeTrainOperator`` integrates the window's
spikes (their counts: additions only), applies the operator to $\hat x$ and
lets postsynaptic EI_IF neurons fire the result $f(\hat x) / s_{post}$ for
``T_post`` steps, so that

$$
s_{post} \sum_j \text{out}_j = Q_{post}\big(f(\hat x)\big)
$$

exactly (``Q_post`` the postsynaptic quantizer). A nonlinear operator has no
per-step current, so there is no ``post=False``. Windows, step modes and
scales: `bt_neurons._spike_train_node`.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import surrogate
from torch import Tensor, nn

from . import _checks
from ._spike_train_node import ScaleSource, SpikeTrainNode, check_spikes
from .accounting import record
from .quantizer import Quantizer

__all__ = ["SpikeTrainOperator"]


class SpikeTrainOperator(SpikeTrainNode):
    """A float-input operator fed with spike trains; see the module docs.

    Args:
        operator: the module (or function) applied to the decoded window,
            ``[N, ..., C] -> [N, ..., C']``, e.g. ``SNNSoftmax(15)``,
            ``SNNRMSNorm(C)``, a bt approximator (count path).
        timesteps: ``T``, steps of a window of input spikes. Default 15.
        scale: what one input spike stands for (a number, a tensor
            broadcastable to one step, or the layer that fired the spikes);
            ``scale=`` in the call takes precedence.
        post_timesteps: steps of the postsynaptic neurons (default ``T``).
        post_quantizer: the postsynaptic scale (default: dynamic per token).
        step_mode: ``"m"`` (default) or ``"s"``.
        surrogate_function: the postsynaptic neurons' surrogate.

    Example:
        >>> import torch
        >>> from bt_neurons import EIIFNode, Quantizer, SNNSoftmax, SpikeTrainOperator
        >>> scores = torch.randn(2, 6) * 3
        >>> s = Quantizer(qmax=15).scales(scores)[0]
        >>> spikes = EIIFNode(step_mode="m")((scores / s).expand(15, 2, 6))
        >>> node = SpikeTrainOperator(SNNSoftmax(), 15)  # or approximators.spiking_softmax()
        >>> p = node(spikes, scale=s).sum(0) * node.output_scale  # decoded probabilities
        >>> bool(torch.equal(p, Quantizer(qmax=15)(SNNSoftmax()(Quantizer(qmax=15)(scores)))))
        True
    """

    def __init__(
        self,
        operator: nn.Module,
        timesteps: int = 15,
        *,
        scale: ScaleSource = None,
        post_timesteps: int | None = None,
        post_quantizer: Quantizer | None = None,
        step_mode: str = "m",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
    ) -> None:
        _checks.check_callable("operator", operator)
        super().__init__(
            timesteps,
            post_timesteps=post_timesteps,
            post=True,
            post_quantizer=post_quantizer,
            surrogate_function=surrogate_function,
            path="count",
            step_mode=step_mode,
            scales=(scale,),
        )
        self.operator = operator
        self._shapes: dict[tuple[int, ...], tuple[int, ...]] = {}  # output shape by input shape

    def extra_repr(self) -> str:
        return f"T={self.T}, T_post={self.T_post}, step_mode={self.step_mode!r}"

    def _check_inputs(self, inputs: tuple[Tensor, ...], multi: bool) -> None:
        if len(inputs) != 1:
            raise TypeError(
                f"a SpikeTrainOperator takes one spike train, got {len(inputs)} positional inputs"
            )
        (spikes,) = inputs
        what = "[T, N, ...] (step_mode='m')" if multi else "[N, ...] (step_mode='s')"
        check_spikes("spikes", spikes, 2 if multi else 1, what)
        if multi and spikes.shape[0] != self.T:
            raise ValueError(
                f"spikes must have T={self.T} steps along their first axis (a window), got {spikes.shape[0]}"
            )

    def _fresh(self, inputs, scales):
        (spikes,) = inputs
        return (torch.zeros(spikes.shape, dtype=_checks.compute_dtype(spikes.dtype), device=spikes.device),)

    def _accumulate(self, acc, inputs, scales):
        return (acc[0] + inputs[0].to(acc[0].dtype),)

    def _finish(self, acc, scales):
        (counts,), (scale,) = acc, scales
        x_hat = counts if scale is None else counts * scale  # the value the window's spikes encode
        y = self.operator(x_hat)
        self._shapes[tuple(counts.shape)] = tuple(y.shape)
        return y

    def _output_shape(self, inputs):
        """The operator's output shape for this input (found once, on zeros, for window 0's silence)."""
        shape = tuple(inputs[0].shape)
        if shape not in self._shapes:
            with torch.no_grad():
                zeros = torch.zeros(
                    shape, dtype=_checks.compute_dtype(inputs[0].dtype), device=inputs[0].device
                )
                self._shapes[shape] = tuple(self.operator(zeros).shape)
        return self._shapes[shape]

    def _current(self, acc, inputs, scales, first):  # pragma: no cover - post is always True
        raise AssertionError("unreachable")

    def _record(self, inputs, out_spikes, window_done):
        spikes = float(out_spikes.abs().sum()) if out_spikes is not None else 0.0
        record("SpikeTrainOperator", spikes, 0.0, 0)  # the operator's own neurons report themselves
