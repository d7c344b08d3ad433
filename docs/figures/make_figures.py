"""Draw the pictures used in the documentation.

Run ``python docs/figures/make_figures.py [OUT_DIR]`` (default ``docs/img``).
The test suite runs it into a temporary folder so the pictures never go stale
silently.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from bt_neurons import CustomNeuronNode, EIIFNode  # noqa: E402


def eiif_spikes(out: Path) -> Path:
    """Raster of EI_IF spike trains for a few constant inputs, r = 1 and r = 0.5."""
    T = 8
    values = [-3.2, -1.4, -0.3, 0.6, 1.5, 2.49, 4.0, 9.0]
    x = torch.tensor(values)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, r in zip(axes, (1.0, 0.5), strict=True):
        spikes = EIIFNode(r=r, step_mode="m")(x.expand(T, len(values)))
        for i in range(len(values)):
            for t in range(T):
                s = spikes[t, i].item()
                if s:
                    ax.scatter(
                        t, i, marker="^" if s > 0 else "v", color="tab:red" if s > 0 else "tab:blue", s=60
                    )
        ax.set_title(f"r = {r:g}: counts {[int(c) for c in spikes.sum(0).tolist()]}", fontsize=9)
        ax.set_xlabel("time step t  (threshold 0.5 + t)")
        ax.set_xticks(range(T))
        ax.grid(alpha=0.3)
    axes[0].set_yticks(range(len(values)), [f"x = {v:g}" for v in values])
    fig.suptitle("EI_IF spikes under constant inputs (▲ +1, ▼ -1), theta_0 = 0.5, alpha = 1")
    fig.tight_layout()
    path = out / "eiif_spikes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def custom_staircase(out: Path) -> Path:
    """Total output of a CustomNeuron over T steps as a function of a constant input."""
    T = 8
    x = torch.linspace(-4, 4, 2001)
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for kw, label in (
        (dict(), "IF, soft reset (defaults)"),
        (dict(decay=0.7), "decay 0.7"),
        (dict(alpha=0.3, amp_pos=0.5), "alpha 0.3, A+ 0.5"),
    ):
        y = CustomNeuronNode(T=T, path="count", **kw)(x).detach()
        ax.plot(x, y, label=label, drawstyle="steps-post")
    ax.set_xlabel("constant input x")
    ax.set_ylabel(f"sum of outputs over T = {T} steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "custom_staircase.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def approximator_accuracy(out: Path) -> Path:
    """SiLU error against spikes per evaluation: level coding against binary coding (the fitter's numbers)."""
    from bt_neurons.approximators import fit_approximator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    curves = []
    for P in (16, 64):
        level = [
            fit_approximator(
                "silu", neurons=P, timesteps=T, coding="level", partition="linear", steps=0
            ).report
            for T in (2, 4, 8, 16)
        ]
        binary = [
            fit_approximator(
                "silu", neurons=P, timesteps=T, coding="binary", partition="curvature", steps=0
            ).report
            for T in (1, 2, 4, 6, 8, 11)
        ]
        curves += [(f"level, {P} neurons", level, "--"), (f"binary, {P} neurons", binary, "-")]
    for ax, metric, label in (
        (axes[0], "rel_l2", "relative L2 error, x ~ N(0, 1)"),
        (axes[1], "max_abs", "max abs error on [-8, 8]"),
    ):
        for name, reports, style in curves:
            ax.semilogy(
                [r.spikes_per_eval for r in reports],
                [getattr(r, metric) for r in reports],
                style,
                marker="o",
                label=name,
            )
        ax.set_xlabel("spikes per evaluation (mean, x ~ N(0, 1))")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    axes[0].axhline(0.01, color="grey", linestyle=":", linewidth=0.8)
    axes[1].axhline(0.05, color="grey", linestyle=":", linewidth=0.8)
    fig.tight_layout()
    path = out / "approximator_accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def silu_pareto(out: Path) -> Path:
    """The Pareto front bt-fit --pareto draws, for SiLU."""
    from bt_neurons.approximators.pareto import pareto_front, pareto_writers

    points = pareto_front("silu", neurons=(4, 8, 16, 32), spikes=(1, 2, 3, 4, 6), steps=0)
    path, write = pareto_writers(points, out, "silu")[2]
    write(path)
    return path


def silu_fit(out: Path) -> Path:
    """The picture bt-fit draws for the shipped SiLU approximator."""
    from bt_neurons.approximators import BUILTIN_TARGETS, SiLUApproximator
    from bt_neurons.approximators.plotting import plot_fit

    spec = BUILTIN_TARGETS["silu"]
    return plot_fit(SiLUApproximator(), spec.fn, spec.full_domain, out / "silu_fit.png", title="bt-fit silu")


def main(argv: list[str] | None = None) -> list[Path]:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path(__file__).resolve().parent.parent / "img"
    out.mkdir(parents=True, exist_ok=True)
    return [
        eiif_spikes(out),
        custom_staircase(out),
        approximator_accuracy(out),
        silu_fit(out),
        silu_pareto(out),
    ]


if __name__ == "__main__":
    for p in main():
        print(p)
