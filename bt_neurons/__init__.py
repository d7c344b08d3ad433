"""bt-neurons: spiking neurons of the BrainTransformers SNN-LLM for SpikingJelly and snnTorch.

The SpikingJelly face (multi-step ``neuron.BaseNode`` subclasses) lives here;
the snnTorch face in `snntorch`; the pure dynamics in
`functional`.

Importing `bt_neurons` first also lets ``transformers`` be imported on machines
where the torchvision that SpikingJelly pulls in cannot load (a CPU torch with
PyPI's CUDA torchvision): it is then marked absent, not broken.
"""

from importlib.metadata import PackageNotFoundError, version

from . import (  # noqa: F401  (first, in this order:)
    _commands,  # Ctrl-C while a bt-* command imports torch exits cleanly, with 130
    _optional_imports,  # a broken torchvision must read as absent
)
from ._nir_spikingjelly_hook import teach_spikingjelly_export
from .accounting import SpikeStats, track_spikes
from .custom_neuron_node import CustomNeuronNode
from .eiif_encoder import EIIFEncoder
from .eiif_node import EIIFNode
from .quantizer import Quantizer
from .snn_matmul import SNNMatmul
from .snn_matmul_node import SNNMatmulNode
from .snn_multiply import SNNMultiply
from .snn_multiply_node import SNNMultiplyNode
from .snn_rmsnorm import SNNRMSNorm
from .snn_softmax import SNNSoftmax
from .spike_train_operator import SpikeTrainOperator
from .synapsis import QSynapsis, Synapsis, synapses_of_one_input
from .synapsis_node import SynapsisNode
from .synop_counter import SignedSynOpCounter, count_synops

teach_spikingjelly_export()  # SpikingJelly's export_to_nir maps bt's nodes exactly (when nir is installed)

#: The paper's name for `CustomNeuronNode`.
CustomNeuron = CustomNeuronNode

try:
    __version__ = version("bt-neurons")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "CustomNeuron",
    "CustomNeuronNode",
    "EIIFEncoder",
    "EIIFNode",
    "QSynapsis",
    "Quantizer",
    "SNNMatmul",
    "SNNMatmulNode",
    "SNNMultiply",
    "SNNMultiplyNode",
    "SNNRMSNorm",
    "SNNSoftmax",
    "SignedSynOpCounter",
    "SpikeStats",
    "SpikeTrainOperator",
    "Synapsis",
    "SynapsisNode",
    "__version__",
    "count_synops",
    "synapses_of_one_input",
    "track_spikes",
]
