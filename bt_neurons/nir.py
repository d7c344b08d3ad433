r"""NIR export and import for networks of bt-neurons.

[NIR](https://neuroir.org) (the Neuromorphic Intermediate Representation) is
a graph of continuous-time nodes (``Affine``, ``Linear``, ``LIF``,
``CubaLIF``, ``Threshold``, ...) that each simulator discretises with its own
time step ``dt``. bt-neurons writes every neuron that has an exact NIR
equivalent, refuses the others with a ``ValueError`` naming the parameter
that has none, and reads its own graphs back into SpikingJelly nodes.

**The discretisation.** snnTorch's ``import_from_nir`` and SpikingJelly's
``import_from_nir`` both step a ``CubaLIF`` node with forward Euler at
``dt`` (``1e-4`` s by default in both):

$$
    I_t = \Big(1 - \frac{dt}{\tau_{syn}}\Big) I_{t-1} + \frac{dt}{\tau_{syn}} w_{in} S_t, \qquad
    v_t = \Big(1 - \frac{dt}{\tau_{mem}}\Big) v_{t-1} + \frac{dt}{\tau_{mem}} R\, I_t, \qquad
    z_t = [v_t > v_{thr}],
$$
after which ``v`` is set to ``v_reset`` where ``z_t = 1``; the synaptic
current ``I`` is never reset. With $\tau_{mem} = dt$ and $R = 1$ the
membrane forgets everything each step ($v_t = I_t$), and with
$\tau_{syn} = dt / (1 - \kappa)$, $w_{in} = \tau_{syn} / dt$ the current is a
leaky sum $I_t = \kappa I_{t-1} + S_t$ that no spike resets. One bt neuron
with a membrane kept at the rate $\kappa$ and no reset is therefore exactly
two such ``CubaLIF`` units:

$$
    H_t = \kappa H_{t-1} + X_t, \qquad
    S_t = [H_t \ge \theta] - [H_t \le -\theta]
    = [H_t \ge \theta] - [(-H_t) \ge \theta],
$$
a positive unit driven by ``x`` and a negative unit driven by ``-x`` (whose
current is exactly ``-H``, negation being exact in floating point). The
neuron becomes three NIR nodes: a ``Linear`` split with weight
$\begin{pmatrix} I \\ -I \end{pmatrix}$, a ``CubaLIF`` of ``2n`` units, and a
``Linear`` merge with weight $(A^+ I,\ -A^- I)$ (the spike amplitudes; 1 for
EI_IF, times snnTorch's ``graded_spikes_factor``). $\tau_{syn}$ is chosen so
that both simulators compute the very float32 ``kappa`` bt-neurons uses.

Sharing one membrane between the two signs is the same as two separate
membranes only while no spike changes the membrane: with a reset, a negative
spike moves the shared membrane up by $\theta$ and changes what the
positive side sees next. So the pair is exact for a membrane that is emptied
every step (EI_IF ``r = 1``, CustomNeuron ``decay = 0``: the reset does not
matter) and for one that is never reset (EI_IF ``soft_reset=False``,
CustomNeuron ``reset=False``), and for no other case; NIR's own neurons
reset to ``v_reset`` (a hard reset) and none subtracts the threshold.
A membrane that neither leaks nor resets ($\kappa = 1$) would need
$\tau_{syn} = \infty$; it is written as NIR's integrator ``I`` ($\dot v = R I$,
$R = 1/dt$) followed by a ``Threshold``, which snnTorch and SpikingJelly do
not import (nirtorch runs it with a node map, see the tutorial).

**Firing convention.** bt-neurons and SpikingJelly fire on ``>=``, NIR's
equations and snnTorch on ``>``: the spikes agree everywhere except where a
membrane equals a threshold exactly.

**The count reading.** A neuron on its count path (``path="count"``), or any
neuron exported with ``reading="count"``, is the staircase $C(x)$ of its
spike count over ``T`` steps under a constant input ``x``: for ``x > 0``,
$C(x) = \sum_k \Delta^+_k [x \ge b_k]$ (and the mirror image with
$\Delta^-_k$ for ``x < 0``), with the breakpoints $b_k$ and jumps
$\Delta_k$ of `constant_input_staircase`. Each breakpoint becomes one level
of memoryless units (``CubaLIF`` with $\tau_{syn} = \tau_{mem} = dt$, one
threshold per node as snnTorch's importer requires), merged with weights
$\Delta_k$ into a final identity ``Linear`` that sums the levels. This keeps
the counts (exactly for EI_IF, up to the float rounding of summed amplitudes
for CustomNeuron), not their timing: each simulator step maps an input to the
count it would produce over ``T`` steps. For EI_IF with ``r = 1`` the levels
are the distinct thresholds $\theta_0 + \alpha t$, ``t < T``.

Every node of a neuron block carries ``metadata["bt_neurons"]``, a JSON
description of the bt neuron (class, parameters, reading), which `import_`
uses to rebuild the very node; without it (or if the graph no longer matches
it), a one-level block is rebuilt from its structure alone.
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from spikingjelly.activation_based import layer
from torch import nn

from . import _checks
from .custom_neuron_node import CustomNeuronNode
from .eiif_node import EIIFNode

if TYPE_CHECKING:  # pragma: no cover
    import nir

__all__ = ["DEFAULT_DT", "export", "import_"]

#: The time step (seconds) that snnTorch's and SpikingJelly's NIR importers assume.
DEFAULT_DT = 1e-4

_META_KEY = "bt_neurons"
_FORMAT = 1
_F32 = np.float32


def _nir():
    """The ``nir`` package, imported on first use."""
    try:
        import nir
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError("bt_neurons.nir needs the 'nir' package: pip install 'bt-neurons[nir]'") from e
    return nir


def _fmt(value: float) -> str:
    """A float32 number as its shortest decimal (``0.1``, not ``0.10000000149011612``)."""
    return str(np.float32(value))


def _f32(value: float | torch.Tensor) -> float:
    """A scalar as the float32 number bt-neurons computes with (returned as a Python float)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().to(torch.float32).cpu().reshape(()).item())
    return float(np.float32(value))


