r"""The CustomNeuron as pure functions: the approximation neuron of the paper.

BrainTransformers (arXiv 2410.14687) sections 2.5.1 and 2.8.1, eq. 14, for step
``t`` since the last reset:

$$
    H_t = \lambda V_{t-1} + X_t \qquad
    \theta_t = \theta_{base} + \alpha t + \delta_t \\
    P_t = [H_t \ge \theta_t] \qquad N_t = [H_t \le -\theta_t] \qquad
    S_t = P_t - N_t \in \{-1, 0, +1\} \\
    O_t = A^+_t P_t - A^-_t N_t \qquad
    V_t = H_t - \theta_t S_t \ \text{(reset)} \quad\text{or}\quad V_t = H_t \ \text{(no reset)}
$$
``O_t`` is the neuron's output: a positive spike carries amplitude
$A^+_t$, a negative spike carries $-A^-_t$ (both amplitudes are
positive by default, so the output has the sign of the input). The per-step
threshold offsets $\delta_t$ and per-step amplitudes are optional (the
few-spike neuron idea, Stoeckl & Maass 2021); without them $\delta_t = 0$
and $A^\pm_t = A^\pm$.

Under a constant input the total output $\sum_t O_t$ is a staircase in
``x``; `staircase` finds its breakpoints so that the
count path can evaluate it by a sorted search.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .eiif import SpikeFn

__all__ = [
    "step_indices",
    "custom_neuron_thresholds",
    "custom_neuron_step",
    "custom_neuron_multi_step",
]


def step_indices(T: int, start: int | Tensor, device: torch.device | None = None) -> Tensor:
    """``start .. start+T-1`` as int64 (``start``: an int or a 0-d integer tensor, a node's step memory)."""
    steps = torch.arange(T, device=device)
    if isinstance(start, Tensor):
        return steps + start.to(device=steps.device, dtype=steps.dtype)
    return steps + start if start else steps


def custom_neuron_thresholds(
    T: int,
    theta_base: Tensor,
    alpha: Tensor,
    offsets: Tensor | None = None,
    *,
    start: int | Tensor = 0,
) -> Tensor:
    r"""Thresholds $\theta_t = \theta_{base} + \alpha t (+ \delta_t)$.

    Args:
        T: number of steps.
        theta_base: base threshold, shape ``[]`` or ``[P]`` for ``P`` neurons.
        alpha: threshold increase per step, broadcastable to ``theta_base``.
        offsets: optional per-step offsets $\delta$, shape ``[T_max]``
            or ``[P, T_max]``; steps ``start .. start+T-1`` are used.
        start: index of the first step since the last reset: an int or a 0-d
            integer tensor (a node's step memory).

    Returns:
        Shape ``[*P, T]``, in the dtype of ``theta_base``.
    """
    steps = step_indices(T, start, theta_base.device)
    thr = theta_base.unsqueeze(-1) + alpha.unsqueeze(-1) * steps.to(theta_base.dtype)
    if offsets is not None:
        thr = thr + offsets.index_select(-1, steps)
    return thr


def custom_neuron_step(
    x: Tensor,
    v: Tensor,
    theta: Tensor,
    lam: Tensor,
    amp_pos: Tensor,
    amp_neg: Tensor,
    spike_fn: SpikeFn,
    *,
    reset: bool = True,
    detach_reset: bool = False,
    zero_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One CustomNeuron step.

    Args:
        x: input $X_t$, shape ``[N, *]`` (compute dtype).
        v: membrane $V_{t-1}$, broadcastable to ``x``.
        theta: $\theta_t$, broadcastable to ``x``.
        lam: decay $\lambda$, broadcastable to ``x``.
        amp_pos: $A^+_t, A^-_t$, broadcastable to ``x``.
        amp_neg: $A^+_t, A^-_t$, broadcastable to ``x``.
        spike_fn: Heaviside with surrogate gradient (fires on ``u >= 0``).
        reset: subtract $\theta_t S_t$ after a spike (eq. 14).
        detach_reset: cut the gradient through the reset.
        zero_reset: instead, empty the membrane of a neuron that fired,
            $V_t = H_t (1 - |S_t|)$ (snnTorch's ``reset_mechanism="zero"``; not with ``reset``).

    Returns:
        ``(output, spike, v_next)``, each shaped like ``x``; ``spike`` in {-1, 0, +1}.
    """
    h = lam * v + x
    pos = spike_fn(h - theta)
    neg = spike_fn(-h - theta)
    spike = pos - neg
    out = amp_pos * pos - amp_neg * neg
    if reset or zero_reset:
        s = spike.detach() if detach_reset else spike
        h = h - theta * s if reset else h * (1 - s.abs())
    return out, spike, h


def custom_neuron_multi_step(
    x_seq: Tensor,
    v: Tensor,
    thresholds: Tensor,
    lam: Tensor,
    amp_pos: Tensor,
    amp_neg: Tensor,
    spike_fn: SpikeFn,
    *,
    reset: bool = True,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Run a CustomNeuron over a sequence.

    Args:
        x_seq: inputs, shape ``[T, N, *]`` (compute dtype).
        v: initial membrane, broadcastable to ``x_seq[0]``.
        thresholds: shape ``[T]`` (one threshold per step).
        lam: decay (0-d).
        amp_pos: amplitudes, shape ``[T]``.
        amp_neg: amplitudes, shape ``[T]``.
        spike_fn: as in `custom_neuron_step`.
        reset: as in `custom_neuron_step`.
        detach_reset: as in `custom_neuron_step`.

    Returns:
        ``(out_seq, spike_seq, v_last)`` with shapes ``[T, N, *]``, ``[T, N, *]``, ``[N, *]``.
    """
    outs, spikes = [], []
    for t, x in enumerate(x_seq.unbind(0)):  # unbind, not x_seq[t]: one gradient buffer, not one per step
        out, spike, v = custom_neuron_step(
            x,
            v,
            thresholds[t],
            lam,
            amp_pos[t],
            amp_neg[t],
            spike_fn,
            reset=reset,
            detach_reset=detach_reset,
        )
        outs.append(out)
        spikes.append(spike)
    return torch.stack(outs), torch.stack(spikes), v
