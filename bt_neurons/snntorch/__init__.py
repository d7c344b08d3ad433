"""The snnTorch face of bt-neurons.

Neurons with snnTorch's calling convention (``spk, mem = neuron(x, mem)``,
``init_hidden``, ``output``, ``reset_hidden()``, ``detach_hidden()``) that
run the same dynamics as the SpikingJelly nodes in `bt_neurons`.
"""

from ._nir_hook import teach_snntorch_export
from .custom_neuron import CustomNeuron
from .eiif import EIIF
from .reset import detach_hidden, register_resettable, reset

teach_snntorch_export()  # snntorch.export_to_nir maps bt's neurons exactly (when nir is installed)

__all__ = ["EIIF", "CustomNeuron", "reset", "detach_hidden", "register_resettable"]
