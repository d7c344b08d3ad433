r"""Fit an approximator's neurons to a target function.

``fit_approximator`` trains the per-step thresholds and amplitudes of every
neuron of a `NeuronArrayApproximator`:

1. **Initialisation.** In each neuron's cell the thresholds are placed where
   the target has changed by equal amounts (equal steps of
   $\int |f'|$), and the amplitudes make each level the mean of the
   target between two thresholds. This is already a good staircase.
2. **Gradient descent on the thresholds.** A staircase is flat almost
   everywhere, but its *expected* squared error over a cell is a smooth
   function of its breakpoints, so no surrogate is needed: moving breakpoint
   $b_j$ between levels $L_{j-1}$ and $L_j$ changes the
   error at the rate
   $\rho\,w(b_j)\,[(f(b_j) - L_{j-1})^2 - (f(b_j) - L_j)^2]$
   (the Lloyd-Max condition as a gradient; $\rho$ is the density of
   points, $w$ the weight, $1/f^2$ for ``metric="rel"``). Adam
   follows this exact gradient; at each step the levels are re-solved in
   closed form on a dense fixed grid of every cell.
3. **Projection.** With the thresholds fixed, the amplitudes that minimise
   the exact (step-function) error are solved in closed form (each level is
   a weighted mean). The result of step 2 is kept only if it beats the
   initialisation on the exact error; the settings record both losses.

For smooth targets on fine arrays (every built-in) the initialisation is
already optimal to within the grid's resolution and the descent changes the
error by less than 0.1%; it matters for coarse arrays and wiggly targets
(``sin(3x) + 0.3x`` with 8 neurons x 8 steps: 16% lower squared error).

With ``coding="binary"`` (every built-in since bt-neurons 0.6) the neurons
reset and their spikes are a binary expansion; the fit is then the closed
form of `binary_fit`: cells placed from the target's curvature and the input
distribution (``partition="curvature"``) or by a named partition, refined by
coordinate descent on the edges (``steps > 0``), and least-squares biases
and amplitudes per cell. A spike budget (``spikes``) picks the most steps
whose mean spike count on the input distribution stays within it.

Deterministic: the same settings give the same parameters on the same machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .metrics import ApproximationReport, evaluate
from .neuron_array import NeuronArrayApproximator
from .partition import make_edges
from .targets import TargetSpec

__all__ = ["fit_approximator", "FitResult", "FIT_PARTITIONS"]

#: The partitions the fitter accepts: `partition.make_edges`'s and ``"curvature"`` (placed from the target).
FIT_PARTITIONS = ("linear", "power", "log", "curvature")


@dataclass
class FitResult:
    """What `fit_approximator` returns.

    Attributes:
        approximator: the fitted module (count path).
        report: its errors (`ApproximationReport`).
        settings: everything needed to reproduce the fit.
    """

    approximator: NeuronArrayApproximator
    report: ApproximationReport
    settings: dict


def _cell_points(edges: Tensor, u: Tensor) -> Tensor:
    """``z`` for local currents ``u`` ``[P, S]`` in the cells of ``edges`` (float64)."""
    lo, hi = edges[:-1].unsqueeze(1), edges[1:].unsqueeze(1)
    return lo + (u - 1) * (hi - lo)


def _levels(y: Tensor, w: Tensor, seg: Tensor, T: int) -> Tensor:
    """Weighted mean of ``y`` in each of the ``T`` segments ``seg`` ``[P, S]`` -> ``[P, T]``."""
    P = y.shape[0]
    num = torch.zeros(P, T, dtype=y.dtype).scatter_add_(1, seg, w * y)
    den = torch.zeros(P, T, dtype=y.dtype).scatter_add_(1, seg, w)
    mean_all = (w * y).sum(1, keepdim=True) / w.sum(1, keepdim=True)
    levels = torch.where(den > 0, num / den.clamp_min(1e-300), torch.nan)
    # empty segments take the level below them (or the cell mean)
    for t in range(T):
        prev = levels[:, t - 1 : t] if t else mean_all
        levels[:, t : t + 1] = torch.where(torch.isnan(levels[:, t : t + 1]), prev, levels[:, t : t + 1])
    return levels


def _amplitudes_from_levels(levels: Tensor) -> Tensor:
    return torch.cat([levels[:, :1], levels[:, 1:] - levels[:, :-1]], 1)


def _weights(y: Tensor, metric: str) -> Tensor:
    if metric == "rel":
        return 1.0 / y.abs().clamp_min(1e-30) ** 2
    return torch.ones_like(y)


def _hard_fit(thr: Tensor, u: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Optimal amplitudes for sorted thresholds ``thr`` ``[P, T]`` (step 0 < 1) and the loss."""
    T = thr.shape[1]
    seg = (u.unsqueeze(-1) >= thr.unsqueeze(1)).sum(-1) - 1  # [P, S], 0 .. T-1
    levels = _levels(y, w, seg.clamp_min(0), T)
    yhat = levels.gather(1, seg.clamp_min(0))
    loss = (w * (yhat - y) ** 2).sum() / (w * y**2).sum().clamp_min(1e-300)
    return _amplitudes_from_levels(levels), loss