# ----------------------------------------------------------------------------------------------
# One neuron layer as levels of threshold units


@dataclass(frozen=True)
class _Level:
    """One pair of one-sided units: ``pos * [H >= threshold] - neg * [-H >= threshold]``.

    ``keep`` is the fraction of the membrane ``H`` kept from one step to the next
    (0: memoryless, 1: a pure integrator); the membrane is never reset.
    """

    threshold: float
    keep: float
    pos: float
    neg: float


@dataclass(frozen=True)
class _Neuron:
    """A bt neuron layer as NIR sees it: its levels and the description `import_` rebuilds it from."""

    levels: tuple[_Level, ...]
    reading: str
    description: dict[str, Any]


def _learnable_names(node: nn.Module, names: Iterable[str]) -> list[str]:
    return [n for n in names if isinstance(getattr(node, n), nn.Parameter) and getattr(node, n).requires_grad]


def _describe_eiif(node: EIIFNode, reading: str, T: int | None) -> dict[str, Any]:
    return {
        "class": "EIIFNode",
        "theta_0": _f32(node.theta_0),
        "alpha": _f32(node.alpha),
        "r": _f32(node.r),
        "soft_reset": bool(node.soft_reset),
        "learnable": _learnable_names(node, ("theta_0", "alpha", "r")),
        "detach_reset": bool(node.detach_reset),
        "check_finite": bool(node.check_finite),
        "path": "count" if reading == "count" else "spike",
        "T": T if reading == "count" else node.T,
    }


def _tensor_value(p: torch.Tensor, T: int | None) -> float | list[float]:
    p = p.detach().to(torch.float32).cpu()
    if p.dim() == 0:
        return float(p.item())
    return [float(v) for v in (p[:T] if T is not None else p).tolist()]


def _describe_custom(node: CustomNeuronNode, reading: str, T: int | None) -> dict[str, Any]:
    steps = T if reading == "count" else node.T
    return {
        "class": "CustomNeuronNode",
        "theta_base": _f32(node.theta_base),
        "alpha": _f32(node.alpha),
        "decay": _f32(node.decay),
        "amp_pos": _tensor_value(node.amp_pos, steps),
        "amp_neg": _tensor_value(node.amp_neg, steps),
        "offsets": _tensor_value(node.offsets, steps) if node.offsets is not None else None,
        "reset": bool(node.reset_after_spike),
        "per_step": bool(node.per_step),
        "learnable": bool(node.theta_base.requires_grad),
        "detach_reset": bool(node.detach_reset),
        "check_finite": bool(node.check_finite),
        "path": "count" if reading == "count" else "spike",
        "T": steps,
    }


def _no_equivalent(name: str, value: object, why: str, count_hint: bool = True) -> ValueError:
    text = f"{name}={value} has no NIR equivalent: {why}"
    if count_hint:
        text += (
            "; export its count reading instead (reading='count', T=...), which keeps the spike counts "
            "under constant inputs but not their timing"
        )
    return ValueError(text)


def _spike_levels_eiif(node: EIIFNode, scale: float) -> tuple[_Level, ...]:
    alpha, r = _f32(node.alpha), _f32(node.r)
    if alpha != 0.0:
        raise _no_equivalent(
            "alpha", _fmt(alpha), "NIR thresholds do not change with the step (theta_t = theta_0 + alpha * t)"
        )
    keep = _f32(1 - node.r.detach().to(torch.float32))  # the float32 (1 - r) the spike path multiplies by
    if keep != 0.0 and node.soft_reset:
        raise _no_equivalent(
            "soft_reset",
            True,
            f"with r={_fmt(r)} the membrane keeps what the reset subtracted, and NIR neurons only reset to "
            "v_reset (a hard reset), none subtracts the threshold (with r=1 the reset does not matter and "
            "the neuron exports)",
        )
    theta = _f32(node.theta_0)
    if not theta > 0:  # a learnable threshold may have been trained below 0
        raise ValueError(f"theta_0 must be > 0 to export, got {_fmt(theta)}")
    return (_Level(theta, keep, _f32(scale), _f32(scale)),)


def _spike_levels_custom(node: CustomNeuronNode, scale: float) -> tuple[_Level, ...]:
    if node.per_step:
        raise _no_equivalent(
            "per_step", True, "NIR parameters (thresholds, amplitudes) do not change with the step"
        )
    alpha, decay = _f32(node.alpha), _f32(node.decay)
    if alpha != 0.0:
        raise _no_equivalent(
            "alpha",
            _fmt(alpha),
            "NIR thresholds do not change with the step (theta_t = theta_base + alpha * t)",
        )
    if decay != 0.0 and node.reset_after_spike:
        raise _no_equivalent(
            "reset",
            True,
            f"with decay={_fmt(decay)} the membrane keeps what the reset subtracted, and NIR neurons only "
            "reset to v_reset (a hard reset), none subtracts the threshold (decay=0 or reset=False exports)",
        )
    if decay > 1.0:
        raise _no_equivalent(
            "decay", _fmt(decay), "a membrane that grows (decay > 1) needs a negative NIR time constant"
        )
    theta = _f32(node.theta_base)
    if not theta > 0:
        raise ValueError(f"theta_base must be > 0 to export, got {_fmt(theta)}")
    g = torch.tensor(scale, dtype=torch.float32)
    pos = _f32(node.amp_pos.detach().to(torch.float32).cpu() * g)
    neg = _f32(node.amp_neg.detach().to(torch.float32).cpu() * g)
    return (_Level(theta, decay, pos, neg),)


