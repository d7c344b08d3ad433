r"""Implicit differentiation at the equilibrium of the average spiking rates (ASR).

A spiking network simulated for ``T`` steps settles its average spiking rates
``a`` near a fixed point of its rate map ``F``: ``a = F(a; \theta)``, where
``F_j(a) = clamp(f_j(a_{<j}; \theta) / V_th, 0, 1)`` is what layer ``j``'s
IF neurons fire on average given the rates of the layers that feed it. The
loss ``L(a)`` is differentiated as if ``a`` were that fixed point (the
implicit function theorem):

$$
\frac{dL}{d\theta} = \Big(\frac{\partial F}{\partial \theta}\Big)^{\!\top} g, \qquad
g = J^\top g + \frac{\partial L}{\partial a}, \qquad J = \frac{\partial F}{\partial a}\Big|_{a}
$$

so the backward pass needs one evaluation of ``F`` with a graph, whatever
``T`` was: training memory does not grow with the simulation.

`implicit_rates` solves for ``g`` with one of torchdeq's solvers
(``"broyden"``, ``"anderson"``, ``"fixed_point_iter"``), each step one
vector-Jacobian product of ``F``. `straight_through_rate` is the ``"exact"``
route of a feed-forward network: there ``J`` is strictly block lower
triangular, hence nilpotent, ``g = \sum_{k < depth} (J^\top)^k \partial L / \partial a``
exactly, and that sum is what ordinary back-propagation computes through the
chained layers when each layer's value is the simulated rate and its
Jacobian the rate map's at the simulated rates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SolverStats", "clipped_rate", "implicit_rates", "straight_through_rate"]


def clipped_rate(current: Tensor, v_threshold: float) -> Tensor:
    r"""The equilibrium rate of an IF neuron (soft reset, leak 1) under a constant current.

    ``clamp(current / V_th, 0, 1)``: with a constant input ``c`` the membrane
    gains ``c`` per step and loses ``V_th`` per spike, so the neuron fires
    ``floor`` of its accumulated charge over ``V_th`` and its rate tends to
    ``c / V_th`` within ``1 / T``, at most one spike per step.
    """
    return torch.clamp(current / v_threshold, 0.0, 1.0)


def straight_through_rate(simulated: Tensor, current: Tensor, v_threshold: float) -> Tensor:
    """The simulated rate forward; the rate map's derivative at that point backward.

    Returns ``simulated + F - F.detach()`` with ``F = clipped_rate(current)``:
    its value is ``simulated``, and gradients reach ``current`` (hence the
    weights and the layers before) as through ``clipped_rate``.
    """
    rate = clipped_rate(current, v_threshold)
    return simulated.detach() + (rate - rate.detach())


@dataclass
class SolverStats:
    """The last implicit backward solve: iterations run and the residual ``|g - J^T g - dL/da|`` reached."""

    solver: str
    steps: int
    residual: float


def _flatten(rates: Mapping[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([rates[n].reshape(rates[n].shape[0], -1) for n in names], dim=1)


def _unflatten(flat: Tensor, like: Mapping[str, Tensor], names: list[str]) -> dict[str, Tensor]:
    out, start = {}, 0
    for n in names:
        size = like[n][0].numel()
        out[n] = flat[:, start : start + size].reshape(like[n].shape)
        start += size
    return out


class _ImplicitGradient(torch.autograd.Function):
    """Identity forward; backward replaces ``dL/da`` by the solution ``g`` of ``g = J^T g + dL/da``."""

    @staticmethod
    def forward(ctx, mapped: Tensor, point: Tensor, rate_map: Callable, solve: Callable, record: Callable):
        ctx.rate_map, ctx.solve, ctx.record = rate_map, solve, record
        ctx.save_for_backward(point)
        return mapped.view_as(mapped)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (point,) = ctx.saved_tensors
        h = point.detach().requires_grad_()
        with torch.enable_grad():
            mapped = ctx.rate_map(h)

        def step(y: Tensor) -> Tensor:
            return torch.autograd.grad(mapped, h, y, retain_graph=True)[0] + grad

        solution, _, info = ctx.solve(step, torch.zeros_like(grad))
        ctx.record(info)
        return solution, None, None, None, None


def implicit_rates(
    rate_map: Callable[[dict[str, Tensor]], dict[str, Tensor]],
    simulated: Mapping[str, Tensor],
    *,
    solver: str = "broyden",
    max_iter: int = 30,
    tol: float = 1e-6,
    on_solve: Callable[[SolverStats], None] | None = None,
) -> dict[str, Tensor]:
    """The simulated rates, differentiable by the implicit function theorem at them.

    Args:
        rate_map: ``F``, from a dict of rates (each ``[B, ...]``, the keys of
            ``simulated``) to the dict of rates every layer fires given them;
            built from the model's weights, so that its graph reaches them.
        simulated: ``a``, the average spiking rates the simulation read
            (without a graph).
        solver: torchdeq's solver for ``g = J^T g + dL/da``: ``"broyden"``
            (the paper's), ``"anderson"`` or ``"fixed_point_iter"``.
        max_iter: iterations at most. Default 30 (the paper's).
        tol: stop once the residual's norm (per example) is below it.
        on_solve: called after each backward solve with its `SolverStats`.

    Returns:
        The rates by name: the values of ``simulated``; backward, the gradient
        ``(dF/dtheta)^T g`` reaches the weights through one evaluation of ``F``.
    """
    from torchdeq.solver import get_solver

    names = list(simulated)
    point = _flatten(simulated, names).detach()

    def flat_map(z: Tensor) -> Tensor:
        return _flatten(rate_map(_unflatten(z, simulated, names)), names)

    solve_fn = get_solver(solver)

    def solve(func: Callable, x0: Tensor):
        return solve_fn(func, x0, max_iter=max_iter, tol=tol, stop_mode="abs")

    def record(info: dict) -> None:
        if on_solve is not None:
            on_solve(SolverStats(solver, int(info["nstep"].max()), float(info["abs_lowest"].max())))

    mapped = flat_map(point)  # F(a): its graph carries dF/dtheta
    out = _ImplicitGradient.apply(mapped, point, flat_map, solve, record)
    out = out + (point - out).detach()  # the simulated rates forward
    return _unflatten(out, simulated, names)
