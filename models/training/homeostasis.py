r"""Stage 3, the neurons: threshold, adaptation and decay updates and the time-step objective.

**Eqs. 29-31** move each neuron layer's base threshold $\theta_{base}$,
threshold adaptation $\alpha$ and attenuation $r$ toward a target spike
rate and membrane potential, scaled by the global factor $G$:

$$
\Delta\theta_{base} = \eta_\theta G (\bar S - S_{target}), \quad
\Delta\alpha = \eta_\alpha G (\bar V - V_{target}), \quad
\Delta r = \eta_r G (\bar V - V_{rest}).
$$

$\bar S$ is the mean number of spikes per neuron per step and $\bar V$
the mean magnitude of the membrane charge $H_t$ (before firing). The paper
writes eq. 29 as $S_{target} - \bar S$, which raises the threshold of a
neuron that fires too little and so drives it further from its target; the
sign here is the homeostatic one. The gradient parts of eqs. 29-31
($\eta' \partial L_{task} / \partial\theta$, ...) come from the optimiser
when the parameters are learnable (``learnable=True``) and the combined loss
is minimised. `EIIFNode` and `CustomNeuronNode` share one value of each
parameter across a layer, so a layer is one "neuron" here; for a
`CustomNeuronNode` the decay $\lambda$ is the kept fraction, $r = 1 - \lambda$.

**Eq. 32**, the expected time of the first spike with a soft firing probability
$P_t = \sigma((|H_t| - \theta_t)/\lambda)$:
$\hat T = \sum_{t=1}^{T} t\, P_t \prod_{k<t} (1 - P_k)$.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bt_neurons import CustomNeuronNode, EIIFNode, _checks

__all__ = ["expected_first_spike_time", "homeostasis_update", "membrane_charge"]


def expected_first_spike_time(charge: Tensor, thresholds: Tensor, temperature: float = 0.1) -> Tensor:
    """Eq. 32 for every neuron: ``charge`` ``[T, ...]``, ``thresholds`` ``[T]`` -> ``[...]``.

    Differentiable in ``charge`` (and ``thresholds``); steps are counted from 1.
    """
    if charge.dim() < 1 or thresholds.dim() != 1 or thresholds.shape[0] != charge.shape[0]:
        raise ValueError(
            f"charge must be [T, ...] and thresholds [T], got {tuple(charge.shape)} and "
            f"{tuple(thresholds.shape)}"
        )
    _checks.check_positive("temperature", temperature)
    shape = (-1,) + (1,) * (charge.dim() - 1)
    p = torch.sigmoid((charge.abs() - thresholds.to(charge.dtype).reshape(shape)) / temperature)
    silent_before = torch.cumprod(torch.cat([torch.ones_like(p[:1]), 1 - p[:-1]]), dim=0)
    steps = torch.arange(1, charge.shape[0] + 1, dtype=charge.dtype, device=charge.device).reshape(shape)
    return (steps * p * silent_before).sum(0)


def membrane_charge(node: EIIFNode | CustomNeuronNode, x_seq: Tensor, v_seq: Tensor | None) -> Tensor:
    r"""$H_t = k V_{t-1} + X_t$ for a multi-step run from a reset state (``k`` = 1 for EI_IF, $\lambda$ for
    CustomNeuron); ``v_seq`` ``[T, ...]`` is the membrane after each step (``None``: the input alone)."""
    if v_seq is None:
        return x_seq
    previous = torch.cat([torch.zeros_like(v_seq[:1]), v_seq[:-1]]).to(x_seq.dtype)
    keep = node.decay.to(x_seq.dtype) if isinstance(node, CustomNeuronNode) else 1.0
    return x_seq + keep * previous


@torch.no_grad()
def homeostasis_update(
    node: EIIFNode | CustomNeuronNode,
    spike_rate: float,
    membrane: float,
    modulation: float,
    *,
    s_target: float = 0.1,
    v_target: float = 0.5,
    v_rest: float = 0.0,
    eta_theta: float = 0.01,
    eta_alpha: float = 0.01,
    eta_r: float = 0.01,
) -> dict[str, float]:
    """Apply eqs. 29-31 to ``node``'s parameters in place; returns the changes.

    Values stay valid: thresholds > 0, ``alpha >= 0`` and ``r`` in [0, 1] for EI_IF;
    ``theta_base > 0`` and ``decay >= 0`` for CustomNeuron.
    """
    values = dict(
        spike_rate=spike_rate,
        membrane=membrane,
        modulation=modulation,
        s_target=s_target,
        v_target=v_target,
        v_rest=v_rest,
        eta_theta=eta_theta,
        eta_alpha=eta_alpha,
        eta_r=eta_r,
    )
    for name, value in values.items():  # a NaN would spread into the parameters and stay there
        if not math.isfinite(_checks.check_number(name, value)):
            raise ValueError(f"{name} must be finite, got {value!r}: nothing was updated")
    g = float(modulation)
    d_theta = eta_theta * g * (float(spike_rate) - s_target)
    d_alpha = eta_alpha * g * (float(membrane) - v_target)
    d_r = eta_r * g * (float(membrane) - v_rest)
    if isinstance(node, EIIFNode):
        node.theta_0.add_(d_theta).clamp_(min=1e-3)
        node.alpha.add_(d_alpha).clamp_(min=0.0)
        node.r.add_(d_r).clamp_(0.0, 1.0)
    elif isinstance(node, CustomNeuronNode):
        node.theta_base.add_(d_theta).clamp_(min=1e-3)
        node.alpha.add_(d_alpha)
        node.decay.sub_(d_r).clamp_(min=0.0)  # r = 1 - decay
    else:
        raise TypeError(f"node must be an EIIFNode or CustomNeuronNode, got {type(node).__name__}")
    return {"theta": d_theta, "alpha": d_alpha, "r": d_r}
