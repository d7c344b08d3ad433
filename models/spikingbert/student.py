"""A SpikingBERT student shaped like its BERT teacher, its weights taken from the teacher's layers."""

from __future__ import annotations

from typing import Any

import torch

from bt_neurons import _checks

from .configuration import SpikingBertConfig
from .modeling import SpikingBertForSequenceClassification

__all__ = ["BERT_LAYER_KEYS", "student_config", "student_from_teacher"]

#: Where each weight of a `SpikingBertLayer` sits in a transformers ``BertLayer``.
BERT_LAYER_KEYS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attention_dense": "attention.output.dense",
    "attention_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output_dense": "output.dense",
    "output_norm": "output.LayerNorm",
}


def student_config(teacher_config: Any, num_hidden_layers: int = 4, **overrides: Any) -> SpikingBertConfig:
    """A `SpikingBertConfig` shaped like the teacher (widths, heads, vocabulary, labels), but shallower.

    ``teacher_hidden_size`` is the teacher's width (the student gets
    ``fit_dense`` for the hidden-state loss). ``overrides`` set any other
    field (``time_steps``, ``gradient``, ``spiking``, ...).
    """
    num_hidden_layers = _checks.check_int("num_hidden_layers", num_hidden_layers, minimum=1)
    fields = {
        name: getattr(teacher_config, name)
        for name in (
            "vocab_size",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "layer_norm_eps",
            "pad_token_id",
            "id2label",
            "label2id",
        )
    }
    fields |= {"num_hidden_layers": num_hidden_layers, "teacher_hidden_size": teacher_config.hidden_size}
    return SpikingBertConfig(**(fields | overrides))


def student_from_teacher(
    teacher: Any, num_hidden_layers: int = 4, *, layers: list[int] | None = None, **overrides: Any
) -> SpikingBertForSequenceClassification:
    """A `SpikingBertForSequenceClassification` initialised from a transformers BERT classifier's weights.

    The embeddings are the teacher's, student block ``m`` is teacher block
    ``layers[m]`` (0-based; default the uniform choice ``(m + 1) * N // M - 1``,
    e.g. blocks 1, 2, 4, 5 of 6 for 4), and the classifier and ``fit_dense``
    start fresh. The paper starts its task distillation from a student that a
    general distillation on WikiText trained; no such corpus ships here, and the
    teacher's own layers are the nearest start.

    Args:
        teacher: a ``BertForSequenceClassification`` (e.g. `finetune`'s).
        num_hidden_layers: blocks of the student (at most the teacher's).
        layers: which teacher block each student block copies.
        **overrides: more `SpikingBertConfig` fields.
    """
    config = student_config(teacher.config, num_hidden_layers, **overrides)
    depth = teacher.config.num_hidden_layers
    if layers is None:
        layers = [(m + 1) * depth // num_hidden_layers - 1 for m in range(num_hidden_layers)]
    if len(layers) != num_hidden_layers or any(not 0 <= int(n) < depth for n in layers):
        raise ValueError(
            f"layers must give {num_hidden_layers} teacher blocks in [0, {depth - 1}], got {layers}"
        )
    student = SpikingBertForSequenceClassification(config)
    source = teacher.bert.state_dict()
    with torch.no_grad():
        for name, tensor in student.bert.embeddings.state_dict().items():
            tensor.copy_(source[f"embeddings.{name}"])
        for m, n in enumerate(layers):
            for name, tensor in student.bert.layer[m].state_dict().items():
                module, leaf = name.split(".", 1)
                tensor.copy_(source[f"encoder.layer.{int(n)}.{BERT_LAYER_KEYS[module]}.{leaf}"])
    return student
