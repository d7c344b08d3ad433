"""Pure functions of bt-neurons: neuron dynamics as tensors in, tensors out.

The stateful modules (`EIIFNode`,
`CustomNeuronNode`, the snnTorch wrappers in
`snntorch`) only hold state and call these.
"""

from .custom_neuron import custom_neuron_multi_step, custom_neuron_step, custom_neuron_thresholds
from .eiif import (
    SpikeFn,
    eiif_count,
    eiif_multi_step,
    eiif_spikes_from_counts,
    eiif_step,
    eiif_thresholds,
)
from .staircase import Staircase, constant_input_staircase, evaluate_staircase, positive_patterns

__all__ = [
    "SpikeFn",
    "Staircase",
    "constant_input_staircase",
    "custom_neuron_multi_step",
    "custom_neuron_step",
    "custom_neuron_thresholds",
    "eiif_count",
    "eiif_multi_step",
    "eiif_spikes_from_counts",
    "eiif_step",
    "eiif_thresholds",
    "evaluate_staircase",
    "positive_patterns",
]