def _count_levels(node: EIIFNode | CustomNeuronNode, T: int, scale: float) -> tuple[_Level, ...]:
    """The breakpoints and jumps of the node's exact count staircase over ``T`` steps."""
    if isinstance(node, CustomNeuronNode) and node.per_step and T > node.T:
        raise ValueError(f"T must be <= {node.T} (the per-step parameters' length) for this neuron, got {T}")
    with torch.no_grad():
        st = node.staircase(T, torch.float32)
        pats = st.patterns[0].to(torch.float32).cpu()
        if isinstance(node, EIIFNode):
            v_pos = v_neg = pats.sum(-1)
        else:
            a_pos, a_neg = node.amplitudes(T, dtype=torch.float32)
            v_pos, v_neg = pats @ a_pos.detach().cpu(), pats @ a_neg.detach().cpu()
        g = float(np.float32(scale))
        breaks = st.breaks[0].cpu().tolist()
        d_pos = np.diff(v_pos.double().numpy()) * g
        d_neg = np.diff(v_neg.double().numpy()) * g
    levels = [
        _Level(_f32(b), 0.0, _f32(dp), _f32(dn))
        for b, dp, dn in zip(breaks, d_pos, d_neg, strict=True)
        if math.isfinite(b) and (_f32(dp) != 0.0 or _f32(dn) != 0.0)
    ]
    if not levels:  # a neuron whose output is 0 for every input: one silent level
        levels = [_Level(_f32(breaks[0]), 0.0, 0.0, 0.0)]
    return tuple(levels)


def _bt_parts(module: nn.Module) -> tuple[EIIFNode | CustomNeuronNode, float] | None:
    """``(SpikingJelly node, output scale)`` of a bt neuron module (either face), else None."""
    if isinstance(module, EIIFNode | CustomNeuronNode):
        return module, 1.0
    try:
        from .snntorch import EIIF, CustomNeuron
    except ImportError:  # pragma: no cover - snntorch is a dependency
        return None
    if not isinstance(module, EIIF | CustomNeuron):
        return None
    node = module.node
    factor = getattr(module, "graded_spikes_factor", None)
    if factor is None:
        return node, 1.0
    f = torch.as_tensor(factor).detach()
    if f.numel() != 1:
        raise ValueError(
            f"graded_spikes_factor must be one number to export, got a tensor of shape {tuple(f.shape)}"
        )
    return node, _f32(f.reshape(()))


def _neuron(module: nn.Module, reading: str, T: int | None) -> _Neuron | None:
    """The NIR form of a bt neuron module; None for anything else."""
    parts = _bt_parts(module)
    if parts is None:
        return None
    node, scale = parts
    if reading == "path":  # the node as it runs: a count-path node over its own T
        reading, T = ("count", node.T) if node.path == "count" else ("spike", None)
    if reading == "count":
        T = node.T if T is None else T
        if T is None:
            raise ValueError(
                f"T must be given for the count reading of {type(module).__name__} (the number of time "
                "steps), as export(..., T=...) or the node's T"
            )
        T = _checks.check_timesteps("T", T)
        levels = _count_levels(node, T, scale)
    elif isinstance(node, EIIFNode):
        levels = _spike_levels_eiif(node, scale)
    else:
        levels = _spike_levels_custom(node, scale)
    describe = _describe_eiif if isinstance(node, EIIFNode) else _describe_custom
    description = {"format": _FORMAT, **describe(node, reading, T), "scale": scale, "reading": reading}
    return _Neuron(levels, reading, description)


# ----------------------------------------------------------------------------------------------
# NIR nodes of a neuron block


def _tau_syn(keep: float, dt: float, name: str) -> float:
    """``tau_syn`` whose Euler decay ``1 - dt / tau_syn`` is ``keep`` in float32 (``keep < 1``)."""
    tau = dt / (1.0 - keep)
    if _F32(1.0 - dt / tau) != _F32(keep):  # pragma: no cover - only for keep below ~1e-16
        raise ValueError(
            f"{name}: a membrane decay of {keep!r} cannot be written as a NIR time constant at dt={dt!r}"
        )
    return tau


def _block_nodes(
    neuron: _Neuron, n: int, dt: float, prefix: str
) -> tuple[dict[str, nir.NIRNode], list[tuple[str, str]], list[str], str]:
    """NIR nodes and edges of one neuron block of ``n`` neurons.

    Returns ``(nodes, edges, entries, exit)``: the block's input feeds every
    name in ``entries``; ``exit`` produces the neuron layer's output.
    """
    nir = _nir()
    meta = {_META_KEY: json.dumps(neuron.description, sort_keys=True)}
    name = neuron.description["class"]
    eye = np.eye(n, dtype=_F32)
    m = 2 * n
    nodes: dict[str, nir.NIRNode] = {}
    edges: list[tuple[str, str]] = []
    entries: list[str] = []
    exits: list[str] = []
    for k, lv in enumerate(neuron.levels):
        split, merge = f"{prefix}split{k}", f"{prefix}merge{k}"
        nodes[split] = nir.Linear(weight=np.concatenate([eye, -eye]), metadata=dict(meta))
        theta = np.full(m, lv.threshold, dtype=_F32)
        if lv.keep == 1.0:  # no leak, no reset: NIR's integrator, then a threshold
            integ, thr = f"{prefix}integrator{k}", f"{prefix}threshold{k}"
            nodes[integ] = nir.I(r=np.full(m, 1.0 / dt), metadata=dict(meta))
            nodes[thr] = nir.Threshold(threshold=theta, metadata=dict(meta))
            chain = [split, integ, thr, merge]
        else:
            unit = f"{prefix}unit{k}"
            tau = _tau_syn(lv.keep, dt, "r" if name == "EIIFNode" else "decay")
            nodes[unit] = nir.CubaLIF(
                tau_syn=np.full(m, tau),
                tau_mem=np.full(m, dt),
                r=np.ones(m),
                v_leak=np.zeros(m),
                v_threshold=theta,
                v_reset=np.zeros(m),
                w_in=np.full(m, tau / dt),
                metadata=dict(meta),
            )
            chain = [split, unit, merge]
        weight = np.concatenate([np.float32(lv.pos) * eye, np.float32(-lv.neg) * eye], axis=1)
        nodes[merge] = nir.Linear(weight=weight.astype(_F32), metadata=dict(meta))
        edges += list(zip(chain[:-1], chain[1:], strict=True))
        entries.append(split)
        exits.append(merge)
    if len(exits) == 1:
        return nodes, edges, entries, exits[0]
    total = f"{prefix}sum"
    nodes[total] = nir.Linear(weight=eye.copy(), metadata=dict(meta))
    edges += [(e, total) for e in exits]
    return nodes, edges, entries, total


