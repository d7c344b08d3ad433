r"""Exact staircase of a neuron under a constant input: the count path's engine.

A CustomNeuron (or an EI_IF neuron with ``r < 1``) driven by the same input
``x`` for ``T`` steps emits a spike pattern that only changes at finitely many
values of ``x``. Between two such breakpoints its total output is constant, so
the output over ``T`` steps is a staircase in ``x``. This module finds the
staircase once per parameter set; evaluating it is then a sorted search
(``torch.bucketize``) and a gather, with no stepping.

Exactness. The breakpoints are not the analytic crossing points (which float
rounding may move by a few units in the last place) but the float values where
the *simulated* pattern changes: an analytic guess brackets each breakpoint and
a bisection over the ordered bit patterns of positive floats pins it down,
simulating with the very operations the spike path uses. This works because the
pattern is monotone in ``x``: membranes are built from additions and
multiplications by non-negative constants, which are monotone under IEEE
rounding, so for ``x1 < x2`` the first step where the patterns differ is one
where ``x2`` fires and ``x1`` does not. Hence every pattern occupies one
interval of floats, and the count path equals the spike path bit for bit.

Symmetry. Negating ``x`` negates every membrane exactly, so a negative input
fires the mirror pattern with negative spikes; only ``x > 0`` is searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Staircase", "constant_input_staircase", "evaluate_staircase", "positive_patterns"]


@dataclass(frozen=True)
class Staircase:
    """Breakpoints and spike patterns of ``P`` neurons under constant inputs.

    Attributes:
        breaks: ``[P, M]`` ascending breakpoints, padded with ``+inf``. Segment
            ``k`` is ``breaks[k-1] <= |x| < breaks[k]`` (with ``breaks[-1] = 0``).
        patterns: ``[P, M + 1, T]`` bool: the steps at which the neuron fires
            (with the sign of ``x``) for ``|x|`` in segment ``k``.
    """

    breaks: Tensor
    patterns: Tensor

    def segment(self, abs_x: Tensor, neuron: int = 0) -> Tensor:
        """Segment index of each ``|x|`` for neuron ``neuron`` (same shape as ``abs_x``)."""
        return torch.bucketize(abs_x, self.breaks[neuron].contiguous(), right=True)

    @property
    def num_segments(self) -> Tensor:
        """``[P]``: number of distinct segments (finite breakpoints + 1) per neuron."""
        return torch.isfinite(self.breaks).sum(-1) + 1


def positive_patterns(x: Tensor, thresholds: Tensor, lam: Tensor, reset: bool) -> Tensor:
    """Spike patterns for positive constant inputs, simulated exactly.

    Uses the same arithmetic as `custom_neuron_step`
    with a plain Heaviside (for ``x >= 0`` no negative spike can occur).

    Args:
        x: ``[P]`` non-negative inputs, one per neuron.
        thresholds: ``[P, T]``.
        lam: ``[P]`` decay.
        reset: subtract the threshold after a spike.

    Returns:
        ``[P, T]`` bool.
    """
    v = torch.zeros_like(x)
    pats = []
    for t in range(thresholds.shape[-1]):
        theta = thresholds[:, t]
        h = lam * v + x
        p = (h - theta) >= 0
        pats.append(p)
        v = h - theta * p.to(h.dtype) if reset else h
    return torch.stack(pats, -1)


def _analytic_next(pattern: Tensor, thresholds: Tensor, lam: Tensor, reset: bool) -> Tensor:
    """Smallest ``x`` where a silent step of ``pattern`` would fire, in float64.

    Along a fixed pattern ``H_t = a_t x + b_t`` is affine in ``x`` with ``a_t >= 1``.
    """
    thr = thresholds.double()
    lam = lam.double()
    a = torch.zeros_like(thr[:, 0])
    b = torch.zeros_like(a)
    best = torch.full_like(a, float("inf"))
    for t in range(thr.shape[-1]):
        a = lam * a + 1.0
        b = lam * b
        fired = pattern[:, t]
        cand = (thr[:, t] - b) / a
        best = torch.where(fired, best, torch.minimum(best, cand))
        if reset:
            b = torch.where(fired, b - thr[:, t], b)
    return best


_INT_VIEW = {torch.float32: torch.int32, torch.float64: torch.int64}


def constant_input_staircase(
    thresholds: Tensor,
    lam: Tensor,
    *,
    reset: bool,
    max_segments: int | None = None,
) -> Staircase:
    """Find the staircase of ``P`` neurons under constant inputs.

    Args:
        thresholds: ``[P, T]`` per-step thresholds, all > 0, float32 or float64
            (the compute dtype the spike path uses).
        lam: ``[P]`` membrane decay, >= 0 (for EI_IF, ``lam = 1 - r``).
        reset: subtract the threshold after a spike (CustomNeuron reset,
            EI_IF soft reset).
        max_segments: safety bound on the number of segments per neuron
            (default ``4 T^2 + 8``).

    Returns:
        A `Staircase`.

    Raises:
        ValueError: on non-positive thresholds, negative decay or an
            unsupported dtype.
        RuntimeError: if a neuron has more than ``max_segments`` segments.
    """
    if thresholds.dtype not in _INT_VIEW:
        raise ValueError(f"thresholds must be float32 or float64, got {thresholds.dtype}")
    if thresholds.dim() != 2:
        raise ValueError(f"thresholds must have shape [P, T], got {tuple(thresholds.shape)}")
    with torch.no_grad():
        thresholds = thresholds.detach().contiguous()
        lam = lam.detach().to(thresholds.dtype).expand(thresholds.shape[0]).contiguous()
        if not bool((thresholds > 0).all()):
            raise ValueError("every threshold theta_t must be > 0 for the count path")
        if not bool((lam >= 0).all()):
            raise ValueError("the membrane decay lambda must be >= 0 for the count path")
        P, T = thresholds.shape
        limit = max_segments if max_segments is not None else 4 * T * T + 8
        dtype = thresholds.dtype
        ity = _INT_VIEW[dtype]

        def sim(x: Tensor) -> Tensor:
            return positive_patterns(x, thresholds, lam, reset)

        cur_x = torch.zeros(P, dtype=dtype, device=thresholds.device)
        cur_pat = torch.zeros(P, T, dtype=torch.bool, device=thresholds.device)
        done = cur_pat.all(-1)
        breaks, patterns = [], [cur_pat]
        while not bool(done.all()):
            if len(patterns) > limit:
                raise RuntimeError(
                    f"a neuron's staircase has more than {limit} segments; "
                    "its parameters are outside the range the count path supports"
                )
            guess = _analytic_next(cur_pat, thresholds, lam, reset)
            up = torch.nextafter(cur_x, torch.full_like(cur_x, float("inf")))
            hi = torch.maximum((guess * (1 + 1e-4)).to(dtype), up)
            hi = torch.where(done, cur_x, hi)
            for _ in range(2100):
                moved = (sim(hi) != cur_pat).any(-1) | done
                if bool(moved.all()):
                    break
                hi = torch.where(moved, hi, hi * 2)
            else:  # pragma: no cover - thresholds are finite, so this cannot happen
                raise RuntimeError("could not bracket a staircase breakpoint")
            lo_c = (guess * (1 - 1e-4)).to(dtype)
            lo_c = torch.where(done | ~torch.isfinite(lo_c), cur_x, lo_c)
            ok = (lo_c > cur_x) & (lo_c < hi) & (sim(lo_c) == cur_pat).all(-1)
            lo = torch.where(ok, lo_c, cur_x)
            lo_i, hi_i = lo.view(ity), hi.view(ity)
            while bool(((hi_i - lo_i) > 1).any()):
                mid_i = lo_i + (hi_i - lo_i) // 2
                mid = mid_i.view(dtype)
                moved = (sim(mid) != cur_pat).any(-1)
                hi_i = torch.where(moved, mid_i, hi_i)
                lo_i = torch.where(moved, lo_i, mid_i)
            new_x = hi_i.view(dtype)
            new_pat = sim(torch.where(done, cur_x, new_x))
            new_pat = torch.where(done.unsqueeze(-1), cur_pat, new_pat)
            breaks.append(torch.where(done, torch.full_like(new_x, float("inf")), new_x))
            patterns.append(new_pat)
            cur_x = torch.where(done, cur_x, new_x)
            cur_pat = new_pat
            done = done | cur_pat.all(-1)
        if not breaks:  # pragma: no cover - T >= 1 always gives at least one break
            breaks.append(torch.full_like(cur_x, float("inf")))
        return Staircase(torch.stack(breaks, -1), torch.stack(patterns, 1))


def evaluate_staircase(x: Tensor, staircase: Staircase, values_pos: Tensor, values_neg: Tensor) -> Tensor:
    r"""Total output of neuron 0 of ``staircase`` under constant inputs ``x``.

    $$
        y(x) = \begin{cases} v^+_{k(|x|)} & x > 0 \\ -v^-_{k(|x|)} & x < 0 \\ 0 & x = 0 \end{cases}
    $$
    where $k(|x|)$ is the segment of ``|x|`` and $v^\pm_k$ the
    total output of segment ``k`` for positive / negative inputs (e.g.
    $v^+_k = \sum_t A^+_t\,\mathrm{pattern}_{k,t}$).

    Gradients: exact for ``values_pos`` / ``values_neg`` (a gather); for ``x`` a
    straight-through estimate, the slope of the secant from the start of the
    segment to the start of the next one (zero past the last breakpoint).

    Args:
        x: inputs, any shape, in the staircase's dtype.
        staircase: from `constant_input_staircase` (neuron 0 is used).
        values_pos: ``[M + 1]`` segment values.
        values_neg: ``[M + 1]`` segment values.

    Returns:
        Tensor shaped like ``x``.
    """
    seg = staircase.segment(x.abs())
    out = torch.where(x > 0, values_pos[seg], -values_neg[seg])
    if x.requires_grad:
        with torch.no_grad():
            starts = torch.cat([torch.zeros_like(staircase.breaks[0, :1]), staircase.breaks[0]])
            width = starts[1:] - starts[:-1]
            last = torch.zeros_like(values_pos[:1])
            finite = torch.isfinite(width)
            safe = torch.where(finite, width, torch.ones_like(width))
            slope_pos = torch.cat([torch.where(finite, (values_pos[1:] - values_pos[:-1]) / safe, 0), last])
            slope_neg = torch.cat([torch.where(finite, (values_neg[1:] - values_neg[:-1]) / safe, 0), last])
            slope = torch.where(x > 0, slope_pos[seg], slope_neg[seg]).detach()
        out = out + slope * (x - x.detach())
    return out
