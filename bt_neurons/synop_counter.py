r"""SpikingJelly's synaptic-operation counter, for signed spikes and bt-neurons modules.

SpikingJelly 2.0's ``op_counter.SynOpCounter`` counts the synaptic operations
(SynOps) of spike-driven ``mm`` / ``addmm`` / ``bmm`` / ``baddbmm`` /
``convolution`` calls, but it recognises a spike tensor only when every value
is 0 or 1 (or the dtype is bool). bt-neurons' spikes are signed,
$S \in \{-1, 0, +1\}$, so the stock counter reports 0 for every layer they
feed. `SignedSynOpCounter` is that counter with two changes:

1. **Signed spikes at the operator level.** A tensor whose values all lie in
   $\{-1, 0, +1\}$ is a spike tensor; each nonzero entry is one spike. SpikingJelly's
   own rule is applied to $|S|$, so

   - spikes times weights, $S W$: $\mathrm{nnz}(S)$ times the fan-out (each
     $+1$ adds a weight, each $-1$ subtracts one: one operation either way);
   - spikes times spikes, $S_X S_Y$: the coincident nonzero pairs,
     $\sum |S_X|\,|S_Y|$ (for binary spikes SpikingJelly's $\sum S_X S_Y$);
   - convolutions: the weight uses of the nonzero inputs, as SpikingJelly
     counts them for binary inputs.

   Binary spikes are counted exactly as the stock counter counts them.
2. **bt-neurons modules as a whole.** `bt_neurons.Synapsis`,
   `bt_neurons.SNNMatmul`, `bt_neurons.SNNMultiply`, ... have no spike tensor on
   their count path (their matrix products take integer spike counts times a
   scale). Module rules (SpikingJelly's ``ModuleCounter`` convention, keys
   ``("forward", module_type)``) count each call of such a module with the
   additions that `bt_neurons.accounting.track_spikes` reports for it, on
   either path; the ``aten`` operators inside it are not counted a second time
   (they count 0). For a `Synapsis`: presynaptic spikes times
   ``out_features``, plus one addition per output for the bias (as
   `track_spikes` counts it).

The operator rules need SpikingJelly's ``DispatchCounterMode`` and the module
rules its ``ModuleCounterMode``: enter both with the same counter, as
SpikingJelly's ``SimpleEnergyProfiler`` composes its counters, or call
`count_synops`::

    counter = SignedSynOpCounter()
    with DispatchCounterMode([counter]), ModuleCounterMode([counter], model=net):
        net(x)
    counter.get_total()  # SynOps; x bt_neurons.accounting.ADD_PJ for pJ

A bt-neurons module that runs without its module event (only
``DispatchCounterMode`` entered, or a module outside ``model``) is not
counted, and `SignedSynOpCounter.get_total` / ``get_counts`` warn about it.

What the counter cannot see: spikes that are not $\pm 1$ (a `CustomNeuronNode`
with amplitudes other than 1), the spike counts that a count-path node
(``EIIFNode(path="count")``) hands to an ordinary layer, and any tensor in
$\{-1, 0, +1\}$ that is not a spike tensor (ternary weights, a ternary input
image) is taken for one, as SpikingJelly takes every $\{0, 1\}$ tensor.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    ModuleCounter,
    ModuleCounterMode,
    SynOpCounter,
    is_binary_tensor,
)
from spikingjelly.activation_based.op_counter.base import BaseCounter, call_model
from torch import Tensor, nn

from .eiif_encoder import EIIFEncoder
from .snn_matmul import SNNMatmul
from .snn_multiply import SNNMultiply
from .snn_rmsnorm import SNNRMSNorm
from .snn_softmax import SNNSoftmax
from .synapsis import QSynapsis, Synapsis

__all__ = ["SignedSynOpCounter", "count_synops", "is_signed_spike_tensor", "signed_spike_rules"]

aten = torch.ops.aten

#: Operator rule: ``(args, kwargs, out) -> count`` (SpikingJelly's ``BaseCounter`` rules).
OpRule = Callable[[tuple, dict, Any], int]
#: Module rule: ``(module, args, kwargs, out) -> count`` (SpikingJelly's ``ModuleCounter`` rules).
ModuleRule = Callable[[nn.Module, tuple, dict, Any], int]

# positions of the two factors in the arguments of the operators SynOpCounter knows
_FACTORS: dict[Any, tuple[int, int]] = {
    aten.mm.default: (0, 1),
    aten.bmm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.baddbmm.default: (1, 2),
    aten.convolution.default: (0, 1),
}
# SpikingJelly's rules for these read a spike x spike count from the output itself
_PRODUCT_FROM_OUTPUT = (aten.mm.default, aten.bmm.default)


@contextmanager
def _unobserved() -> Iterator[None]:
    """No autograd, and no ``__torch_dispatch__`` mode sees the operators run inside.

    The rules compute with tensors while a ``DispatchCounterMode`` is active;
    SpikingJelly's own rules exclude the Python dispatch key the same way.
    """
    with (
        torch.no_grad(),
        torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.Python)),
    ):
        yield


def is_signed_spike_tensor(x: object) -> bool:
    """Whether ``x`` is a spike tensor: every value in {-1, 0, +1}, or a bool tensor.

    The signed counterpart of SpikingJelly's ``op_counter.is_binary_tensor``
    (every binary tensor is a signed spike tensor too; an empty tensor is one).

    Args:
        x: any object; only a ``torch.Tensor`` can be a spike tensor.

    Returns:
        True for a bool tensor or a real tensor whose values are all -1, 0 or +1.
    """
    if not isinstance(x, Tensor) or x.is_complex():
        return False
    if x.dtype == torch.bool:
        return True
    with _unobserved():
        magnitude = x.abs()
        return bool((magnitude.eq(0) | magnitude.eq(1)).all())


def _magnitude_if_signed(x: object) -> Tensor | None:
    """``|x|`` if ``x`` is a spike tensor with at least one -1, else None.

    None leaves ``x`` to SpikingJelly's rule as it is (binary spikes, or no spikes).
    """
    if not isinstance(x, Tensor) or x.dtype == torch.bool or x.is_complex() or x.dtype == torch.uint8:
        return None
    with _unobserved():
        magnitude = x.abs()
        if bool((magnitude.eq(0) | magnitude.eq(1)).all()) and bool(x.lt(0).any()):
            return magnitude
    return None


def _signed(op: Any, rule: OpRule) -> OpRule:
    """SpikingJelly's ``rule`` for ``op``, applied to ``|S|`` for every signed spike factor ``S``."""
    i, j = _FACTORS[op]

    def signed_rule(args: tuple, kwargs: dict, out: Any) -> int:
        a, b = _magnitude_if_signed(args[i]), _magnitude_if_signed(args[j])
        if a is None and b is None:
            return rule(args, kwargs, out)  # binary or no spikes: SpikingJelly's count as it is
        args = list(args)
        if a is not None:
            args[i] = a
        if b is not None:
            args[j] = b
        if op in _PRODUCT_FROM_OUTPUT and is_binary_tensor(args[i]) and is_binary_tensor(args[j]):
            with _unobserved():  # spikes x spikes: the coincident nonzero pairs, sum |X| |Y|
                out = op(args[i].double(), args[j].double())
        return rule(tuple(args), kwargs, out)

    signed_rule.__name__ = f"signed_{getattr(rule, '__name__', 'rule')}"
    signed_rule.__doc__ = f"SpikingJelly's {signed_rule.__name__[7:]}, with signed spikes S read as |S|."
    return signed_rule