def _neuron_size(module: nn.Module, size: int | None) -> int:
    if size is not None:
        return _checks.check_int("size", size, minimum=1)
    for attr in ("mem", "v"):  # the state a traced forward left behind: [batch, n]
        state = getattr(module, attr, None)
        if isinstance(state, torch.Tensor) and state.dim() >= 1 and state.numel() > 0:
            if state.dim() > 2:
                raise ValueError(
                    f"NIR export supports neuron layers of shape [batch, n]; {type(module).__name__} "
                    f"last ran on shape {tuple(state.shape)}"
                )
            return int(state.shape[-1])
    raise ValueError(
        f"size must be given: the number of neurons of this {type(module).__name__} is not known "
        "(it is read from the state of a forward pass, or pass size=n)"
    )


def _extract_bt_module(
    module: nn.Module,
    size: int | None = None,
    *,
    dt: float = DEFAULT_DT,
    reading: str = "path",
    T: int | None = None,
) -> nir.NIRNode | None:
    """Map one bt neuron module to NIR, for a tracer's model map (e.g. ``snntorch.export_to_nir``).

    Args:
        module: any module. bt neurons of either face (`EIIFNode`,
            `CustomNeuronNode`, ``bt_neurons.snntorch.EIIF`` /
            ``CustomNeuron``) are mapped; anything else gives ``None`` so that
            the caller can fall back to its own mapping.
        size: number of neurons ``n``; default: the last dimension of the
            state (``mem`` or ``v``) that the tracing forward pass left in
            the module.
        dt: the simulator's time step in seconds.
        reading: as in `export`.
        T: as in `export`.

    Returns:
        ``None``, or a ``nir.NIRGraph`` with nodes ``input`` and ``output``
        (the neuron block in between), which nirtorch's
        ``extract_nir_graph`` flattens into the enclosing graph as
        ``"<module name>.<node>"``.

    Raises:
        ValueError: for a configuration with no NIR equivalent (naming the
            parameter) or an unknown size.
    """
    neuron = _neuron(module, _checks.check_choice("reading", reading, ("path", "count")), T)
    if neuron is None:
        return None
    nir = _nir()
    dt = _check_dt(dt)
    n = _neuron_size(module, size)
    nodes, edges, entries, exit_ = _block_nodes(neuron, n, dt, "")
    nodes["input"] = nir.Input(input_type=np.array([n]))
    nodes["output"] = nir.Output(output_type=np.array([n]))
    edges = [("input", e) for e in entries] + edges + [(exit_, "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges)


# ----------------------------------------------------------------------------------------------
# export


def _check_dt(dt: object) -> float:
    dt = _checks.check_number("dt", dt)
    _checks.check_positive("dt", dt)
    return float(dt)


def _chain(net: object) -> list[tuple[str, nn.Module]]:
    """The modules of a chain, in order, with their names (nested ``nn.Sequential`` flattened)."""
    if isinstance(net, nn.Sequential):
        out: list[tuple[str, nn.Module]] = []
        for name, child in net.named_children():
            out += [(f"{name}.{sub}" if sub else name, m) for sub, m in _chain(child)]
        return out
    if isinstance(net, nn.Module):
        return [("", net)]
    if isinstance(net, list | tuple):
        out = []
        for i, m in enumerate(net):
            if not isinstance(m, nn.Module):
                raise TypeError(f"net[{i}] must be a torch.nn.Module, got {type(m).__name__}")
            out += [(f"{i}.{sub}" if sub else str(i), sm) for sub, sm in _chain(m)]
        return out
    raise TypeError(
        "net must be a torch.nn.Module (an nn.Sequential, one layer) or a list of modules, "
        f"got {type(net).__name__}"
    )


def _shape(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence | torch.Size):
        raise TypeError(f"{name} must be an int or a sequence of ints (one sample's shape), got {value!r}")
    return tuple(_checks.check_int(name, v, minimum=1) for v in value)


_SUPPORTED = (
    "torch.nn.Linear, spikingjelly layer.Linear, torch.nn.Flatten, spikingjelly layer.Flatten, "
    "bt_neurons.EIIFNode, bt_neurons.CustomNeuronNode, bt_neurons.snntorch.EIIF and "
    "bt_neurons.snntorch.CustomNeuron"
)


def _flatten_dims(module: nn.Flatten, rank: int, where: str) -> tuple[int, int]:
    """NIR's (batch-free) dims of a ``Flatten`` over ``[batch, *shape]``."""
    start, end = int(module.start_dim), int(module.end_dim)
    start = start if start >= 0 else start + rank + 1
    end = end if end >= 0 else end + rank + 1
    if start < 1 or end > rank or start > end:
        raise ValueError(
            f"{where}: Flatten(start_dim={module.start_dim}, end_dim={module.end_dim}) must keep the batch "
            f"axis and lie within the sample's {rank} axes"
        )
    return start - 1, end - 1


def export(
    net: nn.Module | Sequence[nn.Module],
    input_shape: int | Sequence[int] | None = None,
    *,
    dt: float = DEFAULT_DT,
    reading: str = "path",
    T: int | None = None,
) -> nir.NIRGraph:
    r"""Write a chain of linear layers and bt neurons as a NIR graph.

    Each neuron layer of ``n`` neurons becomes a block ``split -> units ->
    merge`` (see the module docs): for the spike reading

    $$
        y = (A^+ I,\ -A^- I)\; z\!\left(\begin{pmatrix} I \\ -I \end{pmatrix} x\right),
    $$
    where ``z`` is a ``CubaLIF`` of ``2n`` one-sided units ($\tau_{mem} = dt$,
    $\tau_{syn} = dt / (1 - \kappa)$ for the kept membrane fraction
    $\kappa$), or NIR's ``I`` then ``Threshold`` when $\kappa = 1$. For the
    count reading there is one such block per breakpoint of the count
    staircase, summed by an identity ``Linear``.

    Which neurons export (spike reading):

    * `EIIFNode` with ``alpha = 0`` and either ``r = 1`` (any ``soft_reset``)
      or ``soft_reset=False`` (any ``r``);
    * `CustomNeuronNode` with ``alpha = 0``, ``per_step=False`` and either
      ``decay = 0`` (any ``reset``) or ``reset=False`` with ``decay <= 1``;
    * the snnTorch faces ``bt_neurons.snntorch.EIIF`` / ``CustomNeuron``
      under the same conditions on their ``.node``; a one-number
      ``graded_spikes_factor`` scales the merge weights.

    Every bt neuron exports in the count reading.

    Args:
        net: an ``nn.Sequential`` (nested ones are flattened), one module, or
            a list of modules, applied in order. Supported: ``torch.nn.Linear``
            and SpikingJelly's ``layer.Linear`` (``nir.Affine``, or
            ``nir.Linear`` without bias), ``torch.nn.Flatten`` and
            SpikingJelly's ``layer.Flatten`` (``nir.Flatten``), and bt neurons.
        input_shape: the shape of one sample, without time and batch axes
            (an int for ``n`` features). Default: the first Linear's
            ``in_features``; required when the chain starts with a neuron or a
            ``Flatten``.
        dt: the simulator's time step in seconds (default ``1e-4``, what
            snnTorch's and SpikingJelly's importers assume); time constants
            are written in units of it.
        reading: ``"path"`` (default): each neuron as its ``path`` runs it, the
            spike reading for ``path="spike"``, the count reading over the
            node's ``T`` for ``path="count"``; ``"count"``: every neuron's
            count reading over ``T`` steps.
        T: steps of the count reading for ``reading="count"`` (default: each
            node's ``T``); under ``reading="path"`` a count-path node always
            uses its own ``T``.

    Returns:
        A type-checked ``nir.NIRGraph`` with nodes ``input`` and ``output``.

    Raises:
        TypeError: ``net`` is not a module (or list of modules), or holds a
            layer type NIR export does not support (named in the message).
        ValueError: a neuron configuration with no NIR equivalent (the message
            names the parameter and why), a shape that does not fit, a bad
            ``dt``, ``reading`` or ``T``.

    Node names: ``input``, ``output``, ``affine<i>`` / ``linear<i>`` /
    ``flatten<i>`` for layer ``i`` of the chain, and ``<i>_split<k>``,
    ``<i>_unit<k>`` (or ``<i>_integrator<k>``, ``<i>_threshold<k>``),
    ``<i>_merge<k>`` and ``<i>_sum`` for the levels ``k`` of neuron ``i``.
    The tutorial (docs/nir.md) has a worked example.
    """
    nir = _nir()
    dt = _check_dt(dt)
    _checks.check_choice("reading", reading, ("path", "count"))
    if T is not None:
        T = _checks.check_timesteps("T", T)
    chain = _chain(net)
    if not chain:
        raise ValueError("net must hold at least one layer, got an empty chain")
    for i, (name, module) in enumerate(chain):
        if not isinstance(module, nn.Linear | nn.Flatten) and _bt_parts(module) is None:
            raise TypeError(
                f"layer {name or i} ({type(module).__name__}): NIR export does not support "
                f"{type(module).__name__}; it supports {_SUPPORTED}"
            )
    if input_shape is not None:
        shape = _shape("input_shape", input_shape)
    elif isinstance(chain[0][1], nn.Linear):
        shape = (int(chain[0][1].in_features),)
    else:
        raise ValueError(
            f"input_shape must be given: the chain starts with a {type(chain[0][1]).__name__}, whose input "
            "size NIR needs to know"
        )
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    edges: list[tuple[str, str]] = []
    current = "input"
    for i, (name, module) in enumerate(chain):
        where = f"layer {name or i} ({type(module).__name__})"
        neuron = _neuron(module, reading, T)
        if neuron is not None:
            if len(shape) != 1:
                raise ValueError(
                    f"{where}: a neuron layer needs 1-D features, got shape {shape} (add a Flatten)"
                )
            block, block_edges, entries, exit_ = _block_nodes(neuron, shape[0], dt, f"{i}_")
            nodes.update(block)
            edges += [(current, e) for e in entries] + block_edges
            current = exit_
            continue
        if isinstance(module, nn.Linear):
            if len(shape) != 1 or shape[0] != module.in_features:
                raise ValueError(
                    f"{where}: expects {module.in_features} input features, but receives shape {shape}"
                )
            weight = module.weight.detach().cpu()
            weight = weight.numpy() if weight.dtype == torch.float64 else weight.to(torch.float32).numpy()
            if module.bias is None:
                key, node = f"linear{i}", nir.Linear(weight=weight.copy())
            else:
                bias = module.bias.detach().cpu().to(torch.from_numpy(weight).dtype).numpy()
                key, node = f"affine{i}", nir.Affine(weight=weight.copy(), bias=bias.copy())
            shape = (int(module.out_features),)
        elif isinstance(module, nn.Flatten):
            start, end = _flatten_dims(module, len(shape), where)
            key = f"flatten{i}"
            node = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end)
            shape = tuple(int(s) for s in node.output_type["output"])
        else:  # pragma: no cover - refused above
            raise AssertionError(where)
        nodes[key] = node
        edges.append((current, key))
        current = key
    nodes["output"] = nir.Output(output_type=np.array(shape))
    edges.append((current, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata={"bt_neurons_dt": dt})


# ----------------------------------------------------------------------------------------------
# import


def _uniform(node_name: str, field: str, values: np.ndarray) -> float:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or not np.all(arr == arr[0]):
        raise ValueError(
            f"node {node_name!r}: {field} must be one value for the whole layer (bt-neurons parameters are "
            "one number per layer)"
        )
    return float(arr[0])


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=0.0)


def _decode_split(nodes: dict[str, Any], name: str) -> int | None:
    """``n`` if node ``name`` is a split ``Linear`` with weight ``[I; -I]``, else None."""
    nir = _nir()
    node = nodes[name]
    if not isinstance(node, nir.Linear):
        return None
    w = np.asarray(node.weight)
    if w.ndim != 2 or w.shape[0] != 2 * w.shape[1]:
        return None
    n = w.shape[1]
    eye = np.eye(n)
    return n if np.array_equal(w, np.concatenate([eye, -eye])) else None


def _is_block_entry(nodes: dict[str, Any], succ: dict[str, list[str]], name: str) -> bool:
    """Whether node ``name`` is a split that feeds neuron units (``CubaLIF``, or ``I``)."""
    nir = _nir()
    return _decode_split(nodes, name) is not None and all(
        isinstance(nodes[s], nir.CubaLIF | nir.I) for s in succ[name]
    )


def _decode_merge(nodes: dict[str, Any], name: str, n: int) -> tuple[float, float]:
    nir = _nir()
    node = nodes[name]
    w = np.asarray(getattr(node, "weight", None)) if isinstance(node, nir.Linear) else None
    if w is None or w.shape != (n, 2 * n):
        raise ValueError(
            f"node {name!r} must be the merge of a neuron block: a nir.Linear of shape ({n}, {2 * n})"
        )
    eye = np.eye(n, dtype=bool)
    left, right = w[:, :n], w[:, n:]
    if np.any(left[~eye] != 0) or np.any(right[~eye] != 0):
        raise ValueError(
            f"node {name!r}: a merge weight must be diagonal in each half (one output per neuron)"
        )
    pos = _uniform(name, "the positive amplitude", np.diag(left))
    neg = -_uniform(name, "the negative amplitude", np.diag(right))
    return _f32(pos), _f32(neg)


def _decode_unit(nodes: dict[str, Any], chain: list[str], n: int, dt: float) -> tuple[float, float]:
    """``(threshold, keep)`` of the one-sided units of a block (``chain``: unit node names)."""
    nir = _nir()
    first = nodes[chain[0]]
    m = 2 * n
    if isinstance(first, nir.CubaLIF) and len(chain) == 1:
        name = chain[0]
        if np.asarray(first.v_threshold).size != m:
            raise ValueError(f"node {name!r}: a CubaLIF of {m} units was expected")
        tau_mem = _uniform(name, "tau_mem", first.tau_mem)
        if not _close(tau_mem, dt):
            raise ValueError(
                f"node {name!r}: tau_mem={tau_mem!r} must equal dt={dt!r} (a membrane that forgets every "
                "step); pass the dt the graph was written with (import_(graph, dt=...))"
            )
        if not _close(_uniform(name, "r", first.r), 1.0):
            raise ValueError(f"node {name!r}: r must be 1")
        if _uniform(name, "v_leak", first.v_leak) != 0.0:
            raise ValueError(f"node {name!r}: v_leak must be 0")
        tau_syn = _uniform(name, "tau_syn", first.tau_syn)
        if not (math.isfinite(tau_syn) and tau_syn >= dt * (1 - 1e-6)):
            raise ValueError(f"node {name!r}: tau_syn={tau_syn!r} must be finite and >= dt={dt!r}")
        if not _close(_uniform(name, "w_in", first.w_in) * dt / tau_syn, 1.0):
            raise ValueError(f"node {name!r}: w_in must equal tau_syn / dt (unit input gain)")
        keep = _f32(max(0.0, 1.0 - dt / tau_syn))
        return _f32(_uniform(name, "v_threshold", first.v_threshold)), keep
    if isinstance(first, nir.I) and len(chain) == 2 and isinstance(nodes[chain[1]], nir.Threshold):
        if not _close(_uniform(chain[0], "r", first.r) * dt, 1.0):
            raise ValueError(f"node {chain[0]!r}: r must equal 1 / dt={1 / dt!r} (unit input gain)")
        thr = nodes[chain[1]].threshold
        if np.asarray(thr).size != m:
            raise ValueError(f"node {chain[1]!r}: a Threshold of {m} units was expected")
        return _f32(_uniform(chain[1], "threshold", thr)), 1.0
    kinds = " -> ".join(type(nodes[c]).__name__ for c in chain)
    raise ValueError(
        f"nodes {chain}: {kinds} are not bt-neurons units (a CubaLIF, or I -> Threshold, between a split "
        "and a merge)"
    )


@dataclass
class _Block:
    n: int
    levels: tuple[_Level, ...]
    names: list[str]
    exits: list[str]


def _parse_block(nodes: dict[str, Any], succ: dict[str, list[str]], pred: dict[str, list[str]], splits, dt):
    n = None
    levels, names, exits = [], [], []
    for split in splits:
        k = _decode_split(nodes, split)
        if n is None:
            n = k
        if k != n:
            raise ValueError(f"node {split!r}: the splits of one neuron block must all have {n} neurons")
        chain, cur = [], split
        while True:
            nxt = succ[cur]
            if len(nxt) != 1 or len(pred[nxt[0]]) != 1:
                raise ValueError(f"node {cur!r}: inside a neuron block every node has one successor")
            cur = nxt[0]
            if isinstance(nodes[cur], _nir().Linear):
                break
            chain.append(cur)
            if len(chain) > 2:
                raise ValueError(f"nodes {chain}: not a bt-neurons block (split -> units -> merge)")
        if not chain:
            raise ValueError(f"node {split!r}: a split must feed neuron units, not {cur!r}")
        threshold, keep = _decode_unit(nodes, chain, n, dt)
        pos, neg = _decode_merge(nodes, cur, n)
        levels.append(_Level(threshold, keep, pos, neg))
        names += [split, *chain, cur]
        exits.append(cur)
    return _Block(n, tuple(levels), names, exits)


def _block_description(nodes: dict[str, Any], names: list[str]) -> dict[str, Any] | None:
    texts = set()
    for name in names:
        meta = getattr(nodes[name], "metadata", None) or {}
        text = meta.get(_META_KEY) if isinstance(meta, dict) else None
        if isinstance(text, bytes):
            text = text.decode("utf8")
        texts.add(text if isinstance(text, str) else None)
    if len(texts) != 1 or None in texts:
        return None
    try:
        desc = json.loads(texts.pop())
    except ValueError:
        return None
    return desc if isinstance(desc, dict) and desc.get("format") == _FORMAT else None


def _node_from_description(desc: dict[str, Any]) -> EIIFNode | CustomNeuronNode:
    """The bt node a block's metadata describes (scale folded into CustomNeuron amplitudes)."""
    scale = float(desc.get("scale", 1.0))
    common = {
        "T": desc["T"],
        "path": desc["path"],
        "detach_reset": bool(desc["detach_reset"]),
        "check_finite": bool(desc["check_finite"]),
        "step_mode": "m",
    }
    if desc["class"] == "EIIFNode" and scale == 1.0:
        return EIIFNode(
            desc["theta_0"],
            desc["alpha"],
            desc["r"],
            soft_reset=bool(desc["soft_reset"]),
            learnable=list(desc["learnable"]),
            **common,
        )
    if (
        desc["class"] == "EIIFNode"
    ):  # an EIIF face with a graded_spikes_factor: the same neuron as a CustomNeuron
        keep = _f32(1 - torch.tensor(desc["r"], dtype=torch.float32))
        desc = {
            **desc,
            "theta_base": desc["theta_0"],
            "decay": keep,
            "amp_pos": 1.0,
            "amp_neg": 1.0,
            "offsets": None,
            "reset": desc["soft_reset"],
            "per_step": False,
            "learnable": bool(desc["learnable"]),
        }
    elif desc["class"] != "CustomNeuronNode":
        raise ValueError(f"unknown bt_neurons class {desc['class']!r}")

    def scaled(v: float | list[float]) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32) * torch.tensor(scale, dtype=torch.float32)

    per_step = bool(desc["per_step"])
    node = CustomNeuronNode(
        desc["theta_base"],
        desc["alpha"],
        desc["decay"],
        1.0 if per_step else _f32(scaled(desc["amp_pos"])),
        1.0 if per_step else _f32(scaled(desc["amp_neg"])),
        reset=bool(desc["reset"]),
        per_step=per_step,
        learnable=bool(desc["learnable"]),
        **common,
    )
    if per_step:
        with torch.no_grad():
            node.amp_pos.copy_(scaled(desc["amp_pos"]))
            node.amp_neg.copy_(scaled(desc["amp_neg"]))
            node.offsets.copy_(torch.tensor(desc["offsets"], dtype=torch.float32))
    return node


