r"""Stage 3, the coefficients and the combined loss (paper eq. 34).

$$
\begin{aligned}
L = {}& \lambda_w \sum_{ij} \mathrm{Tag}_{ij} (w_{ij} - \delta_{ij})^2
 + \lambda_\theta \sum_i (S_{target} - \bar S_i)^2
 + \lambda_\alpha \sum_i (\bar V_i - V_{target})^2
 + \lambda_r \sum_i (\bar V_i - V_{rest})^2 \\
 & + \lambda_C \sum_i \Big(\sum_j w_{ij} - C_i\Big)^2
 + \lambda_T (\hat T - T_{target})^2 + \lambda_{task} L_{task}
 + \lambda_{reg} \sum_{ij} w_{ij}^2 .
\end{aligned}
$$

Each sum is taken as a mean by default (``reduction="mean"``): summed over
a layer's synapses, a fixed coefficient would weigh a 576 x 1536 layer a
million times more than the task loss. ``reduction="sum"`` gives the literal
form. Minimising $L$ with an optimiser is eqs. 35-38.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from torch import Tensor

__all__ = ["StageThreeConfig", "combined_loss", "LOSS_TERMS"]

#: The terms of eq. 34, in order, with the coefficient that weighs each.
LOSS_TERMS = {
    "stdp": "lambda_stdp",
    "rate": "lambda_theta",
    "adaptation": "lambda_alpha",
    "rest": "lambda_r",
    "row_sum": "lambda_c",
    "time": "lambda_time",
    "task": "lambda_task",
    "weight_decay": "lambda_reg",
}


@dataclass
class StageThreeConfig:
    """Every coefficient of stage 3 (paper defaults where the paper gives them).

    STDP (eq. 25): ``a_plus``, ``a_minus``, ``tau_plus``, ``tau_minus`` (in steps).
    Update (eq. 24): ``eta_w``; ``tag_threshold`` turns the soft tags of eq. 33
    into a hard selection. Global factor (eqs. 26, 28): ``beta``, ``window``.
    Neurons (eqs. 29-31): ``s_target`` (spikes per neuron per step),
    ``v_target``, ``v_rest`` (membrane charge in units of the input; the paper's
    -65 / -70 mV do not fit a converted network, whose first threshold is 0.5
    and whose membrane is emptied to 0), ``eta_theta``, ``eta_alpha``, ``eta_r``.
    Time objective (eq. 32): ``t_target``, ``time_temperature``.
    Loss (eq. 34): the ``lambda_*`` weights, ``c_target`` and ``reduction``.
    """

    a_plus: float = 0.01
    a_minus: float = 0.01
    tau_plus: float = 2.0
    tau_minus: float = 2.0
    eta_w: float = 1e-3
    tag_threshold: float | None = None
    beta: float = 0.1
    window: int = 20
    s_target: float = 0.1
    v_target: float = 0.5
    v_rest: float = 0.0
    eta_theta: float = 0.01
    eta_alpha: float = 0.01
    eta_r: float = 0.01
    t_target: float = 10.0
    time_temperature: float = 0.1
    c_target: float = 1.0
    lambda_stdp: float = 0.1
    lambda_theta: float = 0.1
    lambda_alpha: float = 0.1
    lambda_r: float = 0.1
    lambda_c: float = 0.1
    lambda_time: float = 0.1
    lambda_task: float = 1.0
    lambda_reg: float = 0.01
    reduction: str = "mean"

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "reduction":
                if v not in ("mean", "sum"):
                    raise ValueError(f"reduction must be 'mean' or 'sum', got {v!r}")
            elif f.name == "window":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ValueError(f"window must be an int >= 1, got {v!r}")
            elif f.name == "tag_threshold" and v is None:
                continue
            elif isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                raise ValueError(f"{f.name} must be a finite number, got {v!r}")
        for name in ("tau_plus", "tau_minus", "time_temperature"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("a_plus", "a_minus", *LOSS_TERMS.values()):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """The coefficients as a JSON-serialisable dict."""
        return asdict(self)


def combined_loss(terms: dict[str, Tensor], config: StageThreeConfig) -> Tensor:
    """``sum_k lambda_k * terms[k]`` over the terms of eq. 34 (`LOSS_TERMS`); absent terms count 0.

    Raises:
        ValueError: an unknown term, or no ``"task"`` term.
    """
    unknown = set(terms) - set(LOSS_TERMS)
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; expected among {list(LOSS_TERMS)}")
    if "task" not in terms:
        raise ValueError("terms must contain the task loss ('task')")
    total = terms["task"] * config.lambda_task
    for name, value in terms.items():
        if name != "task":
            total = total + getattr(config, LOSS_TERMS[name]) * value
    return total
