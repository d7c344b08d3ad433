r"""Fitting binary-coded approximators: where the cells go, and what each spike is worth.

A binary-coded neuron (``coding="binary"`` in `NeuronArrayApproximator`)
turns its cell-local current $r \in [0, 1)$ into the spikes
$S_t(r)$, $t < T$, of a greedy expansion with thresholds
$\theta_t = 2^{-(t+1)}$. The approximation in cell ``k`` is
$b_k + \sum_t A_{k,t} S_t(r)$: linear in the bias and the amplitudes. So,
for fixed cells, the best values are one weighted least-squares problem per
cell, solved in closed form (`fit_cells`).

The cells are where the error comes from. `curvature_edges` places them by
the classical rule for piecewise-linear approximation: a cell of width
$h$ around $x$ costs about $h^4 f''(x)^2$ of squared error, weighted by
the input density $p(x)$, so the cells that minimise
$\int p\,(y - f)^2$ have density $\propto (p\,{f''}^2)^{1/5}$, while the
cells that minimise the maximum error have density $\propto |f''|^{1/2}$.
The placement mixes the two (``uniform_weight``). `refine_edges` then moves
each interior edge along a few candidate positions and keeps a move when the
exact loss (both neighbouring cells refitted) falls: coordinate descent on
the edges themselves.

The loss is the one the user asks for: the squared error (absolute or
relative, ``metric``) over samples of the input distribution, plus a dense
uniform grid over the domain holding ``uniform_weight`` of the total weight,
so that rarely visited inputs keep a bounded error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["BinaryFitData", "binary_spikes", "fit_cells", "curvature_edges", "refine_edges"]


def binary_spikes(r: Tensor, thresholds: Tensor) -> Tensor:
    r"""Spikes ``[N, T]`` (0 / 1, float64): the greedy expansion of ``r`` ``[N]`` by ``thresholds`` ``[T]``.

    $h_0 = r$, $S_t = [h_t \ge \theta_t]$, $h_{t+1} = h_t - \theta_t S_t$,
    computed in float32 exactly as the neuron computes it.
    """
    h = r.to(torch.float32)
    spikes = []
    for theta in thresholds.to(torch.float32):
        fired = h >= theta
        h = h - theta * fired
        spikes.append(fired)
    return torch.stack(spikes, -1).to(torch.float64)


@dataclass
class BinaryFitData:
    """The weighted points a binary fit is measured on (float64, in ``z``).

    Attributes:
        z: points ``[N]``: samples of the input distribution and a uniform grid.
        y: target values at ``z``.
        w: weights (the metric's, times each point's share of the total weight).
    """

    z: Tensor
    y: Tensor
    w: Tensor

    @classmethod
    def build(
        cls,
        fn: Callable[[Tensor], Tensor],
        domain: tuple[float, float],
        samples: Tensor,
        metric: str,
        *,
        grid: int = 20001,
        uniform_weight: float = 0.2,
    ) -> BinaryFitData:
        """Points: ``samples`` of ``z`` (folded by the symmetry) inside ``domain``, plus a grid."""
        lo, hi = domain
        s = samples[(samples >= lo) & (samples <= hi)].to(torch.float64)
        g = torch.linspace(lo, hi, grid, dtype=torch.float64)
        n_s, n_g = max(len(s), 1), len(g)
        w = torch.cat(
            [torch.full((len(s),), (1 - uniform_weight) / n_s), torch.full((n_g,), uniform_weight / n_g)]
        ).to(torch.float64)
        z = torch.cat([s, g])
        z = z.to(torch.float32).to(torch.float64)  # the values the module sees
        y = fn(z).to(torch.float64)
        if metric == "rel":
            w = w / y.abs().clamp_min(1e-30) ** 2
        return cls(z, y, w)


def fit_cells(data: BinaryFitData, edges: Tensor, thresholds: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Least-squares bias ``[P]`` and amplitudes ``[P, T]`` for ``edges``, and each cell's loss ``[P]``.

    An empty cell gets the target's value at the point nearest its centre as bias and zero amplitudes.
    """
    edges = edges.to(torch.float32).to(torch.float64)
    P, T = len(edges) - 1, len(thresholds)
    k = (torch.bucketize(data.z, edges, right=True) - 1).clamp(0, P - 1)
    lo, hi = edges[k], edges[k + 1]
    u = (1 + ((data.z - lo) / (hi - lo)).to(torch.float32)).clamp(1.0, 2.0 - 2**-23)
    design = torch.cat([torch.ones(len(u), 1, dtype=torch.float64), binary_spikes(u - 1, thresholds)], 1)
    sw = data.w.sqrt()
    bias = torch.empty(P, dtype=torch.float64)
    amps = torch.zeros(P, T, dtype=torch.float64)
    loss = torch.zeros(P, dtype=torch.float64)
    order = torch.argsort(k, stable=True)
    counts = torch.bincount(k, minlength=P).tolist()
    start = 0
    for cell, n in enumerate(counts):
        idx = order[start : start + n]
        start += n
        if n == 0:
            mid = 0.5 * (edges[cell] + edges[cell + 1])
            bias[cell] = data.y[(data.z - mid).abs().argmin()]
            continue
        a = design[idx] * sw[idx, None]
        b = data.y[idx] * sw[idx]
        sol = torch.linalg.lstsq(a, b, driver="gelsd").solution
        bias[cell], amps[cell] = sol[0], sol[1:]
        loss[cell] = ((a @ sol - b) ** 2).sum()
    return bias, amps, loss


