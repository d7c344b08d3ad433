r"""Distilling a fine-tuned BERT teacher into a SpikingBERT student (TinyBERT-style, as in the paper).

The losses, each weighted by a `DistillationConfig` field (0 turns it off):

$$
\begin{aligned}
\mathcal{L}_{hidden} &= \sum_{(m, n)} \mathrm{MSE}\big(W_{fit}\, a^{S}_m + b_{fit},\; h^{T}_n\big)
  \quad \text{(through the learned map } W_{fit} \text{)} \\
\mathcal{L}_{attn} &= \sum_{(m, n)} \mathrm{MSE}\big(\bar A^{S}_m, \bar A^{T}_n\big), \quad
  \bar A = A - \mathrm{mean}_{keys}(A) \\
\mathcal{L}_{logits} &= -\sum_c \mathrm{softmax}(z^{T} / \tau)_c \log \mathrm{softmax}(z^{S} / \tau)_c,
  \qquad \mathcal{L}_{labels} = \mathrm{CE}(z^{S}, y)
\end{aligned}
$$

Hidden states are indexed 0 (the embeddings) to ``L``; attention scores by
block, 1 to ``L``. ``A`` are the scores before the softmax; the teacher's
come from its attention probabilities as ``log p``, which are the scores up
to a constant per query row: both sides are centred over the unpadded keys,
so the loss compares exactly what a softmax can see. Only unpadded tokens
(and query-key pairs of unpadded tokens) count. The paper (and TinyBERT)
runs the intermediate losses first, then the logits:
`DistillationConfig.intermediate` and `DistillationConfig.prediction`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from bt_neurons import _checks

from ..text_tasks import TextTask
from .training import TaskResult, train_on_task

from transformers import Trainer  # noqa: E402  isort: skip

__all__ = [
    "DistillationConfig",
    "DistillationTrainer",
    "distil",
    "distillation_loss",
    "uniform_layer_map",
]


def uniform_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """TinyBERT's mapping ``m -> m * N // M`` of student to teacher layers, 0 (the embeddings) to ``M``."""
    student_layers = _checks.check_int("student_layers", student_layers, minimum=1)
    teacher_layers = _checks.check_int("teacher_layers", teacher_layers, minimum=1)
    return {m: m * teacher_layers // student_layers for m in range(student_layers + 1)}


@dataclass
class DistillationConfig:
    """Which layers are matched and how much each loss weighs: configuration, saved with the student.

    Attributes:
        hidden_map: student hidden-state index -> teacher index (0 = embeddings).
            None: `uniform_layer_map`.
        attention_map: student block -> teacher block (1-based). None: the
            uniform map without the embeddings.
        hidden_weight: of the hidden-state loss. Default 1.
        attention_weight: of the attention-score loss. Default 1.
        logit_weight: of the soft cross-entropy on the logits. Default 0.
        label_weight: of the cross-entropy on the task's labels. Default 0.
        temperature: ``tau`` of the soft cross-entropy. Default 1.
    """

    hidden_map: dict[int, int] | None = None
    attention_map: dict[int, int] | None = None
    hidden_weight: float = 1.0
    attention_weight: float = 1.0
    logit_weight: float = 0.0
    label_weight: float = 0.0
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("hidden_weight", "attention_weight", "logit_weight", "label_weight"):
            _checks.check_number(name, getattr(self, name))
            _checks.check_nonnegative(name, getattr(self, name))
        _checks.check_number("temperature", self.temperature)
        _checks.check_positive("temperature", self.temperature)
        if not any(
            getattr(self, n) for n in ("hidden_weight", "attention_weight", "logit_weight", "label_weight")
        ):
            raise ValueError("every loss weight is 0: nothing would be distilled")
        for name in ("hidden_map", "attention_map"):
            mapping = getattr(self, name)
            if mapping is None:
                continue
            if not isinstance(mapping, dict) or not mapping:
                raise TypeError(
                    f"{name} must be a non-empty dict of student -> teacher layer, got {mapping!r}"
                )
            cleaned = {}
            for k, v in mapping.items():
                key = int(k) if isinstance(k, str) and k.strip().isdigit() else k  # JSON keys are strings
                cleaned[_checks.check_int(f"{name} key", key, 0)] = _checks.check_int(f"{name}[{k}]", v, 0)
            setattr(self, name, cleaned)

    @classmethod
    def intermediate(cls, **overrides: Any) -> DistillationConfig:
        """The first stage: hidden states and attention scores (weights 1), no logits."""
        return cls(**{"hidden_weight": 1.0, "attention_weight": 1.0, "logit_weight": 0.0} | overrides)

    @classmethod
    def prediction(cls, **overrides: Any) -> DistillationConfig:
        """The second stage: the soft cross-entropy on the logits only."""
        return cls(**{"hidden_weight": 0.0, "attention_weight": 0.0, "logit_weight": 1.0} | overrides)

    def maps(self, student_layers: int, teacher_layers: int) -> tuple[dict[int, int], dict[int, int]]:
        """``(hidden_map, attention_map)`` resolved for these depths, checked in range."""
        uniform = uniform_layer_map(student_layers, teacher_layers)
        hidden = self.hidden_map if self.hidden_map is not None else uniform
        attention = (
            self.attention_map if self.attention_map is not None else {m: n for m, n in uniform.items() if m}
        )
        for name, mapping, lo in (("hidden_map", hidden, 0), ("attention_map", attention, 1)):
            for m, n in mapping.items():
                if not lo <= m <= student_layers:
                    raise ValueError(f"{name}: student layer {m} is outside [{lo}, {student_layers}]")
                if not lo <= n <= teacher_layers:
                    raise ValueError(f"{name}: teacher layer {n} is outside [{lo}, {teacher_layers}]")
        return hidden, attention

    def save(self, path: Path | str) -> None:
        """Write the configuration as JSON."""
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path | str) -> DistillationConfig:
        """Read a configuration `save` wrote (or a user's JSON with the same fields)."""
        fields = json.loads(Path(path).read_text())
        if not isinstance(fields, dict):
            raise ValueError(f"{path}: a distillation configuration is a JSON object")
        return cls(**fields)