# ------------------------------------------------------------------ module rules
def _argument(args: tuple, kwargs: dict, index: int, name: str, default: Any = None) -> Any:
    """The forward argument ``name`` (positional ``index``) of a module call."""
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _abs_sum(counts: Tensor) -> int:
    """``sum |counts|`` of integer-valued counts, exactly."""
    return int(counts.abs().sum(dtype=torch.float64).item())


def _synapsis_additions(module: Synapsis, args: tuple, kwargs: dict, out: Any) -> int:
    """Presynaptic spikes times ``out_features``, plus one addition per output for the bias."""
    if module.embedding:
        return 0  # a looked-up vector, no presynaptic spike (as `track_spikes` counts it)
    x = _argument(args, kwargs, 0, "x")
    with _unobserved():
        pre_spikes = _abs_sum(module.pre.quantize(x)[0])
    n_out = module.layer.out_features
    bias = math.prod(x.shape[:-1]) * n_out if module.layer.bias is not None else 0
    return pre_spikes * n_out + bias


def _snn_matmul_additions(module: SNNMatmul, args: tuple, kwargs: dict, out: Any) -> int:
    """A spike of ``x`` adds a row of ``y``'s counts (``n`` additions), one of ``y`` a column (``m``)."""
    x, y = _argument(args, kwargs, 0, "x"), _argument(args, kwargs, 1, "y")
    groups = kwargs.get("groups", 1)
    with _unobserved():
        if groups > 1:
            y = y.repeat_interleave(groups, dim=-3)
        cy, sy, _ = module.quantizer.quantize(y)
        cx = module.quantizer.quantize(x if module.transpose_y else x * sy.transpose(-1, -2))[0]
        m, n = out.shape[-2], out.shape[-1]
        return _abs_sum(cx) * n + _abs_sum(cy) * m


