"""What the snnTorch faces of bt-neurons share: a real ``snntorch.Leaky`` around a bt node."""

from __future__ import annotations

import snntorch as snn
import torch
from torch import Tensor, nn

from .. import _checks

__all__ = ["SnnTorchShell"]

#: snnTorch's reset mechanisms, by the name its users pass
RESET_MECHANISMS = ("subtract", "zero", "none")


class SnnTorchShell(snn.Leaky):
    """A bt-neurons neuron with snnTorch's classes, conventions and state.

    It *is* an ``snntorch.Leaky`` (hence an ``snntorch.SpikingNeuron``), so
    snnTorch's own tooling treats it as one of its neurons:
    ``snntorch.utils.reset(net)`` restarts it, ``snntorch.backprop.BPTT`` /
    ``TBPTT`` train it, ``detach_hidden`` cuts its graph. ``node`` is the
    bt-neurons SpikingJelly node that owns the parameters; this module keeps
    the membrane ``mem`` (a buffer, as in ``snn.Leaky``) and the step count
    since the state was started, which drives the thresholds.

    * ``init_hidden=False``: ``spk, mem = neuron(x, mem)``; start every
      sequence with ``mem = neuron.reset_mem()`` (or ``init_leaky()`` or the
      neuron's own ``init_*``), which returns an empty ``mem`` and restarts
      the step count.
    * ``init_hidden=True``: ``spk = neuron(x)``, state kept inside; reset it
      with ``snntorch.utils.reset(net)``, `reset_hidden` or
      ``bt_neurons.snntorch.reset(net)``.
    * ``output=True``: return ``(spk, mem)`` even with ``init_hidden=True``.

    The step count restarts whenever the state is started anew: by the
    methods above, by an empty ``mem``, by an input of another shape, and
    when ``mem`` was replaced from outside since the last step (that is what
    ``snntorch.utils.reset`` and ``snn.Leaky.reset_hidden()`` do).
    """

    #: the name of the method that starts a new explicit state (``init_eiif``, ...), for messages
    init_method = "init_mem"

    def __init__(
        self,
        node: nn.Module,
        *,
        spike_grad,
        surrogate_disable: bool,
        init_hidden: bool,
        inhibition: bool,
        reset_mechanism: str,
        output: bool,
        graded_spikes_factor: float | Tensor,
        learn_graded_spikes_factor: bool,
    ) -> None:
        for name, flag in (
            ("surrogate_disable", surrogate_disable),
            ("init_hidden", init_hidden),
            ("inhibition", inhibition),
            ("output", output),
            ("learn_graded_spikes_factor", learn_graded_spikes_factor),
        ):
            _checks.check_bool(name, flag)
        _checks.check_choice("reset_mechanism", reset_mechanism, RESET_MECHANISMS)
        factor = _graded_factor(graded_spikes_factor)
        super().__init__(
            beta=0.0,  # not registered: `beta` is a property of the node's parameters
            threshold=1.0,  # idem: `threshold`
            spike_grad=spike_grad,
            surrogate_disable=bool(surrogate_disable),
            init_hidden=bool(init_hidden),
            inhibition=bool(inhibition),
            reset_mechanism=reset_mechanism,
            output=bool(output),
            graded_spikes_factor=factor,
            learn_graded_spikes_factor=bool(learn_graded_spikes_factor),
            reset_delay=False,  # bt neurons reset in the step that fired, as the paper and SpikingJelly
        )
        self.node = node
        self._steps_taken = 0
        self._written: Tensor | None = (
            self.mem
        )  # the mem this neuron wrote last: anything else is a new state

    @property
    def step(self) -> int:
        """Steps since the state was started (0 once ``mem`` was replaced, e.g. by ``utils.reset``)."""
        return self._steps_taken if self.mem is self._written else 0

    @step.setter
    def step(self, value: int) -> None:
        self._steps_taken = int(value)
        self._written = self.mem

    # snnTorch registers `threshold` and `beta` as buffers of its own; here they are the node's
    def _threshold_buffer(self, threshold, learn_threshold) -> None:
        pass

    def _beta_buffer(self, beta, learn_beta) -> None:
        pass

    @property
    def reset_mechanism(self) -> str:
        """``"subtract"``, ``"zero"`` or ``"none"`` (snnTorch's names); settable, as in snnTorch."""
        return self._reset_mechanism

    @reset_mechanism.setter
    def reset_mechanism(self, value: str) -> None:
        _checks.check_choice("reset_mechanism", value, RESET_MECHANISMS)
        snn.SpikingNeuron.reset_mechanism.fset(self, value)
        if "node" in self._modules:
            self._apply_reset_mechanism(value)

    def _apply_reset_mechanism(self, value: str) -> None:  # pragma: no cover - every face overrides it
        raise NotImplementedError

    # ------------------------------------------------------------------ state
    def reset_mem(self) -> Tensor:
        """Start a new sequence: an empty ``mem`` (materialised at the next call) and step 0."""
        self.mem = torch.zeros(0, device=self.mem.device)
        self.step = 0
        return self.mem

    def init_leaky(self) -> Tensor:
        """snnTorch's name for `reset_mem`."""
        return self.reset_mem()

    def init_mem(self) -> Tensor:
        """Another name for `reset_mem`."""
        return self.reset_mem()

    def reset_hidden(self) -> None:
        """Reset this neuron's hidden state (``snn.Leaky.reset_hidden()`` resets every Leaky at once)."""
        self.reset_mem()

    def detach_hidden(self) -> None:
        """Detach the hidden state from the graph (truncated BPTT), keeping its value."""
        step = self.step
        self.mem = self.mem.detach()
        self.step = step

    def _restart_hint(self) -> str:
        if self.init_hidden:
            return "neuron.reset_hidden(), or snntorch.utils.reset(net) for a whole network"
        return f"mem = neuron.{self.init_method}(), then pass that mem"

    # ---------------------------------------------------------------- forward
    def _step(self, x: Tensor, mem: Tensor, step: int) -> tuple[Tensor, Tensor]:  # pragma: no cover
        """One step of the neuron: ``(spk, mem_next)`` (each face implements it)."""
        raise NotImplementedError

    def _charge(self, x: Tensor, mem: Tensor) -> Tensor:  # pragma: no cover - every face overrides it
        """The charge ``H_t`` the neuron compares with its thresholds (for ``inhibition``)."""
        raise NotImplementedError

    def forward(self, input_: Tensor, mem: Tensor | None = None):
        if self.init_hidden and mem is not None:
            raise TypeError("`mem` should not be passed as an argument while `init_hidden=True`")
        _checks.check_floating("input_", input_)  # [N, *] or [] (one neuron), as snnTorch's neurons
        eager = not _checks.tracing()
        if eager:
            if self.node.check_finite:
                _checks.check_finite("input_", input_)
            self.node._check_parameters()
        step = self.step  # 0 when mem was replaced from outside (snntorch.utils.reset): a new state
        if mem is not None:
            _checks.check_floating("mem", mem)
            if mem.shape != input_.shape and mem.numel() > 0:  # an empty mem starts a new sequence
                raise ValueError(
                    f"mem must have the shape of input_ {tuple(input_.shape)}, got {tuple(mem.shape)}; "
                    f"start a new sequence with an empty mem ({self._restart_hint()})"
                )
            _checks.check_same_device("mem", mem, "input_", input_)
            if eager and self.node.check_finite:
                _checks.check_finite("mem", mem)
            self.mem = mem
        cdt = _checks.compute_dtype(input_.dtype)
        if self.mem.shape != input_.shape:  # an empty mem, or the hidden state of an earlier shape
            self.mem = torch.zeros(input_.shape, dtype=cdt, device=input_.device)
            step = 0
        limit = self.node.step_limit
        if limit is not None and step >= limit:
            raise ValueError(
                f"this neuron has per-step parameters for T={limit} steps, but step {step} was "
                f"requested; start a new sequence first: {self._restart_hint()}"
            )
        mem_prev = self.mem.to(cdt)
        spk, mem_next = self._step(input_, mem_prev, step)
        if self.inhibition:
            spk = _winner_only(spk, self._charge(input_.to(cdt), mem_prev))
        spk = spk.to(input_.dtype) * self.graded_spikes_factor
        self.mem = mem_next
        self.step = step + 1  # also marks mem_next as this neuron's own
        if self.output or not self.init_hidden:
            return spk, self.mem
        return spk


def _graded_factor(value: float | Tensor) -> Tensor:
    """snnTorch's ``graded_spikes_factor`` as a float32 tensor (a number or a real tensor)."""
    if isinstance(value, Tensor):
        _checks.check_floating("graded_spikes_factor", value)
        _checks.check_finite("graded_spikes_factor", value)
        return value.detach().clone().float()
    return torch.tensor(_checks.check_number("graded_spikes_factor", value), dtype=torch.float32)


def _winner_only(spk: Tensor, charge: Tensor) -> Tensor:
    """Lateral inhibition as snnTorch's ``inhibition=True``.

    Per sample, only the neuron of axis 1 with the largest charge ``|H_t|``
    (every neuron of a layer has the same threshold) may fire; the others'
    spikes are suppressed (their membranes are reset as if they had fired, as
    in snnTorch, where the reset follows the threshold crossing).
    """
    if spk.dim() < 2:
        raise ValueError(f"inhibition=True needs inputs [N, neurons, *], got shape {tuple(spk.shape)}")
    winner = charge.abs().argmax(dim=1, keepdim=True)
    keep = torch.zeros_like(spk).scatter_(1, winner, 1.0)
    return spk * keep
