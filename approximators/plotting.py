"""The picture ``bt-fit`` draws: target, approximation and error over the domain."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["plot_fit"]


def plot_fit(
    approx,
    fn: Callable[[Tensor], Tensor],
    domain: tuple[float, float],
    path: str | Path,
    *,
    title: str | None = None,
) -> Path:
    """Draw target and approximation (top) and their difference (bottom) to ``path`` (PNG).

    A positive domain spanning more than three decades is drawn on log axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = domain
    log = lo > 0 and hi / lo > 1e3
    if log:
        x = torch.logspace(
            torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), 4001, dtype=torch.float64
        )
    else:
        x = torch.linspace(lo, hi, 4001, dtype=torch.float64)
    with torch.no_grad():
        y = approx.count(x.to(torch.float32)).double()
        f = fn(x)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=[2, 1])
    ax1.plot(x, f, label="target", color="black", linewidth=1.2)
    ax1.plot(
        x, y, label=f"spiking ({approx.neurons} neurons x {approx.T} steps)", color="tab:red", linewidth=0.9
    )
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    ax1.set_title(title or f"{approx.name}: approximation", fontsize=10)
    if log:
        ax1.set_xscale("log")
        ax1.set_yscale("log" if bool((f > 0).all()) else "linear")
        ax2.plot(x, ((y - f) / f.abs().clamp_min(1e-300)) * 100, color="tab:blue", linewidth=0.7)
        ax2.set_ylabel("relative error (%)")
    else:
        ax2.plot(x, y - f, color="tab:blue", linewidth=0.7)
        ax2.set_ylabel("error")
    ax2.set_xlabel("x")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