def _snn_multiply_additions(module: SNNMultiply, args: tuple, kwargs: dict, out: Any) -> int:
    """One addition per spike of either operand (it adds the other's running count)."""
    x, y = _argument(args, kwargs, 0, "x"), _argument(args, kwargs, 1, "y")
    with _unobserved():
        if module.x_channel_scale is not None:
            x = x / module.x_channel_scale.to(x.dtype)
            y = y / module.y_channel_scale.to(y.dtype)
        return _abs_sum(module.quantizer.quantize(x)[0]) + _abs_sum(module.quantizer.quantize(y)[0])


def _elementwise_additions(module: SNNRMSNorm | SNNSoftmax, args: tuple, kwargs: dict, out: Any) -> int:
    """One addition per element in spiking mode (as `track_spikes` counts it), none in float mode."""
    return 0 if module.mode == "float" else _argument(args, kwargs, 0, "x").numel()


def _no_additions(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> int:
    """No synaptic addition: spikes only (`EIIFEncoder`) or the ANN twin's MACs (`QSynapsis`)."""
    return 0


def signed_spike_rules() -> dict[Any, OpRule | ModuleRule]:
    """The rules of `SignedSynOpCounter`, in the form SpikingJelly's counters take.

    Returns:
        ``{aten_op: rule(args, kwargs, out)}`` for ``mm``, ``addmm``, ``bmm``,
        ``baddbmm`` and ``convolution`` (SpikingJelly's ``SynOpCounter`` rules,
        with signed spikes read as their magnitudes) and
        ``{("forward", module_type): rule(module, args, kwargs, out)}`` for
        the bt-neurons modules that report to `track_spikes` (`Synapsis`,
        `QSynapsis`, `SNNMatmul`, `SNNMultiply`, `EIIFEncoder`,
        `SNNRMSNorm`, `SNNSoftmax`).
    """
    stock = SynOpCounter().rules
    rules: dict[Any, OpRule | ModuleRule] = {op: _signed(op, stock[op]) for op in _FACTORS if op in stock}
    rules.update(
        {
            ("forward", Synapsis): _synapsis_additions,
            ("forward", QSynapsis): _no_additions,
            ("forward", SNNMatmul): _snn_matmul_additions,
            ("forward", SNNMultiply): _snn_multiply_additions,
            ("forward", EIIFEncoder): _no_additions,
            ("forward", SNNRMSNorm): _elementwise_additions,
            ("forward", SNNSoftmax): _elementwise_additions,
        }
    )
    return rules


def _is_module_event(event: object) -> bool:
    return (
        isinstance(event, tuple)
        and len(event) == 2
        and event[0] in ("forward", "backward")
        and isinstance(event[1], nn.Module)
    )


class SignedSynOpCounter(SynOpCounter, ModuleCounter):
    r"""SpikingJelly's ``SynOpCounter`` for signed spikes and bt-neurons modules; see the module docs.

    One counter for both of SpikingJelly's counting modes: in a
    ``DispatchCounterMode`` it counts spike-driven ``aten`` operators, with
    $S \in \{-1, 0, +1\}$ spikes counted by $|S|$ (binary spikes as the stock
    counter counts them); in a ``ModuleCounterMode`` it counts every call of a
    bt-neurons module with the additions `bt_neurons.accounting.track_spikes`
    reports for it. Operators inside a module that has a module rule count 0,
    so nothing is counted twice. Records are ``records[scope][key]`` with
    ``key`` an ``aten`` operator or ``("forward", module_type)``;
    `get_total` sums the ``"Global"`` scope.

    Args:
        extra_rules: more rules, as SpikingJelly's counters take them:
            ``{aten_op: rule(args, kwargs, out)}`` and / or
            ``{("forward", module_type): rule(module, args, kwargs, out)}``
            (a module rule also makes the module's operators count 0). They
            replace the default rule of the same key.
        extra_ignore_modules: module types whose operators and module events
            are not counted at all (SpikingJelly's ``ignore_modules``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from spikingjelly.activation_based.op_counter import DispatchCounterMode, SynOpCounter
        >>> from bt_neurons.synop_counter import SignedSynOpCounter
        >>> fc = nn.Linear(3, 5, bias=False)
        >>> spikes = torch.tensor([[1.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
        >>> stock, signed = SynOpCounter(), SignedSynOpCounter()
        >>> with torch.no_grad(), DispatchCounterMode([stock, signed]):
        ...     _ = fc(spikes)
        >>> stock.get_total(), signed.get_total()  # 3 spikes x 5 outputs
        (0, 15)
    """

    def __init__(
        self,
        extra_rules: dict[Any, OpRule | ModuleRule] | None = None,
        extra_ignore_modules: list[type[nn.Module]] | None = None,
    ) -> None:
        SynOpCounter.__init__(self, extra_ignore_modules=extra_ignore_modules)
        self.rules.update(signed_spike_rules())
        self.rules.update(extra_rules or {})
        self._inside: dict[int, str] = {}  # bt modules whose operators were skipped: id -> type name
        self._events: set[int] = set()  # bt modules counted by a module event

    def _module_types(self) -> tuple[type[nn.Module], ...]:
        return tuple(key[1] for key in self.rules if isinstance(key, tuple) and key[0] == "forward")

    def has_rule(self, func: Any) -> bool:
        """Whether ``func`` (an ``aten`` operator or a ``(phase, module)`` event) has a rule."""
        if _is_module_event(func):
            return ModuleCounter.has_rule(self, func)
        return BaseCounter.has_rule(self, func)

    def count(
        self,
        func: Any,
        args: tuple,
        kwargs: dict,
        out: Any,
        active_modules: set[nn.Module] | None = None,
        parent_names: set[str] | None = None,
    ) -> int:
        """The count of one operator call or module event.

        An operator that runs inside a module with a module rule counts 0
        (the module event counts the module as a whole).
        """
        if _is_module_event(func):
            self._events.add(id(func[1]))
            return ModuleCounter.count(self, func, args, kwargs, out)
        types = self._module_types()
        owners = [m for m in active_modules or () if isinstance(m, types)]
        if owners:
            for m in owners:
                self._inside.setdefault(id(m), type(m).__name__)
            return 0
        return BaseCounter.count(self, func, args, kwargs, out)

    def record(self, scope: str, func: Any, value: int) -> None:
        """Add ``value`` to ``records[scope][key]`` (module events under ``("forward", module_type)``)."""
        if _is_module_event(func):
            ModuleCounter.record(self, scope, func, value)
        else:
            BaseCounter.record(self, scope, func, value)

    def uncounted_modules(self) -> list[str]:
        """Type names of the bt-neurons modules whose operators ran but which no module event counted."""
        return sorted({name for key, name in self._inside.items() if key not in self._events})

    def _warn_uncounted(self) -> None:
        missing = self.uncounted_modules()
        if missing:
            warnings.warn(
                f"SignedSynOpCounter: {', '.join(missing)} ran without a module event, so their "
                "synaptic operations are not counted: enter ModuleCounterMode([counter], model=net) "
                "together with DispatchCounterMode([counter]), or use count_synops(net, inputs)",
                RuntimeWarning,
                stacklevel=3,
            )

    def get_counts(self) -> dict[str, dict[Any, int]]:
        """All records, ``{scope: {key: count}}``; warns about uncounted bt-neurons modules."""
        self._warn_uncounted()
        return super().get_counts()

    def get_total(self) -> int:
        """The synaptic operations of the ``"Global"`` scope; warns about uncounted bt-neurons modules."""
        self._warn_uncounted()
        return super().get_total()

    def reset(self) -> None:
        """Forget every record (to count another run)."""
        super().reset()
        self._inside.clear()
        self._events.clear()


def count_synops(
    model: nn.Module, inputs: Any, *, counter: SignedSynOpCounter | None = None
) -> SignedSynOpCounter:
    """Count the synaptic operations of one forward pass of ``model`` (under ``torch.no_grad``).

    Enters SpikingJelly's ``ModuleCounterMode`` and ``DispatchCounterMode``
    with one `SignedSynOpCounter`, as SpikingJelly's ``estimate_*`` helpers
    do with theirs. Stateful nodes keep their state afterwards: call
    ``functional.reset_net(model)`` as after any run.

    Args:
        model: the network.
        inputs: its input: one tensor, a tuple / list of positional arguments
            or a dict of keyword arguments (SpikingJelly's ``call_model``).
        counter: the counter to add to (default: a new one).

    Returns:
        The counter; ``counter.get_total()`` is the number of synaptic
        operations, ``counter.get_counts()`` the same per module scope.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if counter is None:
        counter = SignedSynOpCounter()
    elif not isinstance(counter, SignedSynOpCounter):
        raise TypeError(f"counter must be a SignedSynOpCounter or None, got {type(counter).__name__}")
    with ModuleCounterMode([counter], model=model), DispatchCounterMode([counter]), torch.no_grad():
        call_model(model, inputs)
    return counter