def _levels_match(a: tuple[_Level, ...], b: tuple[_Level, ...], reading: str) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(
        sorted(a, key=lambda lv: lv.threshold), sorted(b, key=lambda lv: lv.threshold), strict=True
    ):
        if (x.threshold, x.keep) != (y.threshold, y.keep):
            return False
        if reading == "count":  # summed amplitudes: equal up to float rounding
            scale = max(abs(x.pos), abs(x.neg), 1e-30)
            if abs(x.pos - y.pos) > 1e-5 * scale or abs(x.neg - y.neg) > 1e-5 * scale:
                return False
        elif (x.pos, x.neg) != (y.pos, y.neg):
            return False
    return True


def _r_for_keep(keep: float) -> float | None:
    """A float32 ``r`` with ``float32(1 - r) == keep``, if there is one."""
    r = np.float32(1.0 - keep)
    for cand in (r, np.nextafter(r, np.float32(0)), np.nextafter(r, np.float32(1))):
        if 0 <= cand <= 1 and _f32(1 - torch.tensor(float(cand), dtype=torch.float32)) == keep:
            return float(cand)
    return None


def _node_from_structure(block: _Block, where: str) -> EIIFNode | CustomNeuronNode:
    if len(block.levels) != 1:
        raise ValueError(
            f"{where}: a staircase of {len(block.levels)} threshold levels (a count reading) without valid "
            "bt_neurons metadata; import_ rebuilds it only from the metadata that export writes"
        )
    lv = block.levels[0]
    if not lv.threshold > 0:
        raise ValueError(f"{where}: the threshold must be > 0, got {lv.threshold:g}")
    r = _r_for_keep(lv.keep) if (lv.pos, lv.neg) == (1.0, 1.0) else None
    if r is not None:
        return EIIFNode(lv.threshold, 0.0, r, step_mode="m")
    return CustomNeuronNode(lv.threshold, 0.0, lv.keep, lv.pos, lv.neg, reset=False, step_mode="m")