def _initial_thresholds(u: Tensor, y: Tensor, T: int) -> Tensor:
    """Thresholds at equal steps of the cumulative variation of ``y`` in each cell."""
    P, S = y.shape
    var = torch.cat([torch.zeros(P, 1, dtype=y.dtype), (y[:, 1:] - y[:, :-1]).abs().cumsum(1)], 1)
    total = var[:, -1:]
    flat = total <= 1e-300
    frac = torch.where(
        flat, torch.linspace(0, 1, S, dtype=y.dtype).expand(P, S), var / total.clamp_min(1e-300)
    )
    levels = torch.arange(1, T, dtype=y.dtype) / T  # T-1 breakpoints
    idx = torch.searchsorted(frac.contiguous(), levels.expand(P, T - 1).contiguous()).clamp(1, S - 1)
    f0, f1 = frac.gather(1, idx - 1), frac.gather(1, idx)
    u0, u1 = u.gather(1, idx - 1), u.gather(1, idx)
    r = ((levels - f0) / (f1 - f0).clamp_min(1e-300)).clamp(0, 1)
    inner = u0 + r * (u1 - u0)
    return torch.cat([torch.full((P, 1), 0.5, dtype=y.dtype), inner], 1)


def fit_approximator(
    target: str | TargetSpec | Callable[[Tensor], Tensor],
    domain: tuple[float, float] | None = None,
    *,
    neurons: int | None = None,
    timesteps: int | None = None,
    partition: str | list[float] | None = None,
    symmetry: str | None = None,
    metric: str | None = None,
    steps: int = 300,
    seed: int = 0,
    samples_per_cell: int = 96,
    lr: float = 2e-3,
    device: str | torch.device = "cpu",
    progress: bool = False,
    name: str | None = None,
    coding: str | None = None,
    spikes: float | None = None,
) -> FitResult:
    """Fit a `NeuronArrayApproximator` to ``target``.

    Args:
        target: a built-in name (``"silu"``, ...), a `TargetSpec`, or a
            function of a float64 tensor returning a tensor of the same shape.
        domain: ``(lo, hi)`` covered by neurons (required for a plain function;
            for even / odd targets, the range of ``|x|``).
        neurons: number of neurons ``P``.
        timesteps: steps per neuron ``T`` (spikes per evaluation are at most ``T``).
        partition: ``"linear"``, ``"log"``, ``"power"``, ``"curvature"`` (cells
            placed where the target bends and the inputs fall; binary coding
            only) or explicit edges.
        symmetry: ``"none"``, ``"even"`` or ``"odd"``.
        metric: ``"abs"`` or ``"rel"``: which error the fit minimises.
        steps: gradient-descent steps (0 keeps the initialisation); in binary
            coding, any ``steps > 0`` refines the cell edges by coordinate descent.
        seed: seed of the input samples the report's relative L2 and spike
            figures are measured on (the fit itself uses a fixed grid and no
            randomness, so it is deterministic).
        samples_per_cell: points per cell and step.
        lr: Adam learning rate of the thresholds (which live in ``[1, 2)``).
        device: where to fit (``"cpu"`` or ``"cuda"``).
        progress: show a tqdm progress bar.
        name: label of the result (default: the target's name).
        coding: ``"level"`` or ``"binary"`` (default: the target's; ``"binary"``
            when ``spikes`` is given).
        spikes: a budget of mean spikes per evaluation on the input
            distribution (binary coding): ``T`` becomes the most steps within
            it (at most ``timesteps`` when that is given, else 64).

    Returns:
        A `FitResult`.

    Raises:
        ValueError: on a bad domain, a target that is not finite on its
            domain, or bad settings.
        KeyError: for an unknown built-in name.
    """
    from bt_neurons import _checks

    from .neuron_array import CODINGS, SYMMETRIES
    from .targets import get_target

    # every setting is checked before any work is done
    if domain is not None:
        domain = _checks.check_interval("domain", domain)
    if neurons is not None:
        neurons = _checks.check_timesteps("neurons", neurons)
    if timesteps is not None:
        timesteps = _checks.check_int("timesteps", timesteps, 1, 64)  # level coding needs 2 (below)
    if symmetry is not None:
        _checks.check_choice("symmetry", symmetry, SYMMETRIES)
    seed = _checks.check_int("seed", seed)
    samples_per_cell = _checks.check_int("samples_per_cell", samples_per_cell, minimum=1)
    _checks.check_number("lr", lr)
    _checks.check_positive("lr", lr)
    _checks.check_bool("progress", progress)
    if coding is not None:
        _checks.check_choice("coding", coding, CODINGS)
    if spikes is not None:
        spikes = _checks.check_number("spikes", spikes)
        _checks.check_positive("spikes", spikes)
        if coding == "level":
            raise ValueError("spikes (a spike budget) needs coding='binary'")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if isinstance(target, str):
        spec = get_target(target)
    elif isinstance(target, TargetSpec):
        spec = target
    elif callable(target):
        if domain is None:
            raise ValueError("domain must be given for a function target, e.g. domain=(-4, 4)")
        spec = TargetSpec(getattr(target, "__name__", "custom"), target, tuple(domain))
    else:
        raise TypeError(f"target must be a name, a TargetSpec or a callable, got {type(target).__name__}")
    if domain is not None:
        spec = _replace(spec, domain=domain)
    overrides = {
        "neurons": neurons,
        "timesteps": timesteps,
        "partition": partition,
        "symmetry": symmetry,
        "metric": metric,
        "coding": coding or ("binary" if spikes is not None else None),
    }
    spec = _replace(spec, **{k: v for k, v in overrides.items() if v is not None})
    if spec.metric not in ("abs", "rel"):
        raise ValueError(f"metric must be 'abs' or 'rel', got {spec.metric!r}")
    _checks.check_choice("coding", spec.coding, CODINGS)
    if spec.partition == "curvature" and spec.coding != "binary":
        raise ValueError("partition='curvature' is fitted for coding='binary' only")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must name a torch device ('cpu', 'cuda', 'cuda:1'), got {device!r}"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available")

    if spec.coding == "binary":
        T = _checks.check_int("timesteps", spec.timesteps, 1, 64)
        _checks.check_choice("symmetry", spec.symmetry, SYMMETRIES)
        return _fit_binary(spec, T, spikes, steps, seed, name, cap=timesteps is not None)
    T = _checks.check_int("timesteps", spec.timesteps, 2, 64)  # a TargetSpec's own settings too
    _checks.check_choice("symmetry", spec.symmetry, SYMMETRIES)
    edges = make_edges(spec.domain, spec.neurons, spec.partition).to(device)
    # keep the float32 edges the module will route with
    edges = edges.to(torch.float32).to(torch.float64)
    P = len(edges) - 1

    def target_values(z: Tensor) -> Tensor:
        return _checked_values(spec, z)

    # dense, fixed grid for initialisation and the exact projection
    S = samples_per_cell
    grid_u = (1 + (torch.arange(4 * S, dtype=torch.float64) + 0.5) / (4 * S)).to(device).expand(P, 4 * S)
    grid_y = target_values(_cell_points(edges, grid_u))
    grid_w = _weights(grid_y, spec.metric)
    thr0 = _initial_thresholds(grid_u, grid_y, T)
    amp0, loss0 = _hard_fit(thr0, grid_u, grid_y, grid_w)

    thr, amp, best = thr0.clone(), amp0.clone(), loss0
    if steps:
        theta = thr0[:, 1:].clone().requires_grad_()
        opt = torch.optim.Adam([theta], lr=lr)
        scale = (grid_w * grid_y**2).sum().clamp_min(1e-300)
        iterator = range(steps)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, desc=f"fitting {spec.name}", unit="step", leave=False)
        for _ in iterator:
            with torch.no_grad():
                cur = torch.cat([thr0[:, :1], theta], 1)
                # levels in closed form on the dense grid, then the exact gradient
                seg = ((grid_u.unsqueeze(-1) >= cur.unsqueeze(1)).sum(-1) - 1).clamp_min(0)
                levels = _levels(grid_y, grid_w, seg, T)
                fb = target_values(_cell_points(edges, theta.detach()))
                wb = _weights(fb, spec.metric)
                # d E / d b_j = density * w(b_j) * ((f(b_j) - L_{j-1})^2 - (f(b_j) - L_j)^2)
                grad = wb * ((fb - levels[:, :-1]) ** 2 - (fb - levels[:, 1:]) ** 2) * (4 * S) / scale
            theta.grad = grad
            opt.step()
            with torch.no_grad():
                theta.copy_(torch.sort(theta.clamp(1.0, 2.0), dim=1).values)
        thr1 = torch.cat([thr0[:, :1], theta.detach()], 1)
        amp1, loss1 = _hard_fit(thr1, grid_u, grid_y, grid_w)
        if loss1 < best:
            thr, amp, best = thr1, amp1, loss1

    approx = NeuronArrayApproximator(
        edges.to(torch.float32).cpu(),
        T,
        symmetry=spec.symmetry,
        left_tail=spec.left_tail,
        right_tail=spec.right_tail,
        thresholds=thr.to(torch.float32).cpu(),
        amplitudes=amp.to(torch.float32).cpu(),
        name=name or spec.name,
    )
    report = evaluate(approx, spec.fn, spec.full_domain, spec.sampler(), seed=seed)
    settings = {
        "target": spec.name,
        "domain": list(spec.domain),
        "neurons": spec.neurons,
        "timesteps": T,
        "partition": spec.partition if isinstance(spec.partition, str) else list(spec.partition),
        "symmetry": spec.symmetry,
        "metric": spec.metric,
        "coding": "level",
        "left_tail": list(spec.left_tail),
        "right_tail": list(spec.right_tail),
        "steps": steps,
        "seed": seed,
        "samples_per_cell": samples_per_cell,
        "lr": lr,
        "initial_loss": loss0.item(),
        "final_loss": best.item(),
        "used_gradient_descent_result": bool(steps) and not torch.equal(thr, thr0),
    }
    return FitResult(approx, report, settings)


