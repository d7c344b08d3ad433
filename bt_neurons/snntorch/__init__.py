"""The snnTorch face of bt-neurons.

Neurons with snnTorch's calling convention (``spk, mem = neuron(x, mem)``,
``init_hidden``, ``output``, ``reset_hidden()``, ``detach_hidden()``) that
run the same dynamics as the SpikingJelly nodes in `bt_neurons`, and the
spike-train operators (``Synapsis``, ``SNNMatmul``, ``SNNMultiply``,
``SpikeTrainOperator``) with the same convention.
"""

from ._nir_hook import teach_snntorch_export
from .custom_neuron import CustomNeuron
from .eiif import EIIF
from .reset import detach_hidden, register_resettable, reset
from .spike_trains import SNNMatmul, SNNMultiply, SpikeTrainOperator, Synapsis

teach_snntorch_export()  # snntorch.export_to_nir maps bt's neurons exactly (when nir is installed)

__all__ = [
    "EIIF",
    "CustomNeuron",
    "Synapsis",
    "SNNMatmul",
    "SNNMultiply",
    "SpikeTrainOperator",
    "reset",
    "detach_hidden",
    "register_resettable",
]
