r"""The EI_IF neuron as pure functions: tensors in, tensors out.

The excitatory-inhibitory integrate-and-fire neuron of BrainTransformers
(arXiv 2410.14687, section 2.1, eq. 1), for step ``t`` counted from the last
reset (``t = 0, 1, ...``):

$$
    H_t = V_{t-1} + X_t \qquad
    \theta_t = \theta_0 + \alpha t \qquad
    S_t = \begin{cases} +1 & H_t \ge \theta_t \\ -1 & H_t \le -\theta_t \\
    0 & \text{otherwise} \end{cases} \\
    V_t = (1 - r)\,H_t \quad\text{(paper, soft\_reset=False)} \qquad
    V_t = (1 - r)\,(H_t - \theta_t S_t) \quad\text{(soft\_reset=True)}
$$
With ``r = 1`` the membrane is emptied after every step, so under a constant
input ``x`` the neuron fires at every step ``t`` with ``|x| >= theta_t``. Its
spike count over ``T`` steps is therefore a closed form of ``x``
(`eiif_count`); for the defaults ``theta_0 = 0.5, alpha = 1`` it is
``round(x)`` with halves rounded away from zero, clipped to ``[-T, T]``.

Firing is inclusive (``>=``), as in SpikingJelly. Dynamics run in float32 for
half-precision inputs and in float64 for float64 inputs (see
`compute_dtype`); thresholds are always produced by
`eiif_thresholds`, so the spike path and the count path compare exactly
the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "SpikeFn",
    "eiif_thresholds",
    "eiif_step",
    "eiif_multi_step",
    "eiif_count",
    "eiif_spikes_from_counts",
]

#: A Heaviside step ``u -> (u >= 0)`` whose backward is a surrogate gradient,
#: e.g. ``spikingjelly.activation_based.surrogate.Sigmoid()``.
SpikeFn = Callable[[Tensor], Tensor]


def _scalar(value: float | Tensor, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(dtype=dtype, device=device)
    return torch.tensor(value, dtype=dtype, device=device)


def eiif_thresholds(
    T: int,
    theta_0: float | Tensor,
    alpha: float | Tensor,
    *,
    start: int | Tensor = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""Thresholds $\theta_t = \theta_0 + \alpha t$ for ``t = start .. start+T-1``.

    Args:
        T: number of steps (>= 1).
        theta_0: base threshold (0-d tensor or float; differentiable if a tensor).
        alpha: threshold increase per step.
        start: index of the first step since the last reset: an int, or a 0-d
            integer tensor (the nodes' step memory ``t``, which keeps compiled
            graphs free of a recompilation per step).
        dtype: dtype of the result (the compute dtype of the dynamics).
        device: device of the result.

    Returns:
        Tensor of shape ``[T]``.
    """
    device = torch.device(device) if device is not None else None
    t = torch.arange(T, dtype=dtype, device=device)
    if isinstance(start, Tensor):
        t = t + start.to(dtype=dtype, device=t.device)  # exact: integers below 2**24 in float32
    elif start:
        t = t + start
    return _scalar(theta_0, dtype, t.device) + _scalar(alpha, dtype, t.device) * t


