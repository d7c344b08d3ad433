"""Accuracy and spike cost of the built-in function approximators, and SiLU against a few-spike neuron.

What is measured (CPU, ``torch.set_num_threads(2)``, one run, nothing timed):

1. **Every built-in target** (``bt_neurons.approximators.targets.BUILTIN_TARGETS``). The
   approximator is the shipped one from ``bt_neurons.approximators.load_pretrained(name)`` when
   that function exists, otherwise ``fit_approximator(name)`` with its default settings (the
   script prints and records which). On its count path, in float32 (the target in float64 at the
   same float32 inputs):

   * max abs error, RMSE and max relative error on a dense grid of ``--grid`` points over the
     target's full domain (log-spaced for a positive domain spanning more than three decades,
     the rule of ``metrics.evaluate``, whose 20,001-point grid is cross-checked);
   * relative L2 error ``||y - f|| / ||f||`` over ``--samples`` draws of the target's input
     distribution, and spikes per evaluation (mean under that distribution, max over grid and
     draws; it counts every spike the routed neuron fires; the binary-coded cell's base value is a
     bias added by the routing synapse (one addition, no spike), and inputs beyond the domain take
     the linear tail, a synapse, and fire nothing);
   * neurons ``P`` and steps ``T``, and the issue's goal for the target, checked on its own grid
     or distribution (independent of the target's default domain): SiLU relative L2 <= 1 % for
     x ~ N(0, 1), max abs <= 0.05 on [-8, 8] and <= 0.05 on the tails [8, 1000] and
     [-1000, -8]; Square relative L2 <= 1 % for x ~ U[-16, 16]; Sqrt and RSqrt max relative
     error <= 1 % on [1e-6, 1e4]; Reciprocal max relative error <= 1 % on [1e-3, 1e5]; Exp max
     abs <= 1e-2 on [-16, 0]; and for every target ``T <= 16`` and at most 4 spikes per
     evaluation (mean on its distribution), for SiLU and GELU at most 16 neurons. A check (not timed) runs the spike path over ``T`` steps and compares its sum with
     the count path.

2. **SiLU against the few-spike (FS) neuron** of Stoeckl & Maass, "Optimized spiking neurons can
   classify images with high accuracy through temporal coding with two spikes", Nature Machine
   Intelligence 3, 230-238 (2021), at ``K = 4, 8, 16`` steps (``benchmarks/fs_neuron.py``):
   ``v(1) = x``; for ``t = 1..K``: ``z(t) = H(v(t) - T(t))``, ``v(t+1) = v(t) - h(t) z(t)``;
   output ``sum_t d(t) z(t)``, with learnable ``K``-vectors ``T``, ``h``, ``d``. Trained with
   Adam (cosine learning-rate decay) on the MSE against SiLU, on batches drawn half from N(0, 1)
   and half from U[-8, 8], with a straight-through surrogate gradient (hard step forward, the
   derivative of ``sigmoid((v - T) / tau)`` backward, ``tau`` annealed from 0.5 to 0.05), for
   ``--fs-steps`` steps from a fixed seed. Three variants: positive thresholds only with the
   binary initialisation ``T(t) = h(t) = d(t) = 2**(3 - t)`` (paper-style; negative x
   never fires, so the output is 0 there), the same initialisation with every parameter free
   (negative thresholds and amplitudes allowed), and a free one whose first four steps start as a
   staircase for SiLU's negative dip (``h = 0``, thresholds -5, -3.5, -2.3, -1.3). The variant
   with the lowest MSE on a held-out draw of the training mixture is the one compared. All are
   evaluated with the hard step on the same metrics as the approximator. Against the selected
   variant at each ``K``: the bt binary SiLU with 16 neurons at the FS neuron's measured mean
   spikes (matched spikes) and the best binary SiLU within its ``3 K`` parameters (matched
   parameters); energy per evaluation = (spikes + other additions) x 0.9 pJ.

3. The reference implementation's SiLU and Sqrt figures, as stated in the project's design notes
   (a static row, not re-measured here).

Run from the repository root::

    .venv/bin/python benchmarks/bench_approximators.py --write-results benchmarks/RESULTS.md

``--write-results PATH`` replaces the text between ``<!-- bench_approximators:start -->`` and
``<!-- bench_approximators:end -->`` in ``PATH`` (or appends the section); ``--fs-steps`` sets the
FS training steps (default 4000), ``--seed`` the seed of the FS training and of the evaluation
draws (default 0). It takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from bt_neurons.approximators.fitting import fit_approximator
from bt_neurons.approximators.metrics import evaluate
from bt_neurons.approximators.neuron_array import NeuronArrayApproximator
from bt_neurons.approximators.pareto import pareto_front, pareto_table
from bt_neurons.approximators.targets import BUILTIN_TARGETS, TargetSpec
from fs_neuron import FSResult, fs_model, silu_variants, train_fs
from results_file import machine_info, markers, write_section
from spikingjelly.activation_based import functional
from torch import Tensor

from bt_neurons.accounting import ADD_PJ

MARK_START, MARK_END = markers("bench_approximators")
SECTION_TITLE = "## Approximators: accuracy and spikes"
THREADS = 2
MAX_STEPS = 16  # the budget of time steps per neuron
FS_KS = (4, 8, 16)  # the FS neuron's step counts compared
PARETO_NEURONS = (4, 8, 16, 32)
PARETO_BUDGETS = (1, 2, 3, 4, 6)
MAX_SPIKES = 4  # the budget of mean spikes per evaluation, every target
MAX_NEURONS = 16  # the budget of neurons for SiLU and GELU

Sampler = Callable[[int, torch.Generator], Tensor]
# a model maps float64 inputs (float32-representable) to (output, spikes per input), both float64
Model = Callable[[Tensor], tuple[Tensor, Tensor]]


# ----------------------------------------------------------------------------- samplers and grids
def normal_sampler(n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, generator=g, dtype=torch.float64)


def uniform_sampler(lo: float, hi: float) -> Sampler:
    return lambda n, g: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def as_float32(x: Tensor) -> Tensor:
    """``x`` rounded to float32 and back to float64: the values a float32 model sees."""
    return x.to(torch.float32).to(torch.float64)


def make_grid(lo: float, hi: float, points: int) -> Tensor:
    """Linear grid, or log-spaced for a positive domain over more than three decades (float32 values)."""
    if lo > 0 and hi / lo > 1e3:
        x = torch.logspace(math.log10(lo), math.log10(hi), points, dtype=torch.float64)
    else:
        x = torch.linspace(lo, hi, points, dtype=torch.float64)
    return as_float32(x)


# ----------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class Figures:
    """Errors and spike counts of a model against its target."""

    max_abs: float
    rmse: float
    max_rel: float
    rel_l2: float
    spikes_mean: float
    spikes_max: int


def measure(
    model: Model,
    fn: Callable[[Tensor], Tensor],
    domain: tuple[float, float],
    sampler: Sampler,
    *,
    grid_points: int,
    samples: int,
    seed: int,
) -> Figures:
    """Grid errors over ``domain``, relative L2 and spikes under ``sampler`` (see the module docs)."""
    xg = make_grid(*domain, grid_points)
    yg, sg = model(xg)
    f = fn(xg)
    err = (yg - f).abs()
    xs = as_float32(sampler(samples, torch.Generator().manual_seed(seed)))
    ys, ss = model(xs)
    fs = fn(xs)
    return Figures(
        max_abs=err.max().item(),
        rmse=err.pow(2).mean().sqrt().item(),
        max_rel=max_rel_if_defined(yg, f),
        rel_l2=((ys - fs).norm() / fs.norm()).item(),
        spikes_mean=ss.mean().item(),
        spikes_max=int(max(sg.max().item(), ss.max().item())),
    )


def max_rel_if_defined(y: Tensor, f: Tensor) -> float:
    """Max ``|y - f| / |f|``, or NaN where ``f`` changes sign or comes within 1e-8 of 0 relative to its
    largest value (the rule of ``metrics.evaluate``)."""
    one_sign = bool((f > 0).all()) or bool((f < 0).all())
    if not one_sign or f.abs().min().item() <= 1e-8 * f.abs().max().item():
        return float("nan")
    return ((y - f).abs() / f.abs()).max().item()


def max_abs_on(model: Model, fn: Callable[[Tensor], Tensor], lo: float, hi: float, points: int) -> float:
    x = make_grid(lo, hi, points)
    return (model(x)[0] - fn(x)).abs().max().item()


def max_rel_on(model: Model, fn: Callable[[Tensor], Tensor], lo: float, hi: float, points: int) -> float:
    x = make_grid(lo, hi, points)
    f = fn(x)
    return ((model(x)[0] - f).abs() / f.abs()).max().item()


def rel_l2_under(
    model: Model, fn: Callable[[Tensor], Tensor], sampler: Sampler, samples: int, seed: int
) -> float:
    x = as_float32(sampler(samples, torch.Generator().manual_seed(seed)))
    f = fn(x)
    return ((model(x)[0] - f).norm() / f.norm()).item()


# ----------------------------------------------------------------------------- approximators
def pretrained_loader() -> Callable[..., object] | None:
    """``bt_neurons.approximators.load_pretrained`` if it exists, else ``None``."""
    try:
        from bt_neurons.approximators import load_pretrained
    except (ImportError, AttributeError):
        return None
    return load_pretrained


def load_approximator(name: str, loader: Callable[..., object] | None) -> tuple[NeuronArrayApproximator, str]:
    """The approximator for ``name`` and a note on where it came from."""
    if loader is not None:
        try:
            loaded = loader(name)
            approx = getattr(loaded, "approximator", loaded)
            if not isinstance(approx, NeuronArrayApproximator):
                raise TypeError(f"load_pretrained returned {type(loaded).__name__}")
            return approx, "load_pretrained"
        except Exception as exc:  # noqa: BLE001 - recorded in the report, then fall back
            note = f"fit_approximator (defaults; load_pretrained failed: {type(exc).__name__}: {exc})"
            return fit_approximator(name).approximator, note
    return fit_approximator(name).approximator, "fit_approximator (defaults)"


def approximator_model(approx: NeuronArrayApproximator) -> Model:
    def model(x: Tensor) -> tuple[Tensor, Tensor]:
        x32 = x.to(torch.float32)
        with torch.no_grad():
            return approx.count(x32).double(), approx.spikes_per_input(x32).double()

    return model


def spike_path_deviation(approx: NeuronArrayApproximator, spec: TargetSpec) -> float:
    """Max |sum over T of the spike path - count path| on a grid reaching 25 % beyond the domain."""
    lo, hi = spec.full_domain
    pad = 0.25 * (hi - lo)
    x = torch.linspace(lo - pad, hi + pad, 4097, dtype=torch.float32)
    old_path = approx.path
    try:
        with torch.no_grad():
            count = approx.count(x)
            approx.path = "spike"
            functional.reset_net(approx)
            spikes = approx(x.unsqueeze(0).expand(approx.T, -1).contiguous())
            functional.reset_net(approx)
    finally:
        approx.path = old_path
    scale = count.abs().clamp_min(1.0)
    return ((spikes.sum(0) - count).abs() / scale).max().item()


@dataclass
class Goal:
    """One of the issue's goals, measured."""

    target: str
    text: str
    value: float
    limit: float
    fmt: str
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.value <= self.limit