def _checked_values(spec: TargetSpec, z: Tensor) -> Tensor:
    """The target at ``z`` in float64; a clear ``ValueError`` for a wrong shape or a non-finite value."""
    y = spec.fn(z)
    if not isinstance(y, Tensor) or y.shape != z.shape:
        raise ValueError(f"target {spec.name!r} must return a tensor shaped like its input")
    y = y.to(torch.float64)
    if not bool(torch.isfinite(y).all()):
        bad = z[~torch.isfinite(y)][0].item()
        raise ValueError(
            f"target {spec.name!r} is not finite on its domain {spec.domain} (e.g. at x={bad:g})"
        )
    return y


def _fit_binary(
    spec: TargetSpec, T: int, spikes: float | None, steps: int, seed: int, name: str | None, *, cap: bool
) -> FitResult:
    """The binary-coding fit (see `binary_fit`): cells, steps within the budget, least squares."""
    from .binary_fit import BinaryFitData, binary_spikes, curvature_edges, fit_cells, refine_edges

    def fn(z: Tensor) -> Tensor:
        return _checked_values(spec, z)

    label, sample = spec.sampler()
    # the fit's own samples: another seed than the report's, so the report is not measured on its training set
    xs = sample(200_000, torch.Generator().manual_seed(seed + 1)).to(torch.float32).to(torch.float64)
    zs = xs.abs() if spec.symmetry != "none" else xs
    lo, hi = spec.domain
    fn(
        torch.linspace(lo, hi, 1001, dtype=torch.float64)
    )  # a clear error for a target not finite on its domain
    if spec.partition == "curvature":
        # the raw target: the finite differences step just past the domain's edges (NaN there reads as flat)
        edges = curvature_edges(spec.fn, spec.domain, spec.neurons, zs)
    else:
        edges = make_edges(spec.domain, spec.neurons, spec.partition)
    edges = edges.to(torch.float32).to(torch.float64)
    data = BinaryFitData.build(fn, spec.domain, zs, spec.metric)
    inside = zs[(zs >= lo) & (zs <= hi)]

    if spikes is not None:
        # mean spikes after t steps, t = 1 .. top: one run of the expansion (the count only grows with t)
        top = T if cap else 64
        k = (torch.bucketize(inside, edges, right=True) - 1).clamp(0, len(edges) - 2)
        r = ((inside - edges[k]) / (edges[k + 1] - edges[k])).to(torch.float32).clamp(0, 1 - 2**-24)
        per_step = binary_spikes(r, 0.5 ** torch.arange(1, top + 1, dtype=torch.float64)).sum(0)
        mean = (per_step.cumsum(0) / max(len(zs), 1)).tolist()
        fits = [t + 1 for t, m in enumerate(mean) if m <= spikes]
        if not fits:
            raise ValueError(f"spikes={spikes:g} is below what one step costs ({mean[0]:.2f})")
        T = fits[-1]
    thresholds = 0.5 ** torch.arange(1, T + 1, dtype=torch.float64)
    bias, amps, cell_loss = fit_cells(data, edges, thresholds)
    loss0 = cell_loss.sum()
    best = loss0
    if steps:
        refined, loss1 = refine_edges(data, edges, thresholds)
        if loss1 < loss0:
            edges, best = refined.to(torch.float32).to(torch.float64), loss1
            bias, amps, _ = fit_cells(data, edges, thresholds)
    P = len(edges) - 1
    approx = NeuronArrayApproximator(
        edges.to(torch.float32),
        T,
        symmetry=spec.symmetry,
        left_tail=spec.left_tail,
        right_tail=spec.right_tail,
        thresholds=thresholds.to(torch.float32).expand(P, T),
        amplitudes=amps.to(torch.float32),
        bias=bias.to(torch.float32),
        coding="binary",
        name=name or spec.name,
    )
    report = evaluate(approx, spec.fn, spec.full_domain, spec.sampler(), seed=seed)
    scale = (data.w * data.y**2).sum().clamp_min(1e-300)
    settings = {
        "target": spec.name,
        "domain": list(spec.domain),
        "neurons": P,
        "timesteps": T,
        "partition": spec.partition if isinstance(spec.partition, str) else list(spec.partition),
        "symmetry": spec.symmetry,
        "metric": spec.metric,
        "coding": "binary",
        "spikes": spikes,
        "left_tail": list(spec.left_tail),
        "right_tail": list(spec.right_tail),
        "steps": steps,
        "seed": seed,
        "initial_loss": (loss0 / scale).item(),
        "final_loss": (best / scale).item(),
        "refined_edges": bool(steps) and bool(best < loss0),
    }
    return FitResult(approx, report, settings)


def _replace(spec: TargetSpec, **changes) -> TargetSpec:
    from dataclasses import replace

    return replace(spec, **changes)
