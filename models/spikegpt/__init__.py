"""SpikeGPT: a spiking RWKV language model (Zhu, Zhao, Li, Eshraghian 2023; arXiv 2302.13939).

Installed as ``bt_neurons.models.spikegpt``. Importing it registers the model
with transformers' ``AutoConfig``, ``AutoModel`` and ``AutoModelForCausalLM``
(model type ``"spikegpt"``).

- `configuration`: `SpikeGPTConfig`;
- `modeling`: `SpikeGPTModel`, `SpikeGPTForCausalLM` (with
  `SpikeGPTForCausalLM.from_original_state_dict` for the released key
  layout) and `SpikeGPTCache`, the recurrent state carried as the cache;
- `wkv`: the WKV operator as pure functions (`wkv_step`, `wkv_sequence`);
- `evaluation`: `bits_per_token` (BPC at character level) and
  `cost_per_token` (spikes, additions, MACs and energy per token and per layer).
"""

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)
from .configuration import NEURONS, SpikeGPTConfig
from .evaluation import LayerCost, SpikeGPTCost, bits_per_token, cost_per_token
from .modeling import (
    SpikeGPTCache,
    SpikeGPTForCausalLM,
    SpikeGPTModel,
    SpikeGPTPreTrainedModel,
    original_key_layout,
)
from .wkv import WKVState, wkv_initial_state, wkv_sequence, wkv_step

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402  isort: skip

AutoConfig.register(SpikeGPTConfig.model_type, SpikeGPTConfig, exist_ok=True)
AutoModel.register(SpikeGPTConfig, SpikeGPTModel, exist_ok=True)
AutoModelForCausalLM.register(SpikeGPTConfig, SpikeGPTForCausalLM, exist_ok=True)

__all__ = [
    "NEURONS",
    "LayerCost",
    "SpikeGPTCost",
    "bits_per_token",
    "cost_per_token",
    "SpikeGPTCache",
    "SpikeGPTConfig",
    "SpikeGPTForCausalLM",
    "SpikeGPTModel",
    "SpikeGPTPreTrainedModel",
    "WKVState",
    "original_key_layout",
    "wkv_initial_state",
    "wkv_sequence",
    "wkv_step",
]
