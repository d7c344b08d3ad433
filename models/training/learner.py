r"""Stage 3: STDP-inspired learning with global task guidance (paper 3.3.3, eqs. 24-38).

`StageThreeLearner` watches a converted spiking model (forward hooks on its
`Synapsis` modules and on its `EIIFNode` / `CustomNeuronNode` layers) and,
for each batch,

1. `objective` builds the combined loss of eq. 34 from the task loss and
   what it saw: the STDP term with its tags, spike-rate, membrane and
   time-step terms, the row-sum constraint and weight decay. Minimising it
   with an optimiser is eqs. 35-38 (and the gradient parts of eqs. 29-31).
2. `step` applies the local, gradient-free rules scaled by the global
   factor $G$ (eqs. 26-28): eq. 24 to every watched Synapsis's weight,
   gated by the synaptic tags (eq. 33), and eqs. 29-31 to every watched
   neuron layer.

`training_step` does both in the usual order.

Spike timing. The presynaptic neurons of a Synapsis are EI_IF neurons
under a constant input (``r = 1``): a neuron with count ``c`` fires
``sign(c)`` at steps ``1 .. |c|``, so the spike trains follow exactly from
the count path's counts (the spike path gives the same trains). Its
postsynaptic spikes are those of its post-quantizer's neurons or, when it has
none (``post=False``, as in the spiking LLM), of EI_IF neurons encoding its
output per token over the same ``T``. A Synapsis whose forward is bypassed
(the LLM's ``o_proj`` and ``down_proj``, fed graded counts) is not seen and
learns from the task gradient only. The neurons inside a Synapsis have the
fixed thresholds its exact conversion relies on; eqs. 29-31 act on
`EIIFNode` / `CustomNeuronNode` layers, and to the snnTorch faces
(`bt_neurons.snntorch.EIIF` / ``CustomNeuron``), whose calls are watched one
time step at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bt_neurons import CustomNeuronNode, EIIFNode, Quantizer, Synapsis, _checks
from bt_neurons.functional.eiif import eiif_spikes_from_counts, eiif_thresholds
from bt_neurons.snntorch._stateful import SnnTorchShell

from .homeostasis import expected_first_spike_time, homeostasis_update, membrane_charge
from .modulation import GlobalModulation
from .objective import StageThreeConfig, combined_loss
from .stdp import spike_activity, stdp_delta, stdp_update, synaptic_tags

__all__ = ["StageThreeLearner"]

Node = EIIFNode | CustomNeuronNode


@dataclass
class _Plasticity:
    """What eq. 24 needs for one Synapsis and one batch (computed once, no graph)."""

    delta: Tensor
    tags: Tensor


def parse_learner_state(state: object, where: str = "the learner state") -> tuple:
    """``(config, modulation, steps)`` rebuilt from `StageThreeLearner.state_dict`; ``ValueError`` naming
    ``where`` and the field if anything is missing or invalid. Changes nothing."""
    if not isinstance(state, dict) or not all(k in state for k in ("steps", "config", "modulation")):
        raise ValueError(f"{where} must be a dict with 'steps', 'config' and 'modulation'")
    try:
        if not isinstance(state["config"], dict):
            raise TypeError("'config' must be a dict of StageThreeConfig fields")
        config = StageThreeConfig(**state["config"])
        modulation = GlobalModulation(config.beta, config.window)
        if not isinstance(state["modulation"], dict):
            raise TypeError("'modulation' must be a dict")
        modulation.load_state_dict(state["modulation"])
        steps = state["steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"'steps' must be an int >= 0, got {steps!r}")
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{where} is invalid: {exc}") from None
    return config, modulation, steps


def _finite(name: str, value: Tensor | float) -> float:
    v = _checks.check_number(name, value)  # one number (a one-element tensor or a float)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {v}: nothing was updated")
    return v


class StageThreeLearner:
    """Stage-3 learning on a spiking model; see the module docs.

    Args:
        model: a spiking model (after `to_spiking`, or any net with Synapsis /
            EIIFNode / CustomNeuronNode modules).
        config: the coefficients (`StageThreeConfig`, paper defaults).
        synapses: names of the Synapsis modules to watch (default: all with a
            linear layer).
        nodes: names of the neuron layers to watch (default: all).

    Raises:
        ValueError: the model has nothing stage 3 can learn.
    """

    def __init__(
        self,
        model: nn.Module,
        config: StageThreeConfig | None = None,
        *,
        synapses: Iterable[str] | None = None,
        nodes: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
        self.config = config if config is not None else StageThreeConfig()
        if not isinstance(self.config, StageThreeConfig):
            raise TypeError(f"config must be a StageThreeConfig, got {type(self.config).__name__}")
        modules = dict(model.named_modules())
        # snnTorch faces: the shell is called (its node only holds the parameters), so watch the shell
        self._shells = {n: m for n, m in modules.items() if isinstance(m, SnnTorchShell)}
        inner = {id(m.node) for m in self._shells.values()}
        modules = {n: m for n, m in modules.items() if id(m) not in inner}
        self.synapses = self._select(
            modules, synapses, "synapses", lambda m: isinstance(m, Synapsis) and not m.embedding
        )
        self.nodes = self._select(
            modules, nodes, "nodes", lambda m: isinstance(m, EIIFNode | CustomNeuronNode | SnnTorchShell)
        )
        if not self.synapses and not self.nodes:
            raise ValueError(
                "model has nothing for stage 3 to learn: no Synapsis, EIIFNode or CustomNeuronNode "
                "(convert it with to_spiking first)"
            )
        self.model = model
        self.modulation = GlobalModulation(self.config.beta, self.config.window)
        self.steps = 0
        self._inputs: dict[str, list[tuple[Tensor, Tensor]]] = {}
        self._plasticity: dict[str, _Plasticity] = {}
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.synapses.items()]
        for name, node in self.nodes.items():
            if isinstance(node, SnnTorchShell):
                node = node.node
            elif node.path == "spike" and node.step_mode == "m":
                node.store_v_seq = True
            self._handles.append(self.nodes[name].register_forward_hook(self._hook(name)))

    @staticmethod
    def _select(modules: dict, names, what: str, accept) -> dict[str, nn.Module]:
        if names is None:
            return {n: m for n, m in modules.items() if accept(m)}
        if isinstance(names, str):
            raise TypeError(f"{what} must be a list of module names, e.g. ({names!r},), not a single string")
        chosen = {}
        for n in names:
            if n not in modules or not accept(modules[n]):
                raise ValueError(f"{what} must name matching modules of the model; {n!r} is not one")
            chosen[n] = modules[n]
        return chosen

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor | tuple) -> None:
            if self.model.training:  # evaluation passes (model.eval()) are not learned from
                x = args[0]
                if isinstance(module, SnnTorchShell):  # snnTorch: spk, mem = neuron(x, mem)
                    output = output[0] if isinstance(output, tuple) else output
                    mem = args[1] if len(args) > 1 else None
                    if isinstance(mem, Tensor) and mem.shape == x.shape:  # the charge H_t = k mem + x
                        keep = module.node.decay if isinstance(module.node, CustomNeuronNode) else 1.0
                        x = x + keep * mem.to(x.dtype)
                self._inputs.setdefault(name, []).append((x, output))

        return hook

    # ------------------------------------------------------------ bookkeeping
    def clear(self) -> None:
        """Forget what the hooks saw (called by `step`)."""
        self._inputs.clear()
        self._plasticity.clear()

    def close(self) -> None:
        """Remove the hooks; the learner sees nothing afterwards."""
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self.clear()

    def state_dict(self) -> dict:
        """Steps taken, the coefficients and the loss baseline (JSON-serialisable)."""
        return {
            "steps": self.steps,
            "config": self.config.to_dict(),
            "modulation": self.modulation.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict` (checked before anything changes; ``ValueError`` naming the field)."""
        self.config, self.modulation, self.steps = parse_learner_state(state)

    # ------------------------------------------------------------ spikes
    def _synapsis_spikes(self, syn: Synapsis, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Pre ``[T, N, in]`` and post ``[T, N, out]`` spike trains of one call."""
        pre_counts = syn.pre.quantize(x.detach())[0].reshape(-1, x.shape[-1])
        post_q = syn.post if syn.post is not None else Quantizer(qmax=syn.T)
        post_counts = post_q.quantize(y.detach())[0].reshape(-1, y.shape[-1])
        steps = max(syn.T, post_q.qmax)
        return eiif_spikes_from_counts(pre_counts, steps), eiif_spikes_from_counts(post_counts, steps)

    def _plasticity_of(self, name: str, task_loss: float) -> _Plasticity | None:
        if name in self._plasticity:
            return self._plasticity[name]
        calls = self._inputs.get(name)
        if not calls:
            return None
        syn = self.synapses[name]
        c = self.config
        with torch.no_grad():
            trains = [self._synapsis_spikes(syn, x, y) for x, y in calls]
            pre = torch.cat([p for p, _ in trains], dim=1)
            post = torch.cat([q for _, q in trains], dim=1)
            delta = stdp_delta(
                pre, post, a_plus=c.a_plus, a_minus=c.a_minus, tau_plus=c.tau_plus, tau_minus=c.tau_minus
            )
            tags = synaptic_tags(spike_activity(pre), spike_activity(post), task_loss)
        w = syn.layer.weight
        self._plasticity[name] = _Plasticity(delta.to(w.dtype), tags.to(w.dtype))
        return self._plasticity[name]

    # ------------------------------------------------------------ eq. 34
    def _neuron_stats(self) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Per-neuron spike rates, mean membrane charges and expected first-spike times (with graphs)."""
        rates, charges, times = [], [], []
        temp = self.config.time_temperature
        for name, syn in self.synapses.items():
            for x, _ in self._inputs.get(name, ()):
                scale = syn.pre.scales(x)[0].detach().to(x.dtype)
                drive = (x / scale).reshape(-1, x.shape[-1])  # the constant input of each neuron
                counts = (syn.pre(x) / scale).reshape(-1, x.shape[-1])  # straight-through counts
                rates.append(counts.abs().mean(0) / syn.T)
                charges.append(drive.abs().mean(0))
                thr = eiif_thresholds(syn.T, 0.5, 1.0, dtype=x.dtype, device=x.device)
                charge = drive.unsqueeze(0).expand(syn.T, *drive.shape)  # r = 1: H_t = x / s every step
                times.append(expected_first_spike_time(charge, thr, temp).mean(0))
        for name, node in self.nodes.items():
            for x, out in self._inputs.get(name, ()):
                if isinstance(node, SnnTorchShell):  # one step of an snnTorch loop (x: the charge)
                    rates.append(out.abs().flatten(1).mean(0))
                    charges.append(x.abs().flatten(1).mean(0))
                    continue
                if node.path == "count":
                    T = node.T
                    rates.append((out.abs() / T).reshape(-1, *out.shape[1:]).mean(0).flatten())
                    charge = x.unsqueeze(0).expand(T, *x.shape)
                else:
                    if node.step_mode != "m":
                        rates.append(out.abs().flatten(1).mean(0))
                        charges.append(x.abs().flatten(1).mean(0))
                        continue
                    T = out.shape[0]
                    rates.append(out.abs().mean(dim=(0, 1)).flatten())
                    charge = membrane_charge(node, x, node.v_seq if isinstance(node.v_seq, Tensor) else None)
                charges.append(charge.abs().mean(dim=(0, 1)).flatten())
                if isinstance(node, EIIFNode):
                    thr = eiif_thresholds(T, node.theta_0, node.alpha, dtype=x.dtype, device=x.device)
                    times.append(expected_first_spike_time(charge, thr, temp).flatten(1).mean(0))
        return rates, charges, times

    def objective(self, task_loss: Tensor) -> Tensor:
        """The combined loss of eq. 34 for the batch the hooks saw (differentiable).

        The STDP target ``delta`` and the tags are constants here; everything
        else carries gradients (straight-through for counts). The values of the
        terms are kept in ``last_terms``.

        Raises:
            ValueError: a non-finite task loss.
        """
        loss_value = _finite("task_loss", task_loss)
        if not isinstance(task_loss, Tensor):
            raise TypeError(
                f"task_loss must be the loss tensor (objective differentiates it), "
                f"got {type(task_loss).__name__}"
            )
        c = self.config
        reduce = torch.mean if c.reduction == "mean" else torch.sum
        terms: dict[str, Tensor] = {"task": task_loss}
        stdp, row_sums, weights = [], [], []
        for name, syn in self.synapses.items():
            p = self._plasticity_of(name, loss_value)
            if p is None:
                continue
            w = syn.layer.weight
            stdp.append((p.tags * (w - p.delta).pow(2)).flatten())
            row_sums.append(w.sum(1) - c.c_target)
            weights.append(w.flatten())
        rates, charges, times = self._neuron_stats()
        if stdp:
            terms["stdp"] = reduce(torch.cat(stdp))
            terms["row_sum"] = reduce(torch.cat(row_sums).pow(2))
            terms["weight_decay"] = reduce(torch.cat(weights).pow(2))
        if rates:
            terms["rate"] = reduce((c.s_target - torch.cat(rates)).pow(2))
        if charges:
            v = torch.cat(charges)
            terms["adaptation"] = reduce((v - c.v_target).pow(2))
            terms["rest"] = reduce((v - c.v_rest).pow(2))
        if times:
            terms["time"] = (torch.cat(times).mean() - c.t_target).pow(2)
        self.last_terms = {k: float(v.detach()) for k, v in terms.items()}
        return combined_loss(terms, c)

    # ------------------------------------------------------------ local rules
    @torch.no_grad()
    def step(self, task_loss: Tensor | float) -> dict[str, float]:
        """Apply eq. 24 (gated by the tags) and eqs. 29-31, scaled by ``G``; clears the records.

        Returns ``G``, the baseline and the mean ``|dw|``.

        Raises:
            ValueError: a non-finite task loss (nothing is changed, the records are kept).
        """
        loss_value = _finite("task_loss", task_loss)
        c = self.config
        plasticity = {n: self._plasticity_of(n, loss_value) for n in self.synapses}
        g = self.modulation(loss_value)
        total, count = 0.0, 0
        for name, p in plasticity.items():
            if p is None:
                continue
            w = self.synapses[name].layer.weight
            dw = stdp_update(w, p.delta, g, eta_w=c.eta_w, tags=p.tags, tag_threshold=c.tag_threshold)
            w.add_(dw)
            total += float(dw.abs().sum())
            count += dw.numel()
        for name, node in self.nodes.items():
            calls = self._inputs.get(name)
            if not calls:
                continue
            rates, charges = [], []
            count_path = not isinstance(node, SnnTorchShell) and node.path == "count"
            for x, out in calls:  # spikes per neuron per step
                rates.append(float(out.detach().abs().mean()) / (node.T if count_path else 1))
                charges.append(float(x.detach().abs().mean()))
            homeostasis_update(
                node.node if isinstance(node, SnnTorchShell) else node,
                sum(rates) / len(rates),
                sum(charges) / len(charges),
                g,
                s_target=c.s_target,
                v_target=c.v_target,
                v_rest=c.v_rest,
                eta_theta=c.eta_theta,
                eta_alpha=c.eta_alpha,
                eta_r=c.eta_r,
            )
        self.steps += 1
        self.clear()
        return {"modulation": g, "baseline": self.modulation.baseline, "mean_abs_dw": total / max(count, 1)}

    def training_step(self, task_loss: Tensor, optimizer: torch.optim.Optimizer) -> dict[str, float]:
        """One batch of stage 3: minimise eq. 34 with ``optimizer`` (eqs. 35-38), then `step`.

        Raises:
            ValueError: the task loss or the combined loss is not finite; the
                model, the optimiser and the baseline are left as they were.
        """
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        try:
            loss = self.objective(task_loss)
            _finite("the combined loss", loss)
        except ValueError:
            self.clear()
            raise
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        info = self.step(task_loss)
        info["loss"] = float(loss.detach())
        info.update({f"term_{k}": v for k, v in self.last_terms.items()})
        return info