def tail_goal(
    name: str, model: Model, fn: Callable[[Tensor], Tensor], lo: float, hi: float, edge: float, points: int
) -> Goal:
    """Max abs error on ``[lo, hi]``, which ends at the domain's ``edge``; the detail says where it is
    attained and what it is strictly beyond the edge."""
    x = make_grid(lo, hi, points)
    err = (model(x)[0] - fn(x)).abs()
    i = int(err.argmax())
    beyond = err[x != edge].max().item()
    detail = f"attained at x = {x[i].item():g}; strictly beyond {edge:g}: {beyond:.3g}"
    return Goal(name, f"max abs on [{lo:g}, {hi:g}]", err.max().item(), 0.05, "e", detail)


def target_goals(name: str, model: Model, points: int, samples: int, seed: int) -> list[Goal]:
    """The issue's goals for ``name`` (empty for targets without one)."""

    def accuracy(fn) -> list[Goal]:  # SiLU's goals hold for GELU too (the neuron budget covers both)
        return [
            Goal(
                name, "rel L2, x ~ N(0, 1)", rel_l2_under(model, fn, normal_sampler, samples, seed), 0.01, "%"
            ),
            Goal(name, "max abs on [-8, 8]", max_abs_on(model, fn, -8.0, 8.0, points), 0.05, "e"),
        ]

    if name == "silu":
        return [
            *accuracy(F.silu),
            tail_goal(name, model, F.silu, 8.0, 1000.0, 8.0, points),
            tail_goal(name, model, F.silu, -1000.0, -8.0, -8.0, points),
        ]
    if name == "gelu":
        return accuracy(F.gelu)
    if name == "square":
        sampler = uniform_sampler(-16.0, 16.0)
        return [
            Goal(
                name,
                "rel L2, x ~ U[-16, 16]",
                rel_l2_under(model, torch.square, sampler, samples, seed),
                0.01,
                "%",
            )
        ]
    if name in ("sqrt", "rsqrt"):
        fn = torch.sqrt if name == "sqrt" else torch.rsqrt
        return [
            Goal(
                name, "max rel on [1e-6, 1e4] (log grid)", max_rel_on(model, fn, 1e-6, 1e4, points), 0.01, "%"
            )
        ]
    if name == "reciprocal":
        value = max_rel_on(model, torch.reciprocal, 1e-3, 1e5, points)
        return [Goal(name, "max rel on [1e-3, 1e5] (log grid)", value, 0.01, "%")]
    if name == "exp":
        return [
            Goal(name, "max abs on [-16, 0]", max_abs_on(model, torch.exp, -16.0, 0.0, points), 0.01, "e")
        ]
    return []