def _centred_scores(scores: Tensor, valid_keys: Tensor) -> Tensor:
    """``scores`` ``[B, H, L, L]`` less their mean over the valid keys ``[B, 1, 1, L]``; 0 elsewhere."""
    scores = scores.masked_fill(~valid_keys, 0.0)
    mean = scores.sum(-1, keepdim=True) / valid_keys.sum(-1, keepdim=True).clamp_min(1)
    return (scores - mean).masked_fill(~valid_keys, 0.0)


def distillation_loss(
    student: Any,
    teacher: Any,
    attention_mask: Tensor,
    config: DistillationConfig,
    *,
    fit_dense: torch.nn.Module | None = None,
    labels: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """The weighted distillation loss of one batch, and its parts (detached floats) by name.

    Args:
        student: the student's output with ``hidden_states``, ``attention_scores`` and ``logits``
            (`SpikingBertClassifierOutput`), as far as the weights need them.
        teacher: the teacher's output (a transformers ``SequenceClassifierOutput`` with
            ``hidden_states`` and ``attentions``, probabilities).
        attention_mask: ``[B, L]``, 1 for tokens.
        config: the `DistillationConfig`.
        fit_dense: the map of the student's rates to the teacher's width (needed by the hidden loss).
        labels: ``[B]`` class ids (needed by the label loss).
    """
    valid = attention_mask.bool()
    parts: dict[str, Tensor] = {}
    total = None

    def add(name: str, weight: float, value: Tensor) -> None:
        nonlocal total
        parts[name] = value.detach()
        total = weight * value if total is None else total + weight * value

    student_layers = len(student.hidden_states) - 1 if student.hidden_states is not None else None
    teacher_layers = len(teacher.hidden_states) - 1 if teacher.hidden_states is not None else None
    if config.hidden_weight or config.attention_weight:
        if student_layers is None or teacher_layers is None:
            raise ValueError(
                "the intermediate losses need hidden_states of both models (output_hidden_states)"
            )
        hidden_map, attention_map = config.maps(student_layers, teacher_layers)
    if config.hidden_weight:
        if fit_dense is None:
            raise ValueError("the hidden-state loss needs fit_dense (set the student's teacher_hidden_size)")
        tokens = valid[..., None].to(student.hidden_states[0].dtype)
        loss = sum(
            (((fit_dense(student.hidden_states[m]) - teacher.hidden_states[n]) ** 2) * tokens).sum()
            / (tokens.sum() * teacher.hidden_states[n].shape[-1])
            for m, n in hidden_map.items()
        )
        add("hidden", config.hidden_weight, loss)
    if config.attention_weight:
        if student.attention_scores is None or teacher.attentions is None:
            raise ValueError("the attention loss needs the scores of both models (output_attentions)")
        keys = valid[:, None, None, :]
        pairs = (valid[:, None, :, None] & keys).to(student.logits.dtype)
        tiny = torch.finfo(teacher.attentions[0].dtype).tiny
        loss = 0.0
        for m, n in attention_map.items():
            s, t = student.attention_scores[m - 1], teacher.attentions[n - 1]
            if s.shape != t.shape:
                raise ValueError(
                    f"student block {m} has attention {tuple(s.shape)}, teacher block {n} {tuple(t.shape)}: "
                    "the attention loss needs as many heads on both sides"
                )
            diff = _centred_scores(s, keys) - _centred_scores(torch.log(t.clamp_min(tiny)), keys)
            loss = loss + (diff**2 * pairs).sum() / (pairs.sum() * s.shape[1])
        add("attention", config.attention_weight, loss)
    if config.logit_weight:
        tau = config.temperature
        soft = -(F.softmax(teacher.logits / tau, -1) * F.log_softmax(student.logits / tau, -1)).sum(-1).mean()
        add("logits", config.logit_weight, soft)
    if config.label_weight:
        if labels is None:
            raise ValueError("the label loss needs labels")
        add("labels", config.label_weight, F.cross_entropy(student.logits, labels))
    return total, {k: float(v) for k, v in parts.items()}


class DistillationTrainer(Trainer):
    """transformers' ``Trainer`` whose loss is `distillation_loss` against a frozen teacher.

    The model being trained is the student; the teacher runs without a graph
    on the same batch (moved to the Trainer's device, in eval mode). In
    evaluation (``predict`` / ``evaluate``) the student's own loss is used.

    Args:
        teacher: the fine-tuned teacher (a transformers sequence classifier).
        distillation: the `DistillationConfig`.
        *args: ``Trainer``'s.
        **kwargs: ``Trainer``'s.
    """

    def __init__(self, *args: Any, teacher: Any, distillation: DistillationConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(distillation, DistillationConfig):
            raise TypeError(f"distillation must be a DistillationConfig, got {type(distillation).__name__}")
        if distillation.attention_weight and hasattr(teacher, "set_attn_implementation"):
            teacher.set_attn_implementation("eager")  # the fused kernels return no attention probabilities
        self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        self.distillation = distillation
        #: The loss parts of the last training batch.
        self.last_parts: dict[str, float] = {}

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """`distillation_loss` in training; the student's own loss in evaluation."""
        if not model.training:
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        config = self.distillation
        inputs = dict(inputs)
        labels = inputs.pop("labels", None)
        intermediate = bool(config.hidden_weight or config.attention_weight)
        with torch.no_grad():
            teacher = self.teacher(
                **inputs, output_hidden_states=intermediate, output_attentions=bool(config.attention_weight)
            )
        student = model(
            **inputs, output_hidden_states=intermediate, output_attentions=bool(config.attention_weight)
        )
        unwrapped = self.accelerator.unwrap_model(model)
        loss, self.last_parts = distillation_loss(
            student,
            teacher,
            inputs["attention_mask"],
            config,
            fit_dense=getattr(unwrapped, "fit_dense", None),
            labels=labels,
        )
        return (loss, student) if return_outputs else loss


def distil(
    student: Any,
    teacher: Any,
    tokenizer: Any,
    task: TextTask,
    out: Path | str | None = None,
    *,
    distillation: DistillationConfig | None = None,
    epochs: float = 2.0,
    batch_size: int = 32,
    learning_rate: float = 1e-4,
    max_length: int = 128,
    seed: int = 0,
    progress: bool = True,
    training_arguments: dict[str, Any] | None = None,
) -> TaskResult:
    """Distil ``teacher`` into ``student`` on ``task``'s training plays; measure it on the held-out plays.

    Args:
        student: a `SpikingBertForSequenceClassification` (or its ANN twin)
            with ``len(task.labels)`` labels; with ``teacher_hidden_size`` for the hidden loss.
        teacher: the fine-tuned teacher (`finetune`), loaded with eager attention so that it returns
            its attention probabilities.
        tokenizer: the teacher's tokenizer (both models read the same ids).
        task: a `TextTask`.
        out: folder to write the student, its tokenizer and ``distillation.json`` to (None: nothing).
        distillation: the losses (default `DistillationConfig.intermediate`).
        epochs: passes over the training passages. Default 2.
        batch_size: per device. Default 32.
        learning_rate: AdamW's peak rate. Default 1e-4.
        max_length: tokens per passage. Default 128.
        seed: of the data order and dropout.
        progress: the Trainer's progress bars.
        training_arguments: more ``TrainingArguments``.

    Returns:
        `TaskResult` of the student.
    """
    config = distillation if distillation is not None else DistillationConfig.intermediate()
    if not isinstance(config, DistillationConfig):
        raise TypeError(f"distillation must be a DistillationConfig, got {type(config).__name__}")
    if getattr(getattr(teacher, "config", None), "num_labels", None) != len(task.labels):
        raise ValueError(f"the teacher must have {len(task.labels)} labels, as the task {task.name!r}")
    result = train_on_task(
        student,
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
        trainer_class=DistillationTrainer,
        trainer_kwargs={"teacher": teacher, "distillation": config},
    )
    if out is not None:
        from bt_neurons._atomic_writes import atomic_write_files

        atomic_write_files([(Path(out) / "distillation.json", config.save)])
    return result
