r"""Training a sequence classifier on a `TextTask` with transformers' `Trainer`: the teacher and the students.

`train_on_task` is the one loop: the task's training plays as a
`PassageDataset`, a `Trainer` (or a subclass, such as the distillation's)
with AdamW, 6% linear warm-up then linear decay, progress bars and
``torchrun`` / accelerate for several processes, then the accuracy on the
validation and test plays, and the model and tokenizer written to a folder as
a whole.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bt_neurons import _checks

from .._saving import save_model_and_tokenizer
from ..text_tasks import TextTask

__all__ = ["PassageDataset", "TaskResult", "accuracy", "train_on_task"]


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


def accuracy(logits: Tensor | tuple, labels: Tensor) -> float:
    """The fraction of rows whose largest logit is the label.

    ``logits`` may be a Trainer's ``predictions`` tuple, logits first (a
    SpikingBERT model also returns its spike counts).
    """
    if isinstance(logits, tuple | list):
        logits = logits[0]
    return float((torch.as_tensor(logits).argmax(-1) == torch.as_tensor(labels)).float().mean())


@dataclass
class TaskResult:
    """What `train_on_task` measured: accuracies on the task's held-out plays, time, the Trainer's log."""

    model: Any
    tokenizer: Any
    validation_accuracy: float
    test_accuracy: float
    train_seconds: float
    out: Path | None
    log: list[dict] = field(default_factory=list)


def train_on_task(
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
    trainer_class: type | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
) -> TaskResult:
    """Train a sequence classifier on ``task``'s training plays; measure it on the held-out plays.

    Args:
        model: a ``transformers`` sequence classifier with ``len(task.labels)`` labels.
        tokenizer: its tokenizer.
        task: a `TextTask` (`bt_neurons.models.text_tasks.shakespeare_task`).
        out: folder to write the trained model and tokenizer to, as a whole
            (None: write nothing). Checkpoints go to a temporary folder.
        epochs: passes over the training passages. Default 2.
        batch_size: per device. Default 32.
        learning_rate: AdamW's peak rate, decayed linearly after 6% warm-up. Default 5e-5.
        max_length: tokens per passage (longer ones are truncated). Default 128.
        seed: of the data order and dropout.
        progress: the Trainer's progress bars.
        training_arguments: more ``TrainingArguments`` (they take precedence).
        trainer_class: the ``Trainer`` subclass to train with (default ``Trainer``).
        trainer_kwargs: more arguments of ``trainer_class`` (e.g. a distillation's teacher).

    Returns:
        `TaskResult`, with the model in eval mode.
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
    with tempfile.TemporaryDirectory(prefix="bt-train-") as scratch:
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
        trainer = (trainer_class or Trainer)(
            model=model,
            args=TrainingArguments(**arguments),
            train_dataset=data["train"],
            data_collator=DataCollatorWithPadding(tokenizer),
            **(trainer_kwargs or {}),
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
    return TaskResult(
        model,
        tokenizer,
        scores["validation"],
        scores["test"],
        seconds,
        None if out is None else Path(out),
        log,
    )
