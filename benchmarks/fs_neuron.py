"""The few-spike (FS) neuron of Stoeckl & Maass (Nature Machine Intelligence 3, 230-238, 2021), as a peer.

One neuron, ``K`` steps: ``v(1) = x``; for ``t = 1..K``: ``z(t) = H(v(t) - T(t))``,
``v(t+1) = v(t) - h(t) z(t)``; output ``sum_t d(t) z(t)``, with learnable ``K``-vectors
``T``, ``h`` and ``d`` (``3 K`` parameters). Trained here with Adam (cosine learning-rate
decay) on the MSE against a target, with a straight-through surrogate gradient (hard step
forward, the derivative of ``sigmoid((v - T) / tau)`` backward, ``tau`` annealed from 0.5 to
0.05). The benchmark imports it; nothing here is part of the library.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "FSResult",
    "FSVariant",
    "binary_init",
    "fs_forward",
    "fs_model",
    "fs_training_sampler",
    "silu_variants",
    "staircase_init",
    "train_fs",
]


def fs_training_sampler(n: int, g: torch.Generator) -> Tensor:
    """Half N(0, 1), half U[-8, 8] (the FS neuron's training distribution for SiLU)."""
    pick = torch.rand(n, generator=g) < 0.5
    normal = torch.randn(n, generator=g, dtype=torch.float64)
    uniform = -8.0 + 16.0 * torch.rand(n, generator=g, dtype=torch.float64)
    return torch.where(pick, normal, uniform).to(torch.float32).to(torch.float64)


def fs_forward(x: Tensor, T: Tensor, h: Tensor, d: Tensor, tau: float | None = None) -> tuple[Tensor, Tensor]:
    """FS neuron over ``K = len(T)`` steps: output and spike count per input.

    ``tau=None``: the hard step. Otherwise the spikes are still hard in the forward pass, and the
    backward pass uses the derivative of ``sigmoid((v - T) / tau)`` (straight-through surrogate).
    """
    v = x
    out = torch.zeros_like(x)
    count = torch.zeros_like(x)
    for t in range(len(T)):
        hard = (v >= T[t]).to(x.dtype)
        if tau is None:
            z = hard
        else:
            soft = torch.sigmoid((v - T[t]) / tau)
            z = hard + soft - soft.detach()
        v = v - h[t] * z
        out = out + d[t] * z
        count = count + hard
    return out, count


def binary_init(K: int) -> tuple[Tensor, Tensor, Tensor]:
    """``T(t) = h(t) = d(t) = 2**(3 - t)``, ``t = 1..K``: a binary code of ``x`` in ``[0, 8)``."""
    e = torch.tensor([2.0 ** (3 - t) for t in range(1, K + 1)], dtype=torch.float64)
    return e.clone(), e.clone(), e.clone()


def staircase_init(K: int, negative_thresholds: tuple[float, ...] = (-5.0, -3.5, -2.3, -1.3)):
    """First steps: a staircase on SiLU's negative dip (``h = 0``), then the binary code.

    With ``K <= 4`` only the last ``K // 2`` negative thresholds are kept.
    """
    if K <= len(negative_thresholds):
        negative_thresholds = negative_thresholds[-(K // 2) :] if K >= 2 else ()
    m = len(negative_thresholds)
    thr = torch.tensor(negative_thresholds, dtype=torch.float64)
    levels = torch.cat([torch.zeros(1, dtype=torch.float64), F.silu(thr)])
    e = binary_init(K - m)[0]
    T = torch.cat([thr, e])
    h = torch.cat([torch.zeros(m, dtype=torch.float64), e])
    d = torch.cat([levels[1:] - levels[:-1], e])
    return T, h, d


@dataclass
class FSVariant:
    """One way to start and constrain the FS neuron."""

    key: str
    label: str
    init: tuple[Tensor, Tensor, Tensor]
    positive_thresholds: bool


@dataclass
class FSResult:
    """A trained FS neuron: its parameters, held-out MSE and training time."""

    variant: FSVariant
    params: tuple[Tensor, Tensor, Tensor]
    val_mse: float
    seconds: float

    @property
    def K(self) -> int:
        return len(self.params[0])


def silu_variants(K: int) -> list[FSVariant]:
    """The three SiLU variants compared: paper-style, all free, negative-staircase start."""
    return [
        FSVariant("positive", f"FS K={K}, thresholds >= 0, binary init (paper-style)", binary_init(K), True),
        FSVariant("signed", f"FS K={K}, all free, binary init", binary_init(K), False),
        FSVariant("stairs", f"FS K={K}, all free, negative-staircase init", staircase_init(K), False),
    ]


def train_fs(
    variant: FSVariant,
    steps: int,
    seed: int,
    *,
    target: Callable[[Tensor], Tensor] = F.silu,
    sampler: Callable[[int, torch.Generator], Tensor] = fs_training_sampler,
    batch: int = 8192,
    lr: float = 1e-2,
) -> FSResult:
    """Train ``variant`` for ``steps`` Adam steps from ``seed``; the held-out MSE is on another seed."""
    start = time.perf_counter()
    g = torch.Generator().manual_seed(seed)
    T, h, d = (p.clone().requires_grad_() for p in variant.init)
    opt = torch.optim.Adam([T, h, d], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    tau0, tau1 = 0.5, 0.05
    for i in range(steps):
        x = sampler(batch, g)
        tau = tau0 * (tau1 / tau0) ** (i / max(steps - 1, 1))
        out, _ = fs_forward(x, T, h, d, tau)
        loss = (out - target(x)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if variant.positive_thresholds:
            with torch.no_grad():
                T.clamp_(min=0.0)
    params = (T.detach(), h.detach(), d.detach())
    xv = sampler(1 << 16, torch.Generator().manual_seed(seed + 1))
    val = (fs_forward(xv, *params)[0] - target(xv)).pow(2).mean().item()
    return FSResult(variant, params, val, time.perf_counter() - start)


def fs_model(params: tuple[Tensor, Tensor, Tensor]) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """The trained neuron as a model: float64 inputs -> (output, spikes per input)."""

    def model(x: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            return fs_forward(x, *params)

    return model
