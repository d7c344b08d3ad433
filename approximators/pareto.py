"""The trade-off of a binary-coded approximator: error against spikes against neurons.

`pareto_front` fits the target once per (neurons, spike budget) pair with
`fit_approximator` (binary coding) and marks the fits no other fit beats on
all three axes at once (error, mean spikes per evaluation, neurons): the
Pareto front. `pareto_writers` turns the points into a markdown table, a CSV
file and a plot, written with the fitted files by ``bt-fit --pareto``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from torch import Tensor

from bt_neurons import _checks

from .targets import TargetSpec

__all__ = ["ParetoPoint", "pareto_front", "pareto_table", "pareto_writers", "ERRORS"]

#: The error measures a front can be drawn for (fields of `metrics.ApproximationReport`).
ERRORS = ("rel_l2", "max_abs", "rmse", "max_rel")


@dataclass(frozen=True)
class ParetoPoint:
    """One fit of the sweep.

    Attributes:
        neurons: ``P``.
        timesteps: ``T`` the spike budget allowed.
        budget: the spike budget asked for.
        spikes_per_eval: mean spikes per evaluation on the input distribution.
        additions_per_eval: mean additions besides the spikes (bias or tail).
        parameters: the approximator's parameter count (`NeuronArrayApproximator.parameter_count`).
        rel_l2, max_abs, rmse, max_rel: its errors (`metrics.ApproximationReport`).
        on_front: no other point is at least as good on error, spikes and
            neurons and better on one of them (the three-axis front).
        best_for_spikes: no point of any size has at most its spikes and a
            lower error (the two-axis front, error against spikes).
    """

    neurons: int
    timesteps: int
    budget: float
    spikes_per_eval: float
    additions_per_eval: float
    parameters: int
    rel_l2: float
    max_abs: float
    rmse: float
    max_rel: float
    on_front: bool = False
    best_for_spikes: bool = False


def _dominates(a: ParetoPoint, b: ParetoPoint, error: str, axes: int = 3) -> bool:
    ka = (getattr(a, error), a.spikes_per_eval, a.neurons)[:axes]
    kb = (getattr(b, error), b.spikes_per_eval, b.neurons)[:axes]
    return all(x <= y for x, y in zip(ka, kb, strict=True)) and ka != kb


def pareto_front(
    target: str | TargetSpec | Callable[[Tensor], Tensor],
    *,
    neurons: Sequence[int] = (4, 8, 16, 32, 64),
    spikes: Sequence[float] = (1, 2, 3, 4, 6),
    error: str = "rel_l2",
    progress: Callable[[str], None] | None = None,
    **fit_kwargs: Any,
) -> list[ParetoPoint]:
    """Fit ``target`` at every (neurons, spike budget) pair and mark the Pareto front.

    Args:
        target: what `fit_approximator` accepts (a built-in name, a `TargetSpec`, a function).
        neurons: the neuron counts to try.
        spikes: the spike budgets to try (mean spikes per evaluation).
        error: the error axis of the front, one of `ERRORS`.
        progress: called with a line after each fit (e.g. ``print``).
        **fit_kwargs: passed to `fit_approximator` (``domain``, ``partition``, ``steps``, ...).

    Returns:
        The points, sorted by neurons then spikes; budgets below one step's cost are skipped.
    """
    from .fitting import fit_approximator

    _checks.check_choice("error", error, ERRORS)
    neurons = [_checks.check_timesteps("neurons", n) for n in neurons]
    budgets = [_checks.check_number("spikes", b) for b in spikes]
    for b in budgets:
        _checks.check_positive("spikes", b)
    if not neurons or not budgets:
        raise ValueError("neurons and spikes must each hold at least one value")
    points = []
    seen = set()
    for P in neurons:
        for budget in budgets:
            try:
                result = fit_approximator(target, neurons=P, spikes=budget, coding="binary", **fit_kwargs)
            except ValueError as exc:
                if "below what one step costs" in str(exc):
                    continue
                raise
            approx, report = result.approximator, result.report
            if (P, approx.T) in seen:  # two budgets allowing the same steps give the same fit
                continue
            seen.add((P, approx.T))
            point = ParetoPoint(
                neurons=P,
                timesteps=approx.T,
                budget=float(budget),
                spikes_per_eval=report.spikes_per_eval,
                additions_per_eval=report.additions_per_eval,
                parameters=approx.parameter_count,
                rel_l2=report.rel_l2,
                max_abs=report.max_abs,
                rmse=report.rmse,
                max_rel=report.max_rel,
            )
            points.append(point)
            if progress is not None:
                progress(
                    f"  {P:4d} neurons x {approx.T:2d} steps: {report.spikes_per_eval:.2f} spikes/eval, "
                    f"{error} {getattr(report, error):.3e}"
                )
    marked = [
        replace(
            p,
            on_front=not any(_dominates(q, p, error) for q in points),
            best_for_spikes=not any(_dominates(q, p, error, axes=2) for q in points),
        )
        for p in points
    ]
    return sorted(marked, key=lambda p: (p.neurons, p.spikes_per_eval))


def pareto_table(points: Sequence[ParetoPoint], error: str = "rel_l2") -> str:
    """A markdown table of the points, front points in bold."""
    head = (
        "| neurons | steps | spikes / eval | + additions | parameters | rel L2 | max abs | "
        "front (3 axes) | best for its spikes |"
    )
    rows = [head, "|---:|---:|---:|---:|---:|---:|---:|:---:|:---:|"]
    for p in points:
        rows.append(
            f"| {p.neurons} | {p.timesteps} | {p.spikes_per_eval:.2f} | {p.additions_per_eval:.2f} | "
            f"{p.parameters} | {p.rel_l2:.3%} | {p.max_abs:.3e} | {'yes' if p.on_front else ''} | "
            f"{'**yes**' if p.best_for_spikes else ''} |"
        )
    return (
        "\n".join(rows)
        + f"\n\nFront (3 axes): no fit is as good on {error}, spikes per evaluation and neurons and better "
        f"on one. Best for its spikes: no fit of any size reaches a lower {error} with as few spikes.\n"
    )


def _csv_text(points: Sequence[ParetoPoint]) -> str:
    buf = io.StringIO()
    fields = list(asdict(points[0])) if points else list(ParetoPoint.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for p in points:
        writer.writerow(asdict(p))
    return buf.getvalue()


def _plot(points: Sequence[ParetoPoint], path: Path, error: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for P in sorted({p.neurons for p in points}):
        row = [p for p in points if p.neurons == P]
        ax.plot(
            [p.spikes_per_eval for p in row], [getattr(p, error) for p in row], "o-", label=f"{P} neurons"
        )
    front = sorted((p for p in points if p.best_for_spikes), key=lambda p: p.spikes_per_eval)
    ax.scatter(
        [p.spikes_per_eval for p in front],
        [getattr(p, error) for p in front],
        s=90,
        facecolors="none",
        edgecolors="black",
        label="best for its spikes (any size)",
    )
    ax.set_yscale("log")
    ax.set_xlabel("spikes per evaluation (mean)")
    names = {"rel_l2": "relative L2 error", "max_abs": "max abs error", "rmse": "RMSE"}
    ax.set_ylabel(names.get(error, error))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def pareto_writers(
    points: Sequence[ParetoPoint], directory: str | os.PathLike, name: str, *, error: str = "rel_l2"
) -> list[tuple[Path, Callable[[Path], None]]]:
    """``(path, writer)`` pairs of ``<name>-pareto.md``, ``.csv`` and ``.png`` for `atomic_write_files`."""
    directory = Path(directory)
    table = f"# Pareto front of {name}\n\n" + pareto_table(points, error)
    text = _csv_text(points)
    return [
        (directory / f"{name}-pareto.md", lambda p: p.write_text(table)),
        (directory / f"{name}-pareto.csv", lambda p: p.write_text(text)),
        (directory / f"{name}-pareto.png", lambda p: _plot(points, p, error, f"{name}: error vs spikes")),
    ]
