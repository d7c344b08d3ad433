"""What the SpikingJelly faces of every bt-neurons neuron share."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import neuron
from torch import Tensor

from . import _checks
from .functional.staircase import Staircase

__all__ = ["TwoPathNode"]


class TwoPathNode(neuron.BaseNode):
    """A ``BaseNode`` with a spike path and a count path.

    Subclasses implement ``step(x, v, t)`` (one spike-path step, which
    ``single_step_functional_forward`` calls) and ``multi_step_functional_forward``
    (the spike path over a sequence), ``_count(x, T)`` (the
    count path) and ``_check_parameters()``; they call `_register_step_memory`
    (the memory ``t``: steps since reset, a 0-d int64 tensor) and set ``T``,
    ``path`` and ``check_finite``. This base validates inputs, keeps the
    membrane in the compute dtype and routes ``forward`` to the chosen path.
    Value checks (finiteness, parameter ranges) run in eager mode only; under
    ``torch.compile`` / ``torch.export`` the graph has no data-dependent branch.
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

    def _register_step_memory(self) -> None:
        """Register ``t``, the steps since the last reset, as a 0-d int64 tensor memory.

        A tensor (not a Python int) so that ``functional.reset_net`` restores
        it with ``v``, ``extract_memories`` / ``load_memories`` carry it, and a
        compiled graph reads it as data instead of recompiling at every step.
        """
        self.register_memory("t", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _forget_derived(module: TwoPathNode, incompatible_keys) -> None:
        """After ``load_state_dict``: drop what was derived from the old parameters."""
        module._staircase_cache = None
        module._closed_form()

    def _closed_form(self) -> bool:
        """Whether the count path has a closed form (subclasses that have one override this)."""
        return False

    def materialize_states(self, inputs, states, step_mode):
        x = inputs[0][0] if step_mode == "m" else inputs[0]
        v, t = states[0], states[1]
        dtype = _checks.compute_dtype(x.dtype)
        if not isinstance(v, Tensor) or v.shape != x.shape:
            # a reset state, or neurons of another shape (e.g. a new batch size without reset_net):
            # a new sequence, as SpikingJelly's own nodes treat it; the step counter restarts with v
            v = torch.zeros(x.shape, dtype=dtype, device=x.device)
            t = torch.zeros((), dtype=torch.long, device=x.device)
        else:
            v = v.to(dtype)
            t = torch.as_tensor(t, dtype=torch.long, device=x.device)
        return (v, t, *states[2:])

    def single_step_functional_forward(self, inputs, states, **kwargs):
        """One spike-path step through the subclass's ``step(x, v, t)``; the step counter advances by one."""
        x = inputs[0]
        v, t = states[0], states[1]
        out, v = self.step(x, v, t)
        return (out.to(x.dtype),), (v, t + 1, *states[2:])

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

    def _staircase_key(self) -> tuple:  # pragma: no cover - overridden by nodes with a staircase
        """What the staircase depends on besides ``(T, dtype)``: the parameters' values and versions."""
        raise NotImplementedError

    def _build_staircase(self, T: int, dtype: torch.dtype) -> Staircase:  # pragma: no cover - overridden
        """Find the staircase of this neuron under constant inputs over ``T`` steps."""
        raise NotImplementedError

    @torch.compiler.assume_constant_result
    def _staircase_tensors_while_compiling(self, T: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """`_build_staircase`, run by ``torch.compile`` at trace time and kept in the graph as constants."""
        st = self._build_staircase(T, dtype)
        return st.breaks, st.patterns

    def staircase(self, T: int, dtype: torch.dtype = torch.float32) -> Staircase:
        """The exact staircase of this neuron under constant inputs over ``T`` steps (cached).

        Rebuilt in eager mode when a parameter changes. While ``torch.compile``
        / ``torch.export`` traces the count path, the parameters are not read:
        the staircase of the last eager call is a constant of the graph (a
        compiled count path treats the neuron's parameters as fixed: compile
        again after changing them). With none yet for ``(T, dtype)``,
        ``torch.compile`` builds it while tracing; ``torch.export`` needs one
        eager call first.
        """
        cache = self._staircase_cache
        if _checks.tracing():
            if cache is not None and cache[0][:2] == (T, dtype):
                return cache[1]
            if torch.compiler.is_dynamo_compiling():
                return Staircase(*self._staircase_tensors_while_compiling(T, dtype))
            raise RuntimeError(
                f"{type(self).__name__}'s count path for T={T} and {dtype} has no staircase yet, and "
                f"torch.export cannot build one while tracing: run the module once in eager mode "
                f"(or call .staircase({T}, {dtype})) before exporting"
            )
        key = (T, dtype, *self._staircase_key())
        if cache is None or cache[0] != key:
            self._staircase_cache = (key, self._build_staircase(T, dtype))
        return self._staircase_cache[1]

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
