r"""Stage 3, the global factor: task guidance against a moving baseline (paper eqs. 26-28).

$$
L_{baseline}(t) = \frac1W \sum_{k=t-W+1}^{t} L_{task}(k), \qquad
G = \sigma\big(\beta\,(L_{baseline} - L_{task})\big).
$$

A batch whose task loss is below the recent average gets $G > 1/2$ (its
local changes are reinforced), one above it $G < 1/2$. As in eq. 28 the
window includes the current loss; until ``W`` losses have been seen it
averages those there are (so the first call gives $G = 1/2$).
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor

__all__ = ["GlobalModulation"]


class GlobalModulation:
    """Moving-average baseline and the global factor ``G``.

    Args:
        beta: sensitivity $\\beta$ (paper default 0.1).
        window: ``W``, the number of recent losses in the baseline (default 20;
            the paper gives no value).
    """

    def __init__(self, beta: float = 0.1, window: int = 20) -> None:
        if isinstance(beta, bool) or not isinstance(beta, int | float) or not math.isfinite(beta):
            raise ValueError(f"beta must be a finite number, got {beta!r}")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an int >= 1, got {window!r}")
        self.beta = float(beta)
        self.window = window
        self.history: deque[float] = deque(maxlen=window)

    @property
    def baseline(self) -> float | None:
        """The current baseline (``None`` before the first loss)."""
        return sum(self.history) / len(self.history) if self.history else None

    def __call__(self, task_loss: float | Tensor) -> float:
        """Record ``task_loss`` and return ``G`` for it (eqs. 26, 28).

        Raises:
            ValueError: a non-finite loss; the history is left unchanged.
        """
        loss = float(task_loss.detach()) if isinstance(task_loss, Tensor) else float(task_loss)
        if not math.isfinite(loss):
            raise ValueError(f"task_loss must be finite, got {loss}: the baseline was not updated")
        self.history.append(loss)
        return float(torch.sigmoid(torch.tensor(self.beta * (self.baseline - loss))))

    def state_dict(self) -> dict:
        """``beta``, ``window`` and the recent losses (JSON-serialisable)."""
        return {"beta": self.beta, "window": self.window, "history": list(self.history)}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (validated before anything changes)."""
        restored = GlobalModulation(state["beta"], state["window"])
        history = [float(v) for v in state["history"]]
        if not all(math.isfinite(v) for v in history):
            raise ValueError("history must hold finite losses")
        restored.history.extend(history)
        self.beta, self.window, self.history = restored.beta, restored.window, restored.history
