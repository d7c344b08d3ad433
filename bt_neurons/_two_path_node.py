"""What the SpikingJelly faces of every bt-neurons neuron share."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import neuron
from torch import Tensor

from . import _checks

__all__ = ["TwoPathNode"]


class TwoPathNode(neuron.BaseNode):
    """A ``BaseNode`` with a spike path and a count path.

    Subclasses implement ``single_step_functional_forward`` /
    ``multi_step_functional_forward`` (the spike path), ``_count(x, T)`` (the
    count path) and ``_check_parameters()``; they register a memory ``t`` (steps
    since reset) and set ``T``, ``path`` and ``check_finite``. This base
    validates inputs, keeps the membrane in the compute dtype and routes
    ``forward`` to the chosen path.
    """

    T: int | None
    path: str
    check_finite: bool

    @property
    def step_limit(self) -> int | None:
        """How many steps the neuron can take after a reset (None: unlimited)."""
        return None

    def _check_parameters(self) -> None:  # pragma: no cover - overridden
        """Re-validate learnable parameters that training may have moved."""

    def _check_input(self, x: Tensor, min_rank: int, what: str) -> None:
        _checks.check_floating("x", x)
        _checks.check_rank("x", x, min_rank, what)
        if self.check_finite:
            _checks.check_finite("x", x)

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        v = states[0]
        dtype = _checks.compute_dtype(x.dtype)
        if not isinstance(v, Tensor):  # a reset state: a new sequence
            v = torch.zeros(x.shape, dtype=dtype, device=x.device)
        elif v.shape != x.shape:  # zeros here would keep the step count t: thresholds of a later step
            raise ValueError(
                f"x has neurons of shape {tuple(x.shape)} but the membrane v from earlier steps has shape "
                f"{tuple(v.shape)}: call functional.reset_net(net) before a new sequence"
            )
        else:
            v = v.to(dtype)
        return (v, *states[1:])

    def single_step_forward(self, x: Tensor, *args, **kwargs):
        if self.path == "count":
            return self.count(x)
        self._check_input(x, 0, "[N, *] or [] (step_mode='s')")  # rank 0 is one neuron, as in SpikingJelly
        self._check_parameters()
        return super().single_step_forward(x, *args, **kwargs)

    def multi_step_forward(self, x_seq: Tensor, *args, **kwargs):
        if self.path == "count":
            return self.count(x_seq)
        self._check_input(x_seq, 1, "[T, N, *] or [T] (step_mode='m')")
        if x_seq.shape[0] == 0:
            raise ValueError(
                "x must have at least one time step (T >= 1) along its first axis, "
                f"got shape {tuple(x_seq.shape)}"
            )
        self._check_parameters()
        return super().multi_step_forward(x_seq, *args, **kwargs)

    def _count(self, x: Tensor, T: int) -> Tensor:  # pragma: no cover - every subclass overrides it
        """The count path of the concrete neuron (abstract: subclasses define their closed form)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _count(x, T), its count path")

    def count(self, x: Tensor, T: int | None = None) -> Tensor:
        """Total output under the constant input ``x`` over ``T`` steps, without stepping.

        Args:
            x: constant input, shape ``[N, *]``, floating dtype.
            T: number of steps; defaults to the node's ``T``.

        Returns:
            Tensor with the shape and dtype of ``x``, equal to the spike path's
            ``node(x.expand(T, *x.shape)).sum(0)`` from a reset state.
        """
        T = self.T if T is None else T
        if T is None:
            raise ValueError("T must be given (argument T or the node's T attribute)")
        _checks.check_timesteps("T", T)
        self._check_input(x, 0, "[N, *]")
        self._check_parameters()
        return self._count(x, T)
