"""The paper's three training stages (section 3.3), for any model built from bt-neurons parts.

1. `prepare_qat`: the quantized ANN twin, trained with the straight-through estimator;
2. `to_spiking`: exact conversion to EI_IF neurons and Synapses;
3. `StageThreeLearner`: STDP-inspired learning with global task guidance
   (`stdp_delta`, `synaptic_tags`, `GlobalModulation`, `homeostasis_update`,
   `expected_first_spike_time`, the combined loss with `StageThreeConfig`).

`distill` runs stage 1 on a converted LLM against its float twin and converts
back. `save_checkpoint` / `load_checkpoint` keep training state safe between runs.
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .distillation import distill
from .homeostasis import expected_first_spike_time, homeostasis_update, membrane_charge
from .learner import StageThreeLearner
from .modulation import GlobalModulation
from .objective import LOSS_TERMS, StageThreeConfig, combined_loss
from .qat import QuantizedActivation, prepare_qat
from .spiking_conversion import to_spiking
from .stdp import spike_activity, stdp_delta, stdp_update, synaptic_tags

__all__ = [
    "LOSS_TERMS",
    "GlobalModulation",
    "QuantizedActivation",
    "StageThreeConfig",
    "StageThreeLearner",
    "combined_loss",
    "distill",
    "expected_first_spike_time",
    "homeostasis_update",
    "load_checkpoint",
    "membrane_charge",
    "prepare_qat",
    "save_checkpoint",
    "spike_activity",
    "stdp_delta",
    "stdp_update",
    "synaptic_tags",
    "to_spiking",
]
