"""Fully spiking transformer operators built with the shipped approximators.

Layer 1 (``bt_neurons``) defines the operators and takes the approximators
as arguments, so that it never imports this layer; these factories pass the
fitted ones.
"""

from __future__ import annotations

from bt_neurons.snn_rmsnorm import SNNRMSNorm
from bt_neurons.snn_softmax import SNNSoftmax

from .builtin import ExpApproximator, ReciprocalApproximator, RSqrtApproximator, SquareApproximator

__all__ = ["spiking_softmax", "spiking_rmsnorm"]


def spiking_softmax(*, causal: bool = False) -> SNNSoftmax:
    """An SNNSoftmax whose exp and reciprocal are the shipped spiking approximators."""
    return SNNSoftmax("spiking", exp=ExpApproximator(), reciprocal=ReciprocalApproximator(), causal=causal)


def spiking_rmsnorm(hidden_size: int, eps: float = 1e-6) -> SNNRMSNorm:
    """An SNNRMSNorm whose square and inverse square root are the shipped spiking approximators."""
    return SNNRMSNorm(
        hidden_size, eps, mode="spiking", square=SquareApproximator(), rsqrt=RSqrtApproximator()
    )
