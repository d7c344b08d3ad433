"""Layer 3 of bt-neurons: the spiking language model.

Installed as ``bt_neurons.models``; builds on ``bt_neurons`` and
``bt_neurons.approximators``. Importing it registers the model with
transformers' ``AutoConfig`` and ``AutoModelForCausalLM`` (model type
``"bt_spiking"``).

- `BTSpikingConfig`, `BTSpikingForCausalLM`: the transformers-compatible
  spiking causal LM;
- `convert`: Llama / Qwen2 checkpoint -> spiking model;
- `perplexity`, `energy_per_token`: measure a model on text.
"""

from . import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)
from .configuration import OPERATORS, BTSpikingConfig, operator_modes
from .conversion import SUPPORTED_ARCHITECTURES, calibrate, convert, load_source
from .evaluation import EnergyReport, energy_per_token, perplexity
from .modeling import BTSpikingForCausalLM, BTSpikingModel, BTSpikingPreTrainedModel

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402  isort: skip

AutoConfig.register(BTSpikingConfig.model_type, BTSpikingConfig, exist_ok=True)
AutoModel.register(BTSpikingConfig, BTSpikingModel, exist_ok=True)
AutoModelForCausalLM.register(BTSpikingConfig, BTSpikingForCausalLM, exist_ok=True)

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
