"""The BrainTransformers spiking LLM: a Llama / Qwen2 checkpoint converted into a spiking network.

Installed as ``bt_neurons.models.braintransformers``; its public names are
also importable from ``bt_neurons.models`` (``convert``,
``BTSpikingForCausalLM``, ...), where importing registers the model with
transformers' Auto classes.

- `configuration`: `BTSpikingConfig` (model type ``"bt_spiking"``);
- `modeling`: `BTSpikingModel`, `BTSpikingForCausalLM`;
- `conversion`: `convert` and `calibrate` for Llama / Qwen2 checkpoints;
- `rotation`: the orthogonal rotations folded into the weights;
- `evaluation`: `perplexity`, `energy_per_token`;
- `cli`: the ``bt-convert`` and ``bt-chat`` commands.
"""

from .configuration import OPERATORS, BTSpikingConfig, operator_modes
from .conversion import SUPPORTED_ARCHITECTURES, calibrate, convert, load_source
from .evaluation import EnergyReport, energy_per_token, perplexity
from .modeling import BTSpikingForCausalLM, BTSpikingModel, BTSpikingPreTrainedModel

__all__ = [
    "OPERATORS",
    "SUPPORTED_ARCHITECTURES",
    "EnergyReport",
    "calibrate",
    "convert",
    "load_source",
    "energy_per_token",
    "perplexity",
    "BTSpikingConfig",
    "BTSpikingForCausalLM",
    "BTSpikingModel",
    "BTSpikingPreTrainedModel",
    "operator_modes",
]