def eiif_step(
    x: Tensor,
    v: Tensor,
    theta: Tensor,
    keep: Tensor,
    spike_fn: SpikeFn,
    *,
    soft_reset: bool = False,
    detach_reset: bool = False,
    zero_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""One EI_IF step.

    Args:
        x: input $X_t$, shape ``[N, *]``, in the compute dtype.
        v: membrane $V_{t-1}$, broadcastable to ``x``.
        theta: threshold $\theta_t$ (0-d, or broadcastable to ``x``).
        keep: $1 - r$, the fraction of the membrane kept after the step.
        spike_fn: Heaviside with surrogate gradient (fires on ``u >= 0``); called only when a
            gradient must flow, otherwise the spikes are plain comparisons (the same values).
        soft_reset: subtract $\theta_t S_t$ before attenuation.
        detach_reset: cut the gradient through the reset.
        zero_reset: empty the membrane of a neuron that fired, $V_t = (1 - r) H_t (1 - |S_t|)$
            (snnTorch's ``reset_mechanism="zero"``; not with ``soft_reset``).

    Returns:
        ``(spike, v_next)``: spikes in {-1, 0, +1} and $V_t$, both shaped like ``x``.
    """
    h = v + x
    if torch.is_grad_enabled() and (
        x.requires_grad or v.requires_grad or theta.requires_grad or keep.requires_grad
    ):
        spike = spike_fn(h - theta) - spike_fn(-h - theta)
    else:  # no gradient to carry: the Heaviside itself (fl(h - theta) >= 0 exactly when h >= theta)
        spike = (h >= theta).to(h.dtype) - (h <= -theta).to(h.dtype)
    if soft_reset or zero_reset:
        s = spike.detach() if detach_reset else spike
        h = h - theta * s if soft_reset else h * (1 - s.abs())
    return spike, h * keep


def eiif_multi_step(
    x_seq: Tensor,
    v: Tensor,
    thresholds: Tensor,
    keep: Tensor,
    spike_fn: SpikeFn,
    *,
    soft_reset: bool = False,
    detach_reset: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Run EI_IF over a sequence.

    Args:
        x_seq: inputs, shape ``[T, N, *]``, in the compute dtype.
        v: initial membrane, broadcastable to ``x_seq[0]``.
        thresholds: $\theta_t$ for these ``T`` steps, shape ``[T]``
            (from `eiif_thresholds`).
        keep: $1 - r$ (0-d tensor).
        spike_fn: as in `eiif_step`.
        soft_reset: as in `eiif_step`.
        detach_reset: as in `eiif_step`.

    Returns:
        ``(spike_seq, v_last)`` with shapes ``[T, N, *]`` and ``[N, *]``.

    When ``keep`` is exactly 0 (``r = 1``) and needs no gradient, the membrane
    is empty after every step, so every step only sees its own input (the first
    also sees ``v``): with autograd on, all ``T`` steps are computed at once;
    without it, step by step with plain comparisons (cache-friendly, no
    surrogate). Both give the same spikes as the general loop.
    """
    T = x_seq.shape[0]
    needs_grad = torch.is_grad_enabled() and (
        x_seq.requires_grad or thresholds.requires_grad or keep.requires_grad or v.requires_grad
    )
    if not needs_grad:
        return _eiif_multi_step_inference(x_seq, v, thresholds, keep, soft_reset=soft_reset)
    if not keep.requires_grad and not torch.compiler.is_compiling() and bool(keep == 0):
        h = torch.cat([(v + x_seq[0]).unsqueeze(0), x_seq[1:]])
        theta = thresholds.view(T, *([1] * (x_seq.dim() - 1)))
        spike_seq = spike_fn(h - theta) - spike_fn(-h - theta)
        return spike_seq, torch.zeros_like(h[-1])
    if not (thresholds.requires_grad or keep.requires_grad) and not torch.compiler.is_compiling():
        return _EIIFSequence.apply(x_seq, v, thresholds, keep, spike_fn, soft_reset, detach_reset)
    spikes = []
    # unbind, not x_seq[t]: the backward of each index would fill a [T, ...] gradient of its own
    for x, theta in zip(x_seq.unbind(0), thresholds.unbind(0), strict=True):
        spike, v = eiif_step(
            x,
            v,
            theta,
            keep,
            spike_fn,
            soft_reset=soft_reset,
            detach_reset=detach_reset,
        )
        spikes.append(spike)
    return torch.stack(spikes), v


def _surrogate_derivative(spike_fn: SpikeFn, u: Tensor) -> Tensor:
    """``d spike_fn(u) / du`` elementwise: the surrogate's backward applied to ones."""
    with torch.enable_grad():
        u = u.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(spike_fn(u), u, torch.ones_like(u))
    return grad


class _EIIFSequence(torch.autograd.Function):
    r"""The EI_IF loop over a sequence as one autograd node (thresholds and ``keep`` constant).

    The forward is the inference loop's arithmetic, so the spikes are those of
    `eiif_step`; it keeps the charged membranes $H_t$. The backward runs the
    recurrence in reverse with the surrogate derivatives of all steps computed
    at once, $\partial S_t / \partial H_t = \sigma'(H_t - \theta_t) + \sigma'(-H_t - \theta_t)$:

    $$
    g_{H_t} = g_{S_t} \frac{\partial S_t}{\partial H_t}
        + (1 - r)\, g_{V_t} \Big(1 - \theta_t \frac{\partial S_t}{\partial H_t}\Big),
    \qquad g_{X_t} = g_{V_{t-1}} = g_{H_t}
    $$

    (the bracket is 1 without soft reset or with ``detach_reset``). The
    gradients equal autograd through the step loop; the graph is one node
    instead of about ten per step.
    """

    @staticmethod
    def forward(ctx, x_seq, v, thresholds, keep, spike_fn, soft_reset, detach_reset):  # type: ignore[override]
        charged = torch.empty_like(x_seq)
        spikes = torch.empty_like(x_seq)
        state = v
        for t in range(x_seq.shape[0]):
            h = state + x_seq[t]
            theta = thresholds[t]
            spike = (h >= theta).to(h.dtype) - (h <= -theta).to(h.dtype)
            charged[t] = h
            spikes[t] = spike
            state = (h - theta * spike if soft_reset else h) * keep
        ctx.save_for_backward(charged, thresholds, keep)
        ctx.spike_fn = spike_fn
        ctx.soft_reset = soft_reset
        ctx.detach_reset = detach_reset
        ctx.v_shape = v.shape
        ctx.set_materialize_grads(False)
        return spikes, state

    @staticmethod
    def backward(ctx, g_spikes, g_state):  # type: ignore[override]
        charged, thresholds, keep = ctx.saved_tensors
        theta = thresholds.view(-1, *([1] * (charged.dim() - 1))).to(charged.dtype)
        slope = _surrogate_derivative(ctx.spike_fn, charged - theta) + _surrogate_derivative(
            ctx.spike_fn, -charged - theta
        )
        through_reset = ctx.soft_reset and not ctx.detach_reset
        g_x = torch.empty_like(charged)
        carry = torch.zeros_like(charged[0]) if g_state is None else g_state.expand_as(charged[0])
        for t in range(charged.shape[0] - 1, -1, -1):
            g_v = carry * keep
            if through_reset:
                g_h = g_v - (g_v * theta[t]) * slope[t]
            else:
                g_h = g_v
            if g_spikes is not None:
                g_h = g_h + g_spikes[t] * slope[t]
            g_x[t] = g_h
            carry = g_h
        g_v0 = carry.sum_to_size(ctx.v_shape) if carry.shape != ctx.v_shape else carry
        return g_x, g_v0, None, None, None, None, None


def _eiif_multi_step_inference(
    x_seq: Tensor, v: Tensor, thresholds: Tensor, keep: Tensor, *, soft_reset: bool
) -> tuple[Tensor, Tensor]:
    """The spike path without autograd: same arithmetic, plain comparisons, one step at a time."""
    if torch.compiler.is_compiling():  # traced: a list of steps (writing slices of one output costs T passes)
        spikes = []
        for x, theta in zip(x_seq.unbind(0), thresholds.unbind(0), strict=True):
            h = v + x
            spike = (h >= theta).to(h.dtype) - (h <= -theta).to(h.dtype)
            v = (h - theta * spike if soft_reset else h) * keep
            spikes.append(spike)
        return torch.stack(spikes), v
    out = torch.empty_like(x_seq)
    empty = bool(keep == 0)  # r = 1 skips the membrane arithmetic
    for t in range(x_seq.shape[0]):
        h = x_seq[t] if empty and t > 0 else v + x_seq[t]
        theta = thresholds[t]
        spike = out[t]
        torch.ge(h, theta, out=spike)  # written as 0.0 / 1.0 in the float dtype
        spike.sub_((h <= -theta).to(h.dtype))
        if not empty or t == x_seq.shape[0] - 1:
            if soft_reset:
                h = h - theta * spike
            v = h * keep
    return out, v


class _EIIFCount(torch.autograd.Function):
    """Closed-form spike count with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, thresholds: Tensor, theta_0: Tensor, alpha: Tensor):  # type: ignore[override]
        count = torch.bucketize(x.abs(), thresholds, right=True).to(x.dtype)
        ctx.save_for_backward(x, theta_0, alpha)
        ctx.T = thresholds.shape[0]
        # sign * count, with +0.0 (as the spike path gives) where the count is 0
        return count.copysign_(x).masked_fill_(count == 0, 0.0)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, theta_0, alpha = ctx.saved_tensors
        if alpha.item() == 0.0:
            # a pure step function: pass the gradient straight through
            return grad, None, None, None
        # relaxed count n(|x|) = clip((|x| - theta_0) / alpha + 1/2, 0, T)
        rel = (x.abs() - theta_0) / alpha + 0.5
        inside = (rel > 0) & (rel < ctx.T)
        g = torch.where(inside, grad, torch.zeros_like(grad))
        grad_x = g / alpha
        sg = g * torch.sign(x)
        grad_theta = (-sg / alpha).sum() if ctx.needs_input_grad[2] else None
        grad_alpha = (-sg * (x.abs() - theta_0) / alpha**2).sum() if ctx.needs_input_grad[3] else None
        return grad_x, None, grad_theta, grad_alpha


def eiif_count(
    x: Tensor,
    T: int,
    theta_0: float | Tensor = 0.5,
    alpha: float | Tensor = 1.0,
) -> Tensor:
    r"""Spike count of an EI_IF neuron with ``r = 1`` under a constant input.

    $$
        C(x) = \operatorname{sign}(x)\,\#\{t < T : |x| \ge \theta_0 + \alpha t\}
    $$
    For ``theta_0 = 0.5, alpha = 1`` this is ``round(x)`` (halves away from
    zero) clipped to ``[-T, T]``. It equals ``eiif_multi_step`` summed over
    time for ``x_seq = x`` repeated ``T`` times, bit for bit.

    Gradient (straight-through): the count is relaxed to
    $\operatorname{sign}(x)\operatorname{clip}((|x|-\theta_0)/\alpha + 1/2, 0, T)$,
    which gives ``1/alpha`` to ``x`` where the neuron is not saturated and
    gradients to ``theta_0`` and ``alpha`` when they are tensors that
    require grad. With ``alpha = 0`` the gradient to ``x`` passes straight
    through.

    Args:
        x: constant input, any shape, floating dtype (computed in
            `compute_dtype`).
        T: number of time steps (>= 1).
        theta_0: base threshold (> 0).
        alpha: threshold increase per step (>= 0).

    Returns:
        Counts in ``[-T, T]`` with the shape and dtype of ``x``.
    """
    from .._checks import check_floating, check_timesteps, compute_dtype

    check_floating("x", x)
    T = check_timesteps("T", T)
    cdt = compute_dtype(x.dtype)
    xc = x.to(cdt)
    th0 = _scalar(theta_0, cdt, x.device)
    al = _scalar(alpha, cdt, x.device)
    thresholds = eiif_thresholds(T, th0.detach(), al.detach(), dtype=cdt, device=x.device)
    return _EIIFCount.apply(xc, thresholds, th0, al).to(x.dtype)


def eiif_spikes_from_counts(counts: Tensor, T: int) -> Tensor:
    """Spike trains of EI_IF neurons (``r = 1``, constant input) from their counts.

    A neuron with count ``c`` fires ``sign(c)`` at steps ``0 .. |c|-1`` and is
    silent afterwards (thresholds grow with ``t``), a "thermometer" code.

    Args:
        counts: integer-valued counts in ``[-T, T]``, shape ``[N, *]``.
        T: number of steps.

    Returns:
        Spikes of shape ``[T, N, *]`` in the dtype of ``counts``.
    """
    from .._checks import check_timesteps

    T = check_timesteps("T", T)
    t = torch.arange(T, device=counts.device).view(T, *([1] * counts.dim()))
    return (t < counts.abs().unsqueeze(0)).to(counts.dtype) * torch.sign(counts).unsqueeze(0)
