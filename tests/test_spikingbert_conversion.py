"""The converted teacher (the BrainTransformers route for BERT): near its teacher, exact paths, bad input."""

from __future__ import annotations

import pytest
import torch
from bt_neurons.models.spikingbert.conversion import (
    ConvertedBertForSequenceClassification,
    SpikingLayerNorm,
    calibrate_converted,
    convert_teacher,
)
from transformers import BertConfig, BertForSequenceClassification


def teacher() -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=32,
        num_labels=3,
    )
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(50.0)  # logits of order 1, so that errors are visible
    return model


def batch():
    ids = torch.randint(0, 30, (4, 10))
    mask = torch.ones(4, 10, dtype=torch.long)
    mask[0, 7:] = 0
    return ids, mask


@pytest.mark.parametrize("layernorm", ["float", "spiking"])
def test_the_converted_teacher_nears_its_teacher_as_T_grows(layernorm):
    bert = teacher()
    ids, mask = batch()
    with torch.no_grad():
        want = bert(ids, attention_mask=mask).logits
        errors = []
        for T in (3, 15, 63):
            model = convert_teacher(bert, T, layernorm=layernorm, calibration_ids=ids, calibration_mask=mask)
            errors.append(float((model(ids, mask).logits - want).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.05 * float(want.abs().max())


def test_the_spike_path_gives_the_count_paths_logits():
    bert = teacher()
    ids, mask = batch()
    model = convert_teacher(bert, 7, calibration_ids=ids, calibration_mask=mask)
    with torch.no_grad():
        count = model(ids, mask).logits
        spike = model.set_path("spike")(ids, mask).logits
    assert torch.allclose(count, spike, atol=1e-6)
    assert {m.path for m in model.modules() if hasattr(m, "path") and m is not model} == {"spike"}


def test_calibration_picks_a_clip_for_every_encoder_from_the_grid():
    bert = teacher()
    ids, mask = batch()
    model = ConvertedBertForSequenceClassification(bert, 7)
    chosen = calibrate_converted(model, ids, mask, grid=(1.0, 0.7, 0.4))
    per_layer = (
        "query",
        "key",
        "value",
        "scores",
        "weighted_values",
        "intermediate",
    )  # attention_dense reads graded events
    expected = {f"layers.{i}.{op}" for i in range(2) for op in (*per_layer, "output_dense")}
    assert expected | {"pooler", "classifier"} == set(chosen)
    assert set(chosen.values()) <= {1.0, 0.7, 0.4}
    assert model.layers[0].query.pre.clip_ratio.item() == chosen["layers.0.query"]
    with pytest.raises(ValueError, match="grid must hold clip ratios"):
        calibrate_converted(model, ids, mask, grid=(1.5,))


def test_the_spiking_layernorm_is_a_layernorm():
    torch.manual_seed(1)
    norm = torch.nn.LayerNorm(32)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 32) * 2 + 0.5
    with torch.no_grad():
        rel = (SpikingLayerNorm(norm)(x) - norm(x)).norm() / norm(x).norm()
    assert rel < 0.02


def test_conversion_refuses_bad_arguments():
    bert = teacher()
    with pytest.raises(TypeError, match="BertForSequenceClassification"):
        ConvertedBertForSequenceClassification(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="timesteps"):
        ConvertedBertForSequenceClassification(bert, 0)
    with pytest.raises(ValueError, match="layernorm must be one of"):
        ConvertedBertForSequenceClassification(bert, 7, layernorm="rms")
    model = ConvertedBertForSequenceClassification(bert, 7)
    with pytest.raises(ValueError, match="path must be one of"):
        model.set_path("fast")
    ids, mask = batch()
    with pytest.raises(ValueError, match="attention_mask must have the shape"):
        model(ids, mask[:, :3])
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        model(ids.float())
