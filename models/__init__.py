"""Layer 3 of bt-neurons: spiking language models, one folder per model family.

Installed as ``bt_neurons.models``; builds on ``bt_neurons`` and
``bt_neurons.approximators``. As in transformers, every family has a folder
of its own, and what the families share lives beside them:

- `braintransformers`: the BrainTransformers spiking LLM, a Llama / Qwen2
  checkpoint converted into a spiking network (`BTSpikingConfig`,
  `BTSpikingForCausalLM`, `convert`, `perplexity`, `energy_per_token`; the
  ``bt-convert`` / ``bt-chat`` commands). Its public names are importable
  from here too;
- `spikegpt`: SpikeGPT, a spiking RWKV language model (`SpikeGPTConfig`,
  `SpikeGPTForCausalLM`; model type ``"spikegpt"``), imported and
  registered with the Auto classes here too;
- `spikingbert`: SpikingBERT, a spiking BERT encoder trained at the
  equilibrium of its rates and distilled from a BERT teacher
  (`SpikingBertConfig`, `SpikingBertForSequenceClassification`; model type
  ``"spikingbert"``), imported and registered here too;
- `text_tasks`: labelled text tasks built offline (the Shakespeare tasks, or
  your own JSON file);
- `training`: the paper's three training stages;
- ``_transformers``: what every family needs from transformers (the KV-cache
  argument's name across releases).

Importing it registers the models with transformers' ``AutoConfig``,
``AutoModelForCausalLM`` (model types ``"bt_spiking"`` and ``"spikegpt"``) and
``AutoModelForSequenceClassification`` (``"spikingbert"``).
"""

from . import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)
from .braintransformers import (
    OPERATORS,
    SUPPORTED_ARCHITECTURES,
    BTSpikingConfig,
    BTSpikingForCausalLM,
    BTSpikingModel,
    BTSpikingPreTrainedModel,
    EnergyReport,
    calibrate,
    convert,
    energy_per_token,
    load_source,
    operator_modes,
    perplexity,
)

from . import spikegpt  # noqa: E402, F401  (registers SpikeGPT with the Auto classes)  isort: skip
from . import spikingbert  # noqa: E402, F401  (registers SpikingBERT with the Auto classes)  isort: skip
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
