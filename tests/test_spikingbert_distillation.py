"""SpikingBERT distillation: the losses, their configuration, the student's start, both stages end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from bt_neurons.models.spikingbert import (
    BERT_LAYER_KEYS,
    DistillationConfig,
    SpikingBertForSequenceClassification,
    distil,
    distillation_loss,
    finetune,
    load_minilm,
    student_config,
    student_from_teacher,
    uniform_layer_map,
)
from test_spikingbert_teacher import tiny_archive, toy_task


def test_uniform_layer_map_is_tinyberts():
    assert uniform_layer_map(4, 6) == {0: 0, 1: 1, 2: 3, 3: 4, 4: 6}
    assert uniform_layer_map(2, 2) == {0: 0, 1: 1, 2: 2}
    with pytest.raises(ValueError, match="student_layers"):
        uniform_layer_map(0, 6)


def test_config_validates_and_round_trips_through_json(tmp_path):
    config = DistillationConfig(
        hidden_map={0: 0, 2: 6}, attention_map={2: 6}, logit_weight=0.5, temperature=2.0
    )
    config.save(tmp_path / "d.json")
    assert json.loads((tmp_path / "d.json").read_text())["hidden_map"] == {"0": 0, "2": 6}  # JSON keys
    assert DistillationConfig.load(tmp_path / "d.json") == config
    assert config.maps(2, 6) == ({0: 0, 2: 6}, {2: 6})
    assert DistillationConfig().maps(4, 6) == ({0: 0, 1: 1, 2: 3, 3: 4, 4: 6}, {1: 1, 2: 3, 3: 4, 4: 6})
    assert (
        DistillationConfig.prediction().hidden_weight == 0
        and DistillationConfig.prediction().logit_weight == 1
    )
    with pytest.raises(ValueError, match="every loss weight is 0"):
        DistillationConfig(hidden_weight=0, attention_weight=0)
    with pytest.raises(ValueError, match="logit_weight"):
        DistillationConfig(logit_weight=-1)
    with pytest.raises(ValueError, match="temperature"):
        DistillationConfig(temperature=0)
    with pytest.raises(TypeError, match="hidden_map must be a non-empty dict"):
        DistillationConfig(hidden_map=[1, 2])
    with pytest.raises(ValueError, match="student layer 5 is outside"):
        DistillationConfig(hidden_map={5: 1}).maps(4, 6)
    with pytest.raises(ValueError, match="teacher layer 7 is outside"):
        DistillationConfig(attention_map={1: 7}).maps(4, 6)
    (tmp_path / "bad.json").write_text("[1]")
    with pytest.raises(ValueError, match="JSON object"):
        DistillationConfig.load(tmp_path / "bad.json")


def _outputs(b=2, length=5, heads=2, d=4, layers=1, logits=None):
    torch.manual_seed(0)
    hidden = tuple(torch.rand(b, length, d) for _ in range(layers + 1))
    scores = tuple(torch.randn(b, heads, length, length) for _ in range(layers))
    return SimpleNamespace(
        hidden_states=hidden,
        attention_scores=scores,
        attentions=tuple(s.softmax(-1) for s in scores),
        logits=torch.randn(b, 3) if logits is None else logits,
    )


def test_the_losses_vanish_where_the_student_matches_and_ignore_padding():
    teacher = _outputs()
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    keys = mask.bool()[:, None, None, :]
    scores = tuple(
        torch.log(t).masked_fill(~keys, torch.finfo(torch.float32).min) + 3.0 for t in teacher.attentions
    )  # the teacher's scores up to a constant per row: nothing a softmax sees differs
    student = SimpleNamespace(
        hidden_states=teacher.hidden_states, attention_scores=scores, logits=teacher.logits.clone()
    )
    identity = torch.nn.Linear(4, 4)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(4))
        identity.bias.zero_()
    config = DistillationConfig(logit_weight=1.0)
    loss, parts = distillation_loss(student, teacher, mask, config, fit_dense=identity)
    assert parts["hidden"] == 0 and parts["attention"] < 1e-10
    entropy = -(teacher.logits.softmax(-1) * teacher.logits.log_softmax(-1)).sum(-1).mean()
    assert abs(parts["logits"] - float(entropy)) < 1e-6  # soft CE at its minimum, the teacher's entropy
    # what padded tokens hold does not matter
    moved = tuple(h.clone() for h in teacher.hidden_states)
    moved[1][0, 3:] += 5.0
    wild = tuple(s.clone() for s in scores)
    wild[0][0, :, 3:, :] += 7.0
    _, parts2 = distillation_loss(
        SimpleNamespace(hidden_states=moved, attention_scores=wild, logits=student.logits),
        teacher,
        mask,
        config,
        fit_dense=identity,
    )
    assert parts2["hidden"] == 0 and parts2["attention"] < 1e-10
    # a real difference is measured, and its gradient reaches fit_dense
    student.hidden_states = tuple(h + 0.1 for h in teacher.hidden_states)
    loss, parts = distillation_loss(student, teacher, mask, DistillationConfig(), fit_dense=identity)
    assert abs(parts["hidden"] - 2 * 0.01) < 1e-6  # two layer pairs, each an MSE of 0.1 ** 2
    loss.backward()
    assert identity.weight.grad is not None


def test_the_losses_say_what_they_miss():
    out = _outputs()
    mask = torch.ones(2, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="needs fit_dense"):
        distillation_loss(out, out, mask, DistillationConfig())
    with pytest.raises(ValueError, match="needs labels"):
        distillation_loss(
            out, out, mask, DistillationConfig(hidden_weight=0, attention_weight=0, label_weight=1)
        )
    other = _outputs(heads=4, d=8)
    with pytest.raises(ValueError, match="as many heads"):
        distillation_loss(other, out, mask, DistillationConfig(hidden_weight=0))
    none = SimpleNamespace(hidden_states=None, attention_scores=None, logits=out.logits)
    with pytest.raises(ValueError, match="output_hidden_states"):
        distillation_loss(none, out, mask, DistillationConfig())


def _teacher(tmp_path, epochs=30):
    tiny_archive(tmp_path / "model.zip")
    model, tokenizer = load_minilm(2, archive=tmp_path / "model.zip", seed=1)
    result = finetune(
        model, tokenizer, toy_task(), epochs=epochs, batch_size=8, learning_rate=3e-3, progress=False
    )
    return result.model, tokenizer


def test_student_from_teacher_copies_the_chosen_blocks(tmp_path):
    teacher, _ = _teacher(tmp_path, epochs=1)
    student = student_from_teacher(teacher, 1, layers=[1], time_steps=4)
    assert student.config.teacher_hidden_size == 16 and student.config.num_hidden_layers == 1
    assert student.config.num_labels == 2 and student.config.time_steps == 4
    source = teacher.bert.state_dict()
    assert torch.equal(
        student.bert.embeddings.word_embeddings.weight, source["embeddings.word_embeddings.weight"]
    )
    for name, value in student.bert.layer[0].state_dict().items():
        module, leaf = name.split(".", 1)
        assert torch.equal(value, source[f"encoder.layer.1.{BERT_LAYER_KEYS[module]}.{leaf}"]), name
    assert student_from_teacher(teacher, 2).config.num_hidden_layers == 2
    with pytest.raises(ValueError, match="layers must give 1 teacher blocks"):
        student_from_teacher(teacher, 1, layers=[2])
    with pytest.raises(ValueError, match="num_hidden_layers"):
        student_config(teacher.config, 0)


@pytest.mark.parametrize("spiking", [True, False])
def test_two_stages_of_distillation_through_a_saved_folder(tmp_path, spiking):
    teacher, tokenizer = _teacher(tmp_path)
    student = student_from_teacher(teacher, 2, time_steps=6, spiking=spiking)
    common = dict(epochs=20, batch_size=8, learning_rate=3e-3, progress=False)
    first = distil(student, teacher, tokenizer, toy_task(), tmp_path / "stage1", **common)
    assert (
        DistillationConfig.load(tmp_path / "stage1" / "distillation.json")
        == DistillationConfig.intermediate()
    )
    losses = [row["loss"] for row in first.log if "loss" in row]
    assert losses[-1] < losses[0] / 2
    back, info = SpikingBertForSequenceClassification.from_pretrained(
        tmp_path / "stage1", output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]  # the original's problem between stages
    assert back.state_dict().keys() == first.model.state_dict().keys()
    for key, value in first.model.state_dict().items():
        assert torch.equal(back.state_dict()[key], value), key
    second = distil(
        back,
        teacher,
        tokenizer,
        toy_task(),
        tmp_path / "stage2",
        distillation=DistillationConfig.prediction(),
        **common,
    )
    assert second.test_accuracy == 1.0 and second.validation_accuracy == 1.0


def test_distil_refuses_a_mismatched_teacher_or_configuration(tmp_path):
    teacher, tokenizer = _teacher(tmp_path, epochs=1)
    student = student_from_teacher(teacher, 1, time_steps=2)
    with pytest.raises(TypeError, match="distillation must be a DistillationConfig"):
        distil(student, teacher, tokenizer, toy_task(), distillation={"hidden_weight": 1})
    teacher.config.num_labels = 3
    with pytest.raises(ValueError, match="the teacher must have 2 labels"):
        distil(student, teacher, tokenizer, toy_task())