def _second_derivative(fn: Callable[[Tensor], Tensor], z: Tensor) -> Tensor:
    h = 1e-3 * z.abs().clamp_min(1.0)
    return (fn(z + h) - 2 * fn(z) + fn(z - h)) / h**2


def curvature_edges(
    fn: Callable[[Tensor], Tensor],
    domain: tuple[float, float],
    neurons: int,
    samples: Tensor,
    *,
    uniform_weight: float = 0.2,
    resolution: int = 200_001,
) -> Tensor:
    r"""``neurons + 1`` edges on ``domain``: density $\propto$ mix of $(p {f''}^2)^{1/5}$ and $|f''|^{1/2}$.

    ``p`` is a histogram of ``samples`` (smoothed, floored at 1% of its mean);
    ``uniform_weight`` is the share of the max-error term.
    """
    lo, hi = domain
    z = torch.linspace(lo, hi, resolution, dtype=torch.float64)
    f2 = _second_derivative(fn, z).abs()
    f2 = torch.nan_to_num(f2, nan=0.0, posinf=0.0) + 1e-6 * (f2[torch.isfinite(f2)].max() + 1e-300)
    hist = torch.histc(samples.to(torch.float64).clamp(lo, hi), bins=400, min=lo, max=hi)
    kernel = torch.ones(1, 1, 9, dtype=torch.float64) / 9
    hist = torch.nn.functional.conv1d(hist.view(1, 1, -1), kernel, padding=4).view(-1)
    p = torch.nn.functional.interpolate(hist.view(1, 1, -1), size=resolution, mode="linear").view(-1)
    p = p / p.mean().clamp_min(1e-300)
    p = p.clamp_min(0.01)
    d_l2 = (p * f2**2) ** 0.2
    d_max = f2**0.5
    density = (1 - uniform_weight) * d_l2 / d_l2.mean() + uniform_weight * d_max / d_max.mean()
    cdf = torch.cat([torch.zeros(1, dtype=torch.float64), torch.cumsum((density[1:] + density[:-1]) / 2, 0)])
    cdf = cdf / cdf[-1]
    q = torch.linspace(0, 1, neurons + 1, dtype=torch.float64)
    idx = torch.searchsorted(cdf, q).clamp(1, resolution - 1)
    c0, c1 = cdf[idx - 1], cdf[idx]
    t = ((q - c0) / (c1 - c0).clamp_min(1e-300)).clamp(0, 1)
    edges = z[idx - 1] + t * (z[idx] - z[idx - 1])
    edges[0], edges[-1] = lo, hi
    return edges


def refine_edges(
    data: BinaryFitData,
    edges: Tensor,
    thresholds: Tensor,
    *,
    sweeps: int = 4,
    moves: tuple[float, ...] = (-0.3, -0.15, -0.05, 0.05, 0.15, 0.3),
) -> tuple[Tensor, Tensor]:
    """Coordinate descent on the interior edges; returns the edges and the total loss.

    Each sweep tries, for every interior edge, moving it by each fraction of
    ``moves`` of the neighbouring cell it moves into; a move is kept when the
    loss of the two cells it bounds (both refitted) falls.
    """
    edges = edges.clone().to(torch.float64)
    P = len(edges) - 1
    for _ in range(sweeps):
        improved = False
        for j in range(1, P):
            local = edges[j - 1 : j + 2]
            sel = (data.z >= local[0]) & (data.z <= local[2])
            sub = BinaryFitData(data.z[sel], data.y[sel], data.w[sel])
            best = fit_cells(sub, local, thresholds)[2].sum()
            best_edge = local[1].item()
            for m in moves:
                width = (local[2] - local[1]) if m > 0 else (local[1] - local[0])
                cand = local[1].item() + m * width.item()
                trial = torch.tensor([local[0].item(), cand, local[2].item()], dtype=torch.float64)
                t32 = trial.to(torch.float32)
                if not bool((t32[1:] > t32[:-1]).all()):
                    continue
                loss = fit_cells(sub, trial, thresholds)[2].sum()
                if loss < best * (1 - 1e-9):
                    best, best_edge = loss, cand
            if best_edge != edges[j].item():
                edges[j] = best_edge
                improved = True
        if not improved:
            break
    return edges, fit_cells(data, edges, thresholds)[2].sum()