def _layer_from_nir(node: Any, name: str) -> nn.Module:
    nir = _nir()
    if isinstance(node, nir.Affine | nir.Linear):
        w = torch.as_tensor(np.asarray(node.weight), dtype=torch.float32)
        if w.dim() != 2:
            raise ValueError(f"node {name!r}: import_ supports 2-D weights, got shape {tuple(w.shape)}")
        has_bias = isinstance(node, nir.Affine)
        mod = layer.Linear(w.shape[1], w.shape[0], bias=has_bias, step_mode="m")
        with torch.no_grad():
            mod.weight.copy_(w)
            if has_bias:
                mod.bias.copy_(torch.as_tensor(np.asarray(node.bias), dtype=torch.float32).reshape(-1))
        return mod
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return layer.Flatten(start + 1 if start >= 0 else start, end + 1 if end >= 0 else end, step_mode="m")
    raise ValueError(
        f"node {name!r} is a nir.{type(node).__name__}: import_ rebuilds what export writes (Affine, Linear, "
        "Flatten and bt-neurons neuron blocks), and NIR's other neurons have no bt-neurons equivalent"
    )


def _flat(graph: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Nodes and edges of ``graph`` with every nested ``NIRGraph`` inlined as ``"<name>.<node>"``."""
    nir = _nir()
    nodes: dict[str, Any] = {}
    edges = [(str(a), str(b)) for a, b in graph.edges]
    for name, node in graph.nodes.items():
        if name in nodes:
            raise ValueError(f"node name {name!r} appears twice in the graph")
        if not isinstance(node, nir.NIRGraph):
            nodes[name] = node
            continue
        sub_nodes, sub_edges = _flat(node)
        ins = [k for k, v in sub_nodes.items() if isinstance(v, nir.Input)]
        outs = [k for k, v in sub_nodes.items() if isinstance(v, nir.Output)]
        if len(ins) != 1 or len(outs) != 1:
            raise ValueError(f"subgraph {name!r} must have one nir.Input and one nir.Output node")
        for k, v in sub_nodes.items():
            if k not in (ins[0], outs[0]):
                nodes[f"{name}.{k}"] = v
        entries = [f"{name}.{b}" for a, b in sub_edges if a == ins[0]]
        exits = [f"{name}.{a}" for a, b in sub_edges if b == outs[0]]
        if f"{name}.{outs[0]}" in entries:
            raise ValueError(f"subgraph {name!r} connects its input straight to its output")
        inner = [(f"{name}.{a}", f"{name}.{b}") for a, b in sub_edges if a != ins[0] and b != outs[0]]
        rewired = []
        for a, b in edges:
            sources = exits if a == name else [a]
            targets = entries if b == name else [b]
            rewired += [(x, y) for x in sources for y in targets]
        edges = rewired + inner
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise ValueError(f"edge ({a!r}, {b!r}) names a node that is not in the graph")
    return nodes, edges


def import_(graph: nir.NIRGraph | str | Path, *, dt: float | None = None) -> nn.Sequential:
    """Build a bt-neurons network (SpikingJelly, multi-step) from a NIR graph.

    The graph must be a chain of ``Affine`` / ``Linear`` / ``Flatten`` nodes
    and neuron blocks as `export` writes them. A block with bt-neurons
    metadata that still matches its nodes becomes the very node that was
    exported (class, parameters, ``soft_reset``, ``path`` and ``T`` of a
    count reading); a one-level block without it becomes an `EIIFNode`
    (unit amplitudes) or a `CustomNeuronNode` with ``alpha = 0``,
    ``reset=False`` and the block's threshold, decay and amplitudes, which
    fire identically.

    Args:
        graph: a ``nir.NIRGraph``, or the path of a file written by ``nir.write``.
        dt: the time step the graph's time constants are in units of
            (default: the one `export` recorded, else ``1e-4``).

    Returns:
        An ``nn.Sequential`` of SpikingJelly ``layer.Linear`` /
        ``layer.Flatten`` and bt nodes, all in step mode ``"m"``: input
        ``[T, N, *]``. Reset it with ``functional.reset_net`` between
        sequences.

    Raises:
        TypeError: ``graph`` is not a NIR graph or a path.
        ValueError: the graph is not a chain, or holds a node or a block that
            has no bt-neurons equivalent (named in the message).
    """
    nir = _nir()
    if isinstance(graph, str | Path):
        graph = nir.read(graph)
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"graph must be a nir.NIRGraph or a file path, got {type(graph).__name__}")
    nodes, edges = _flat(graph)
    meta_dt = (graph.metadata or {}).get("bt_neurons_dt") if isinstance(graph.metadata, dict) else None
    dt = _check_dt(dt if dt is not None else (meta_dt if meta_dt is not None else DEFAULT_DT))
    succ: dict[str, list[str]] = {k: [] for k in nodes}
    pred: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if b not in succ[a]:
            succ[a].append(b)
            pred[b].append(a)
    inputs = [k for k, v in nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        raise ValueError(f"the graph must have exactly one nir.Input node, got {len(inputs)}")
    modules: list[nn.Module] = []
    current = [inputs[0]]
    seen: set[str] = set(current)
    while True:
        nxt = list(dict.fromkeys(s for c in current for s in succ[c]))
        if not nxt:
            raise ValueError(f"node {current[-1]!r} has no successor: the chain never reaches a nir.Output")
        if any(s in seen for s in nxt):
            raise ValueError(f"the graph has a cycle through {nxt}: import_ reads feed-forward chains")
        if len(current) == 1 and all(_is_block_entry(nodes, succ, s) for s in nxt):
            block = _parse_block(nodes, succ, pred, nxt, dt)
            where = f"neuron block at {nxt[0]!r}"
            desc = _block_description(nodes, block.names)
            built = None
            if desc is not None:
                try:
                    cand = _node_from_description(desc)
                    ref = _neuron(cand, "count" if desc["reading"] == "count" else "path", desc["T"])
                    if ref is not None and _levels_match(ref.levels, block.levels, desc["reading"]):
                        built = cand
                except (KeyError, TypeError, ValueError):
                    built = None
            modules.append(built if built is not None else _node_from_structure(block, where))
            seen.update(block.names)
            current = block.exits
            after = sorted({s for c in current for s in succ[c]})
            if len(current) > 1 and len(after) == 1 and sorted(pred[after[0]]) == sorted(current):
                total = nodes[after[0]]  # the identity Linear that export adds to sum the levels
                w = np.asarray(total.weight) if isinstance(total, nir.Linear) else None
                if w is not None and w.shape == (block.n, block.n) and np.array_equal(w, np.eye(block.n)):
                    seen.add(after[0])
                    current = [after[0]]
            continue
        if len(nxt) != 1 or sorted(pred[nxt[0]]) != sorted(current):
            raise ValueError(
                f"node(s) {current} fan out to {nxt}: import_ reads chains of layers and bt-neurons blocks"
            )
        name = nxt[0]
        if isinstance(nodes[name], nir.Output):
            break
        modules.append(_layer_from_nir(nodes[name], name))
        seen.add(name)
        current = [name]
    return nn.Sequential(*modules)