@dataclass
class TailRow:
    """The approximator one decade beyond one edge of its domain (information, no goal)."""

    target: str
    side: str
    span: tuple[float, float]
    rule: str
    jump: float
    max_abs: float
    max_rel: float


def tail_rule(approx: NeuronArrayApproximator, side: str) -> str:
    """The linear tail on ``side`` ("below" / "above") of the full domain, as a formula in ``x``."""
    inner = approx.right_tail if side == "above" or approx.symmetry != "none" else approx.left_tail
    a, b = (float(v) for v in inner)
    z = "x" if approx.symmetry == "none" or side == "above" else "abs(x)"
    linear = f"{a:.4g}·{z} {'-' if b < 0 else '+'} {abs(b):.4g}"
    return f"-({linear})" if approx.symmetry == "odd" and side == "below" else linear


def beyond_spans(lo: float, hi: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """One decade beyond each edge: ``[lo/10, lo]`` and ``[hi, 10 hi]`` on log domains, else out to 10x
    the edge's magnitude (one unit for an edge at 0)."""
    if lo > 0 and hi / lo > 1e3:
        return (lo / 10, lo), (hi, hi * 10)
    below = lo - 9 * abs(lo) if lo != 0 else lo - 1
    above = hi + 9 * abs(hi) if hi != 0 else hi + 1
    return (below, lo), (hi, above)


def tail_rows(
    name: str, approx: NeuronArrayApproximator, fn: Callable[[Tensor], Tensor], spec: TargetSpec, points: int
) -> list[TailRow]:
    model = approximator_model(approx)
    lo, hi = spec.full_domain
    rows = []
    for side, span, edge in zip(("below", "above"), beyond_spans(lo, hi), (lo, hi), strict=True):
        x = make_grid(*span, points)
        x = x[x != as_float32(torch.tensor(edge, dtype=torch.float64))]
        y, f = model(x)[0], fn(x)
        e32 = torch.tensor([edge], dtype=torch.float32)
        outward = torch.tensor([-math.inf if side == "below" else math.inf], dtype=torch.float32)
        pair = torch.cat([e32, torch.nextafter(e32, outward)]).to(torch.float64)
        y_edge = model(pair)[0]
        rows.append(
            TailRow(
                target=name,
                side=side,
                span=span,
                rule=tail_rule(approx, side),
                jump=(y_edge[1] - y_edge[0]).abs().item(),
                max_abs=(y - f).abs().max().item(),
                max_rel=max_rel_if_defined(y, f),
            )
        )
    return rows


@dataclass
class TargetResult:
    name: str
    spec: TargetSpec
    approx: NeuronArrayApproximator
    source: str
    figures: Figures
    distribution: str
    goals: list[Goal]
    spike_dev: float
    evaluate_max_abs: float
    evaluate_rel_l2_diff: float
    tails: list[TailRow]


def run_targets(grid_points: int, samples: int, seed: int) -> list[TargetResult]:
    loader = pretrained_loader()
    print(
        "approximators from: "
        + (
            "bt_neurons.approximators.load_pretrained"
            if loader
            else "fit_approximator(name) (no load_pretrained)"
        )
    )
    results = []
    for name, spec in BUILTIN_TARGETS.items():
        approx, source = load_approximator(name, loader)
        model = approximator_model(approx)
        dist_name, sampler = spec.sampler()
        figures = measure(
            model, spec.fn, spec.full_domain, sampler, grid_points=grid_points, samples=samples, seed=seed
        )
        report = evaluate(approx, spec.fn, spec.full_domain, spec.sampler(), seed=seed)
        result = TargetResult(
            name=name,
            spec=spec,
            approx=approx,
            source=source,
            figures=figures,
            distribution=dist_name,
            goals=target_goals(name, model, grid_points, samples, seed),
            spike_dev=spike_path_deviation(approx, spec),
            evaluate_max_abs=report.max_abs,
            evaluate_rel_l2_diff=abs(report.rel_l2 - figures.rel_l2),
            tails=tail_rows(name, approx, spec.fn, spec, 100_001),
        )
        results.append(result)
        print(f"  {name}: {source}; P={approx.neurons}, T={approx.T}")
    return results


@dataclass
class Contender:
    label: str
    cost: str
    parameters: int
    figures: Figures
    tail_right: float
    tail_left: float
    note: str = ""
    additions: float = 0.0  # mean additions per evaluation besides the spikes (bt's bias or tail)

    @property
    def energy_pj(self) -> float:
        """Each spike is one accumulate of its amplitude, each extra addition one more: x 0.9 pJ."""
        return (self.figures.spikes_mean + self.additions) * ADD_PJ


def silu_contender(
    label: str, cost: str, parameters: int, model: Model, args: argparse.Namespace
) -> Contender:
    figures = measure(
        model,
        F.silu,
        (-8.0, 8.0),
        normal_sampler,
        grid_points=args.grid,
        samples=args.samples,
        seed=args.seed,
    )
    return Contender(
        label,
        cost,
        parameters,
        figures,
        max_abs_on(model, F.silu, 8.0, 1000.0, args.grid),
        max_abs_on(model, F.silu, -1000.0, -8.0, args.grid),
    )


def run_fs(args: argparse.Namespace) -> dict[int, tuple[list[FSResult], FSResult]]:
    """Train the three FS variants at every ``K`` of `FS_KS`; the lowest held-out MSE is selected."""
    out = {}
    for K in FS_KS:
        results = []
        for v in silu_variants(K):
            r = train_fs(v, args.fs_steps, args.seed)
            print(
                f"  FS K={K} {v.key}: {args.fs_steps} steps in {r.seconds:.1f} s, held-out MSE {r.val_mse:.3e}"
            )
            results.append(r)
        out[K] = (results, min(results, key=lambda r: r.val_mse))
    return out


def bt_contender(label: str, approx: NeuronArrayApproximator, args: argparse.Namespace) -> Contender:
    c = silu_contender(
        label, f"{approx.neurons} x {approx.T}", approx.parameter_count, approximator_model(approx), args
    )
    xs = as_float32(normal_sampler(args.samples, torch.Generator().manual_seed(args.seed))).to(torch.float32)
    c.additions = approx.base_additions_per_input(xs).double().mean().item()
    return c


def matched_parameter_fit(budget: int, steps_cap: int) -> NeuronArrayApproximator:
    """The binary SiLU with the lowest relative L2 among (P, T) whose parameter count is <= ``budget``."""
    best = None
    for P in range(1, 17):
        for T in range(1, steps_cap + 1):
            if (P + 1) + P * T + P + T + 4 > budget:
                continue
            approx = fit_approximator("silu", neurons=P, timesteps=T, coding="binary", steps=0).approximator
            err = rel_l2_under(approximator_model(approx), F.silu, normal_sampler, 50_000, 1)
            if best is None or err < best[0]:
                best = (err, approx)
    assert best is not None, f"no binary SiLU fits in {budget} parameters"
    return best[1]


def fs_comparison(
    args: argparse.Namespace, fs: dict[int, tuple[list[FSResult], FSResult]]
) -> dict[int, list[Contender]]:
    """Per ``K``: the selected FS neuron, bt at the same mean spikes (16 neurons), bt at <= its parameters."""
    rows = {}
    for K, (_, selected) in fs.items():
        fs_c = silu_contender(selected.variant.label, f"1 x {K}", 3 * K, fs_model(selected.params), args)
        budget = fs_c.figures.spikes_mean
        spikes_label = f"bt-neurons binary SiLU, spikes <= FS's {budget:.2f}"
        try:
            spikes_fit = fit_approximator("silu", neurons=16, spikes=budget, coding="binary").approximator
        except ValueError:  # fewer spikes than one binary step costs: the one-step fit, the closest
            spikes_fit = fit_approximator("silu", neurons=16, timesteps=1, coding="binary").approximator
            spikes_label = f"bt-neurons binary SiLU, 1 step (its fewest spikes; FS fires {budget:.2f})"
        params_fit = matched_parameter_fit(3 * K, K)
        rows[K] = [
            fs_c,
            bt_contender(spikes_label, spikes_fit, args),
            bt_contender(f"bt-neurons binary SiLU, parameters <= FS's {3 * K}", params_fit, args),
        ]
        for c in rows[K]:
            print(f"  K={K} {c.label}: rel L2 {c.figures.rel_l2:.3%}, spikes {c.figures.spikes_mean:.2f}")
    return rows


# ----------------------------------------------------------------------------- reporting
def fmt_pct(v: float) -> str:
    return f"{100 * v:.3g}%" if math.isfinite(v) else "n/a"


def fmt_e(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) else "n/a"


def fmt_domain(lo: float, hi: float) -> str:
    def one(v: float) -> str:
        return f"{v:g}"

    return f"[{one(lo)}, {one(hi)}]"


def fmt_goal_value(goal: Goal) -> str:
    return fmt_pct(goal.value) if goal.fmt == "%" else fmt_e(goal.value)


def fmt_goal_limit(goal: Goal) -> str:
    return fmt_pct(goal.limit) if goal.fmt == "%" else f"{goal.limit:g}"


def md_table(rows: list[list[str]], align: list[str]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def targets_table(results: list[TargetResult]) -> str:
    head = ["target", "P", "T", "domain", "max abs", "RMSE", "max rel", "rel L2 (distribution)"]
    head += ["spikes/eval mean (max)", "goal", "verdict"]
    rows = [head]
    for r in results:
        f = r.figures
        t_ok = r.approx.T <= MAX_STEPS
        # every target: at most MAX_SPIKES spikes per evaluation; SiLU and GELU: at most MAX_NEURONS neurons
        texts = [f"{g.text} <= {fmt_goal_limit(g)}" for g in r.goals] + [f"spikes/eval <= {MAX_SPIKES}"]
        ok = all(g.passed for g in r.goals) and t_ok and f.spikes_mean <= MAX_SPIKES
        if r.name in ("silu", "gelu"):
            texts.append(f"P <= {MAX_NEURONS}")
            ok = ok and r.approx.neurons <= MAX_NEURONS
        goal = "; ".join(texts)
        v = verdict(ok)
        max_rel = fmt_pct(f.max_rel) + (" (†)" if math.isnan(f.max_rel) else "")
        rows.append(
            [
                r.name,
                str(r.approx.neurons),
                str(r.approx.T),
                fmt_domain(*r.spec.full_domain),
                fmt_e(f.max_abs),
                fmt_e(f.rmse),
                max_rel,
                f"{fmt_pct(f.rel_l2)} ({r.distribution})",
                f"{f.spikes_mean:.2f} ({f.spikes_max})",
                goal,
                v,
            ]
        )
    return md_table(rows, ["---", "---:", "---:", "---", "---:", "---:", "---:", "---", "---:", "---", "---"])


def goal_lines(results: list[TargetResult]) -> list[str]:
    lines = []
    for r in results:
        for g in r.goals:
            line = f"- {g.target}: {g.text} = {fmt_goal_value(g)} (goal <= {fmt_goal_limit(g)}): "
            lines.append(line + verdict(g.passed) + (f" ({g.detail})" if g.detail else ""))
    steps = ", ".join(f"{r.name} {r.approx.T}" for r in results)
    all_ok = all(r.approx.T <= MAX_STEPS for r in results)
    lines.append(f"- at most {MAX_STEPS} time steps per neuron, every target: {verdict(all_ok)} (T: {steps})")
    spikes = ", ".join(f"{r.name} {r.figures.spikes_mean:.2f}" for r in results)
    spikes_ok = all(r.figures.spikes_mean <= MAX_SPIKES for r in results)
    lines.append(
        f"- at most {MAX_SPIKES} spikes per evaluation (mean on its distribution), every target: "
        f"{verdict(spikes_ok)} ({spikes})"
    )
    sizes = [r for r in results if r.name in ("silu", "gelu")]
    sizes_ok = all(r.approx.neurons <= MAX_NEURONS for r in sizes)
    lines.append(
        f"- at most {MAX_NEURONS} neurons for SiLU and GELU: {verdict(sizes_ok)} "
        f"({', '.join(f'{r.name} {r.approx.neurons}' for r in sizes)})"
    )
    return lines


def check_lines(results: list[TargetResult], grid_points: int) -> list[str]:
    worst_dev = max(results, key=lambda r: r.spike_dev)
    ratio = [r.evaluate_max_abs / r.figures.max_abs for r in results if r.figures.max_abs > 0]
    rel_diff = max(r.evaluate_rel_l2_diff for r in results)
    sources = sorted({r.source for r in results})
    return [
        "Approximators from: " + "; ".join(f"`{s}`" for s in sources) + ".",
        f"Spike path summed over T vs count path, 4097 inputs from 25% below to 25% above each domain: "
        f"max deviation (relative to max(|y|, 1)) {worst_dev.spike_dev:.2g} ({worst_dev.name}).",
        f"`metrics.evaluate` (20,001-point grid, same draws): relative L2 equal to within {rel_diff:.1g}; "
        f"its max abs error is {min(ratio):.3f}-{max(ratio):.3f} times the {grid_points:,}-point grid's "
        "figure.",
    ]


def tails_table(results: list[TargetResult]) -> str:
    rows = [
        [
            "target",
            "side",
            "x range (edge excluded)",
            "tail (a synapse)",
            "jump at the edge",
            "max abs",
            "max rel",
        ]
    ]
    for r in results:
        for t in r.tails:
            rows.append(
                [
                    t.target,
                    t.side,
                    fmt_domain(*t.span),
                    f"`{t.rule}`",
                    fmt_e(t.jump),
                    fmt_e(t.max_abs),
                    fmt_pct(t.max_rel),
                ]
            )
    return md_table(rows, ["---", "---", "---", "---", "---:", "---:", "---:"])


def fs_table(contenders: list[Contender]) -> str:
    head = ["contender", "neurons x steps", "parameters", "rel L2, x ~ N(0,1)", "max abs on [-8, 8]"]
    head += [
        "RMSE on [-8, 8]",
        "spikes/eval mean (max)",
        "+ additions",
        "energy/eval",
        "max abs on [8, 1000]",
    ]
    rows = [head]
    for c in contenders:
        f = c.figures
        rows.append(
            [
                c.label,
                c.cost,
                str(c.parameters),
                fmt_pct(f.rel_l2),
                fmt_e(f.max_abs),
                fmt_e(f.rmse),
                f"{f.spikes_mean:.2f} ({f.spikes_max})",
                f"{c.additions:.2f}",
                f"{c.energy_pj:.2f} pJ",
                fmt_e(c.tail_right),
            ]
        )
    return md_table(rows, ["---", "---", "---:", "---:", "---:", "---:", "---:", "---:", "---:", "---:"])


def ratio_phrase(
    metric: str, bt: float, fs: float, lower_better: bool = True, fmt: Callable[[float], str] = fmt_e
) -> str:
    if bt == fs:
        return f"{metric}: equal ({fmt(bt)})"
    bt_wins = (bt < fs) == lower_better
    winner = "bt-neurons" if bt_wins else "FS"
    big, small = max(bt, fs), min(bt, fs)
    if small <= 0:
        ratio = "infinitely"
    else:
        ratio = f"{big / small:.1f}x" if big / small < 1e3 else f"{big / small:.2g}x"
    return f"{metric}: {winner} better by {ratio} (bt-neurons {fmt(bt)} vs FS {fmt(fs)}; lower is better)"


def fs_verdict(rows: dict[int, list[Contender]]) -> list[str]:
    """One line per K: how bt at matched spikes and at matched parameters compare with the FS neuron."""
    lines = []
    for K, (fs, at_spikes, at_params) in rows.items():
        f = fs.figures
        parts = []
        for c, what in ((at_spikes, "matched spikes"), (at_params, "matched parameters")):
            b = c.figures
            parts.append(
                f"at {what} ({c.cost}, {c.parameters} parameters, {b.spikes_mean:.2f} spikes): "
                f"rel L2 {ratio_phrase('', b.rel_l2, f.rel_l2, fmt=fmt_pct).removeprefix(': ')}, "
                f"max abs {ratio_phrase('', b.max_abs, f.max_abs).removeprefix(': ')}, "
                f"energy {c.energy_pj / fs.energy_pj:.2f}x the FS neuron's"
            )
        lines.append(
            f"- K = {K} (FS: {f.spikes_mean:.2f} spikes, rel L2 {fmt_pct(f.rel_l2)}): " + "; ".join(parts)
        )
    return lines


def render_section(
    args: argparse.Namespace,
    results: list[TargetResult],
    fs: dict[int, tuple[list[FSResult], FSResult]],
    shipped: Contender,
    rows: dict[int, list[Contender]],
    info: dict[str, str],
    command: str,
    date: str,
    runtime: float,
    front: list,
) -> str:
    silu = next(r for r in results if r.name == "silu")
    fs_lines = [
        f"- {r.variant.label}: held-out MSE {r.val_mse:.3e}, trained in {r.seconds:.1f} s"
        + (" (**selected**)" if r is selected else "")
        for results_k, selected in fs.values()
        for r in results_k
    ]
    tables = []
    for K, contenders in rows.items():
        tables += [f"K = {K}:", "", fs_table(contenders), ""]
    parts = [
        MARK_START,
        SECTION_TITLE,
        "",
        f"CPU, float32 inputs, count path; targets evaluated in float64 at the same float32 inputs. "
        f"max abs, RMSE and max rel on a {args.grid:,}-point grid over the domain (log-spaced for "
        f"sqrt, rsqrt and reciprocal); relative L2 `||y - f|| / ||f||` and spikes per evaluation "
        f"over {args.samples:,} draws of the target's distribution (seed {args.seed}); max spikes over "
        f"grid and draws. Spikes count every spike the routed neuron fires; the cell's base value is a bias "
        f"the routing synapse adds (one addition, no spike); inputs beyond the domain take the linear tail "
        f"(a synapse) and fire none. "
        f"Goals are checked on their own grids and distributions, not the targets' defaults.",
        "",
        targets_table(results),
        "",
        "(†) not defined: the target crosses or touches 0 on its domain (same rule as `metrics.evaluate`). "
        "Next to x = 0 a cell holds its base value (silu(0) comes out as "
        f"{silu.approx.count(torch.zeros(1)).item():.3g}, tanh(0) as 0 by symmetry), so the relative error "
        "there is unbounded and says nothing useful.",
        "",
        "Goals:",
        "",
        *goal_lines(results),
        "",
        "Checks (untimed):",
        "",
        *(f"- {line}" for line in check_lines(results, args.grid)),
        "",
        "Beyond the domain (information, no goal): one decade past each edge (log domains) or out to 10x "
        "the edge's magnitude (one unit past an edge at 0); the jump is |y(edge) - y(next float32 "
        "outward)|; max rel n/a where the target is not bounded away from 0 there.",
        "",
        tails_table(results),
        "",
        f"### SiLU: bt-neurons vs the few-spike neuron (K = {', '.join(map(str, FS_KS))})",
        "",
        "FS neuron (Stöckl & Maass, Nature Machine Intelligence 2021; `benchmarks/fs_neuron.py`): "
        "`v(1) = x`; `z(t) = H(v(t) - T(t))`, `v(t+1) = v(t) - h(t) z(t)`, output `sum_t d(t) z(t)`, "
        f"t = 1..K. Trained with Adam (lr 1e-2, cosine decay, batch 8192, {args.fs_steps} steps, "
        f"seed {args.seed}) on MSE against SiLU, x drawn half from N(0, 1) and half from U[-8, 8], with a "
        "straight-through surrogate gradient (hard step forward, derivative of sigmoid((v - T) / tau) "
        "backward, tau annealed 0.5 -> 0.05); evaluated with the hard step. At each K the variant with the "
        "lowest MSE on held-out draws of the training mixture is compared:",
        "",
        *fs_lines,
        "",
        "Against it, at each K: the bt-neurons binary-coded SiLU with 16 neurons fitted to a spike budget "
        "equal to the FS neuron's measured mean spikes on N(0, 1) (matched spikes), and the best binary "
        "SiLU whose parameter count (edges, amplitudes, biases, shared thresholds, tails) is at most the "
        "FS neuron's 3K (matched parameters). Energy per evaluation: (spikes + other additions) x "
        f"{ADD_PJ} pJ, each spike one accumulate of its amplitude; bt's other addition is the cell bias "
        "(or the tail's linear map), carried by the routing synapse. The shipped SiLU, for reference:",
        "",
        fs_table([shipped]),
        "",
        *tables,
        "Verdict:",
        "",
        *fs_verdict(rows),
        "",
        "### SiLU: the Pareto front of binary coding (error, spikes, neurons)",
        "",
        f'`pareto_front("silu", neurons={PARETO_NEURONS}, spikes={PARETO_BUDGETS}, steps=0)` (curvature '
        "cells, no edge refinement), what `bt-fit silu --pareto` writes:",
        "",
        pareto_table(front),
        "",
        "Reference implementation, for context (reported in the project's design notes, not re-measured): "
        "its SiLU approximator saturates at about 4.97 and has 18% relative L2 error on N(0, 1); its Sqrt "
        "approximator returns 0 outside [1e-6, 1e-2].",
        "",
        f"`bt-fit silu` with the default settings ({silu.approx.neurons} neurons x {silu.approx.T} steps, "
        f"binary coding, edges refined), in a "
        f"subprocess, including Python start-up and writing the three files: {args.bt_fit_seconds:.1f} s "
        f"wall clock (goal <= 60 s on 2 CPU cores): {verdict(args.bt_fit_seconds <= 60)}.",
        "",
        f"Command: `{command}`  ",
        f"Date: {date}  ",
        f"Runtime: {runtime:.0f} s  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
        MARK_END,
    ]
    return "\n".join(parts) + "\n"


def time_bt_fit_silu() -> float:
    """Wall-clock seconds of the README's main command ``bt-fit silu`` (default settings), in a subprocess."""
    import subprocess
    import sys
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "bt_neurons.approximators.cli", "silu", "--out", out, "--quiet"],
            check=True,
            capture_output=True,
        )
        return time.perf_counter() - start


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--write-results", type=Path, metavar="PATH", help="update the section in this markdown file"
    )
    p.add_argument("--fs-steps", type=int, default=4000, metavar="N", help="FS training steps (default 4000)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the FS training and evaluation draws (default 0)"
    )
    p.add_argument("--grid", type=int, default=1_000_001, help="grid points per domain (default 1,000,001)")
    p.add_argument("--samples", type=int, default=200_000, help="draws per distribution (default 200,000)")
    args = p.parse_args(argv)
    if args.fs_steps < 0 or args.grid < 2 or args.samples < 1:
        p.error("--fs-steps must be >= 0, --grid >= 2 and --samples >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(THREADS)
    started = time.perf_counter()
    command = shlex.join(sys.orig_argv)
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info(THREADS)

    results = run_targets(args.grid, args.samples, args.seed)
    silu = next(r for r in results if r.name == "silu")
    fs = run_fs(args)
    shipped = bt_contender(f"bt-neurons SiLU ({silu.source.split(' ')[0]})", silu.approx, args)
    rows = fs_comparison(args, fs)
    front = pareto_front("silu", neurons=PARETO_NEURONS, spikes=PARETO_BUDGETS, steps=0)
    print(pareto_table(front))
    runtime = time.perf_counter() - started

    print()
    print(f"{SECTION_TITLE[3:]}")
    print(targets_table(results))
    print()
    print("\n".join(goal_lines(results)))
    print()
    print("\n".join(check_lines(results, args.grid)))
    print()
    print("Beyond the domain (information, no goal)")
    print(tails_table(results))
    print()
    for K, contenders in rows.items():
        print(f"SiLU vs few-spike neuron (K = {K})")
        print(fs_table(contenders))
    print("\n".join(fs_verdict(rows)))
    print(f"\nCommand: {command}\nDate: {date}\nRuntime: {runtime:.0f} s")
    for k, v in info.items():
        print(f"{k}: {v}")

    args.bt_fit_seconds = time_bt_fit_silu()
    print(f"bt-fit silu (default settings): {args.bt_fit_seconds:.1f} s")
    if args.write_results is not None:
        section = render_section(args, results, fs, shipped, rows, info, command, date, runtime, front)
        write_section(args.write_results, "bench_approximators", section)
        print(f"\nwrote section to {args.write_results}")


if __name__ == "__main__":
    main()
