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
    """SiLU approximation error against neurons and time steps (the fitter's own numbers)."""
    from bt_neurons.approximators import fit_approximator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for T in (4, 8, 16):
        ps = (8, 16, 32, 64, 128)
        errs = [fit_approximator("silu", neurons=P, timesteps=T, steps=50).report.max_abs for P in ps]
        axes[0].loglog(ps, errs, marker="o", label=f"T = {T} steps")
    axes[0].set_xlabel("neurons P on [-8, 8]")
    axes[0].set_ylabel("max abs error of SiLU")
    axes[0].grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    for P in (16, 64):
        ts = (2, 4, 8, 16, 32)
        errs = [fit_approximator("silu", neurons=P, timesteps=T, steps=50).report.rel_l2 for T in ts]
        axes[1].loglog(ts, errs, marker="o", label=f"P = {P} neurons")
    from matplotlib.ticker import NullFormatter

    for ax, ticks in ((axes[0], (8, 16, 32, 64, 128)), (axes[1], (2, 4, 8, 16, 32))):
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[1].axhline(0.01, color="grey", linestyle="--", linewidth=0.8)
    axes[1].set_xlabel("time steps T per neuron (max spikes per evaluation)")
    axes[1].set_ylabel("relative L2 error, x ~ N(0, 1)")
    axes[1].grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    path = out / "approximator_accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    return [eiif_spikes(out), custom_staircase(out), approximator_accuracy(out), silu_fit(out)]


if __name__ == "__main__":
    for p in main():
        print(p)
