"""bt-neurons: spiking neurons of the BrainTransformers SNN-LLM for SpikingJelly and snnTorch.

The SpikingJelly face (multi-step ``neuron.BaseNode`` subclasses) lives here;
the snnTorch face in `snntorch`; the pure dynamics in
`functional`.
"""

from importlib.metadata import PackageNotFoundError, version

from .custom_neuron_node import CustomNeuronNode
from .eiif_node import EIIFNode

#: The paper's name for `CustomNeuronNode`.
CustomNeuron = CustomNeuronNode

try:
    __version__ = version("bt-neurons")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = ["CustomNeuron", "CustomNeuronNode", "EIIFNode", "__version__"]
