r"""Stage 3, the local part: STDP from spike timing, synaptic tags, the modulated update.

Pure functions of tensors (paper eqs. 24, 25 and 33).

**Eq. 25** for one pair of spikes, post-synaptic neuron ``i`` firing at
$t_i$ and presynaptic neuron ``j`` at $t_j$, $\Delta t = t_i - t_j$:

$$
\delta_{ij} = A_+ e^{-\Delta t / \tau_+} \ (\Delta t > 0), \qquad
\delta_{ij} = -A_- e^{\Delta t / \tau_-} \ (\Delta t \le 0),
$$

summed over all pairs of spikes and averaged over the ``N`` samples (tokens).
EI_IF spikes are signed: each pair counts with the product of its two signs,
so a negative spike teaches the opposite of a positive one. `stdp_delta`
computes the all-pairs sum with two exponential traces and one matrix
product per step (memory ``T N (in + out)``). SpikingJelly's
``functional.learning.stdp_linear_step`` computes the same rule with Euler
traces (decay ``1 - 1/tau``), counts a simultaneous pair as both potentiation
and depression, and forms an ``[N, out, in]`` outer product per step (about
1 GB for one step of a 576 -> 1536 layer over 256 tokens); the tests check
that the two agree once the decay and the simultaneous pairs are matched.

**Eq. 33**, synaptic tags: $\mathrm{Tag}_{ij} = \sigma(a^{pre}_j + a^{post}_i - L_{task})$
with the activities $a$ = spikes per neuron per step.

**Eq. 24**, the update, gated by the tags:
$\Delta w_{ij} = \eta_w\, G\, \mathrm{Tag}_{ij} (\delta_{ij} - w_{ij})$.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["spike_activity", "stdp_delta", "stdp_update", "synaptic_tags"]


def _check_spikes(name: str, s: Tensor) -> None:
    if not isinstance(s, Tensor) or not s.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor of spikes, got {type(s).__name__}")
    if s.dim() != 3:
        raise ValueError(f"{name} must have shape [T, N, features], got {tuple(s.shape)}")


def _check_tau(name: str, tau: float) -> float:
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (time steps), got {tau!r}")
    return float(tau)


def stdp_delta(
    pre: Tensor,
    post: Tensor,
    *,
    a_plus: float = 0.01,
    a_minus: float = 0.01,
    tau_plus: float = 2.0,
    tau_minus: float = 2.0,
) -> Tensor:
    r"""The STDP matrix $\delta$ of eq. 25, ``[out, in]``.

    Args:
        pre: presynaptic spikes ``[T, N, in]`` (in {-1, 0, +1}, or any real values).
        post: postsynaptic spikes ``[T, N, out]``.
        a_plus: potentiation amplitude $A_+ \ge 0$.
        a_minus: depression amplitude $A_- \ge 0$.
        tau_plus: potentiation time constant $\tau_+ > 0$ in steps.
        tau_minus: depression time constant $\tau_- > 0$ in steps.

    Returns:
        $\frac1N \sum_n \sum_{t_i, t_j} s_i(t_i)\, s_j(t_j)\, K(t_i - t_j)$
        with the kernel of eq. 25.
    """
    _check_spikes("pre", pre)
    _check_spikes("post", post)
    if pre.shape[:2] != post.shape[:2]:
        raise ValueError(
            f"pre and post must share T and N (the first two axes), got {tuple(pre.shape)} and "
            f"{tuple(post.shape)}"
        )
    for name, a in (("a_plus", a_plus), ("a_minus", a_minus)):
        if isinstance(a, bool) or not isinstance(a, int | float) or not math.isfinite(a) or a < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {a!r}")
    decay_plus = math.exp(-1.0 / _check_tau("tau_plus", tau_plus))
    decay_minus = math.exp(-1.0 / _check_tau("tau_minus", tau_minus))
    dtype = torch.promote_types(pre.dtype, torch.float32)
    pre, post = pre.to(dtype), post.to(dtype)
    T, N = pre.shape[0], pre.shape[1]
    x_pre = torch.zeros_like(pre[0])  # sum over earlier pre spikes of s e^{-(t - t_j)/tau+}
    y_post = torch.zeros_like(post[0])  # sum over post spikes up to now of s e^{-(t - t_i)/tau-}
    potentiation = pre.new_zeros(post.shape[2], pre.shape[2])
    depression = pre.new_zeros(post.shape[2], pre.shape[2])
    for t in range(T):
        x_pre = x_pre * decay_plus
        y_post = y_post * decay_minus + post[t]
        potentiation += post[t].T @ x_pre  # pre strictly before post: dt > 0
        depression += y_post.T @ pre[t]  # post at or before pre: dt <= 0
        x_pre = x_pre + pre[t]
    return (a_plus * potentiation - a_minus * depression) / max(N, 1)


def spike_activity(spikes: Tensor) -> Tensor:
    """Spikes per neuron per step, ``mean |s|`` over steps and samples: ``[T, N, F]`` -> ``[F]``."""
    _check_spikes("spikes", spikes)
    return spikes.abs().mean(dim=(0, 1))


def synaptic_tags(pre_activity: Tensor, post_activity: Tensor, task_loss: float | Tensor) -> Tensor:
    r"""Eq. 33: $\mathrm{Tag}_{ij} = \sigma(a^{pre}_j + a^{post}_i - L_{task})$, ``[out, in]``."""
    loss = float(task_loss)
    if not math.isfinite(loss):
        raise ValueError(f"task_loss must be finite, got {loss}")
    if pre_activity.dim() != 1 or post_activity.dim() != 1:
        raise ValueError("pre_activity and post_activity must be 1-D (one value per neuron)")
    return torch.sigmoid(post_activity[:, None] + pre_activity[None, :] - loss)


def stdp_update(
    weight: Tensor,
    delta: Tensor,
    modulation: float,
    *,
    eta_w: float = 1e-3,
    tags: Tensor | None = None,
    tag_threshold: float | None = None,
) -> Tensor:
    r"""Eq. 24 gated by the tags: $\Delta w = \eta_w G\,\mathrm{Tag} \odot (\delta - w)$.

    Args:
        weight: ``[out, in]``.
        delta: `stdp_delta`, same shape.
        modulation: the global factor $G$ (`GlobalModulation`); 0 changes nothing.
        eta_w: learning rate $\eta_w$.
        tags: `synaptic_tags` (default: every synapse tagged 1).
        tag_threshold: if given, only synapses with ``Tag >= tag_threshold``
            update (a hard selection), with the full step.

    Returns:
        The update $\Delta w$ (not applied), shape of ``weight``.
    """
    if delta.shape != weight.shape:
        raise ValueError(
            f"delta must have the weight's shape {tuple(weight.shape)}, got {tuple(delta.shape)}"
        )
    g = float(modulation)
    if not math.isfinite(g):
        raise ValueError(f"modulation must be finite, got {g}")
    if isinstance(eta_w, bool) or not isinstance(eta_w, int | float) or not math.isfinite(eta_w):
        raise ValueError(f"eta_w must be a finite number, got {eta_w!r}")
    gate: Tensor | float = 1.0
    if tags is not None:
        if tags.shape != weight.shape:
            raise ValueError(
                f"tags must have the weight's shape {tuple(weight.shape)}, got {tuple(tags.shape)}"
            )
        gate = (
            (tags >= tag_threshold).to(weight.dtype) if tag_threshold is not None else tags.to(weight.dtype)
        )
    return (eta_w * g) * gate * (delta.to(weight.dtype) - weight.detach())
