"""How good an approximator is: the figures ``bt-fit`` reports and the benchmark records."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

from .neuron_array import NeuronArrayApproximator

__all__ = ["ApproximationReport", "evaluate"]


@dataclass(frozen=True)
class ApproximationReport:
    """Errors of an approximator against its target.

    Attributes:
        max_abs: max ``|y - f|`` on a dense grid over the domain.
        rmse: root mean square error on that grid.
        max_rel: max ``|y - f| / |f|`` on the grid; NaN when the target
            changes sign or comes within ``1e-8 max|f|`` of 0 on the domain
            (relative error is then meaningless).
        rel_l2: ``||y - f|| / ||f||`` over samples of the input distribution.
        distribution: name of that distribution.
        spikes_per_eval: mean number of spikes per input under the distribution.
        max_spikes: the most spikes any input makes (at most ``T``).
        additions_per_eval: mean additions per input besides the spikes: the
            routing synapse's bias (binary coding) or a tail's linear map.
    """

    max_abs: float
    rmse: float
    max_rel: float
    rel_l2: float
    distribution: str
    spikes_per_eval: float
    max_spikes: int
    additions_per_eval: float = 0.0

    def as_dict(self) -> dict[str, float | str | int]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A short human-readable report."""
        return [
            f"max abs error    {self.max_abs:.3e}   (dense grid over the domain)",
            f"RMSE             {self.rmse:.3e}",
            f"max rel error    {self.max_rel:.3%}"
            if self.max_rel == self.max_rel
            else "max rel error    n/a (the target is 0 or changes sign on the domain)",
            f"relative L2      {self.rel_l2:.3%}   (x ~ {self.distribution})",
            f"spikes / eval    {self.spikes_per_eval:.2f}   (at most {self.max_spikes}; "
            f"plus {self.additions_per_eval:.2f} bias / tail additions)",
        ]


def evaluate(
    approx: NeuronArrayApproximator,
    fn: Callable[[Tensor], Tensor],
    domain: tuple[float, float],
    sampler: tuple[str, Callable[[int, torch.Generator], Tensor]],
    *,
    grid: int = 20001,
    samples: int = 200_000,
    seed: int = 0,
) -> ApproximationReport:
    """Measure ``approx`` against ``fn`` (float64) over ``domain`` (in ``x``).

    The grid is linear, or logarithmic when the domain is positive and spans
    more than three decades.
    """
    lo, hi = domain
    if lo > 0 and hi / lo > 1e3:
        x = torch.logspace(
            torch.log10(torch.tensor(lo)), torch.log10(torch.tensor(hi)), grid, dtype=torch.float64
        )
    else:
        x = torch.linspace(lo, hi, grid, dtype=torch.float64)
    x = x.to(torch.float32).to(torch.float64)  # the values the approximator sees
    with torch.no_grad():
        y = approx.count(x.to(torch.float32)).double()
        f = fn(x)
        err = (y - f).abs()
        one_sign = (bool((f > 0).all()) or bool((f < 0).all())) and f.abs().min() > 1e-8 * f.abs().max()
        name, sample = sampler
        g = torch.Generator().manual_seed(seed)
        xs = sample(samples, g).to(torch.float32)
        ys = approx.count(xs).double()
        fs = fn(xs.double())
        spikes = approx.spikes_per_input(xs).double()
        additions = approx.base_additions_per_input(xs).double()
    return ApproximationReport(
        max_abs=err.max().item(),
        rmse=err.pow(2).mean().sqrt().item(),
        max_rel=(err / f.abs()).max().item() if one_sign else float("nan"),
        rel_l2=((ys - fs).norm() / fs.norm()).item(),
        distribution=name,
        spikes_per_eval=spikes.mean().item(),
        max_spikes=int(spikes.max().item()),
        additions_per_eval=additions.mean().item(),
    )
