"""bt-convert and bt-chat: a tiny Llama checkpoint on disk, converted and talked to from the shell."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bt_neurons.models import BTSpikingForCausalLM
from bt_neurons.models.cli import chat_main, convert_main
from test_models import VOCAB, tiny_ann
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {f"w{i}": i for i in range(VOCAB - 1)} | {"[UNK]": VOCAB - 1}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", eos_token="w0", pad_token="w0")


@pytest.fixture
def checkpoint(tmp_path):
    folder = tmp_path / "tiny-llama"
    tiny_ann("llama", bias=True).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    (tmp_path / "calib.txt").write_text(" ".join(f"w{i % 90}" for i in range(200)))
    return folder


def test_convert_then_chat(checkpoint, tmp_path, capsys):
    dst = tmp_path / "spiking"
    argv = [str(checkpoint), str(dst), "--timesteps", "7", "--calibration-file", str(tmp_path / "calib.txt")]
    assert convert_main(argv) == 0
    assert (dst / "config.json").is_file() and (dst / "model.safetensors").is_file()
    assert (dst / "tokenizer.json").is_file()
    model = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True)
    assert model.config.timesteps == 7 and model.config.source_model_type == "llama"
    assert any(float(b) < 1.0 for n, b in model.named_buffers() if n.endswith("clip_ratio"))
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left

    capsys.readouterr()
    assert chat_main([str(dst), "--prompt", "w1 w2 w3", "--max-new-tokens", "4", "--raw"]) == 0
    words = capsys.readouterr().out.split()
    assert 1 <= len(words) <= 4 and all(w.startswith("w") or w == "[UNK]" for w in words)
    # the same answer with the count path and the spike path overridden from the shell
    assert chat_main([str(dst), "-p", "w1 w2 w3", "--max-new-tokens", "4", "--raw", "--path", "spike"]) == 0
    assert capsys.readouterr().out.split() == words
    assert chat_main([str(dst), "-p", "w1", "--max-new-tokens", "3", "--raw", "--sample", "--seed", "1"]) == 0


def test_chat_reads_stdin(checkpoint, tmp_path, monkeypatch, capsys):
    dst = tmp_path / "spiking"
    assert convert_main([str(checkpoint), str(dst), "-T", "5"]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("w1 w2\n\nw3\n"))
    capsys.readouterr()
    assert chat_main([str(dst), "--max-new-tokens", "2", "--raw"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2


def test_dst_is_never_half_written(checkpoint, tmp_path, capsys):
    dst = tmp_path / "spiking"
    dst.mkdir()
    (dst / "mine.txt").write_text("keep me")
    assert convert_main([str(checkpoint), str(dst)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in dst.iterdir()] == ["mine.txt"]
    assert convert_main([str(checkpoint), str(dst), "--force", "-T", "3"]) == 0
    assert (dst / "config.json").is_file() and not (dst / "mine.txt").exists()


def test_convert_usage_errors_write_nothing(checkpoint, tmp_path, capsys):
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50)).save_pretrained(gpt2)
    cases = [
        ([str(tmp_path / "missing"), str(tmp_path / "a")], "is not a folder"),
        ([str(gpt2), str(tmp_path / "b")], "supported architectures are llama, qwen2"),
        (
            [str(checkpoint), str(tmp_path / "c"), "--calibration-file", str(tmp_path / "nope.txt")],
            "calibration",
        ),
        ([str(checkpoint), str(tmp_path / "d"), "--gguf-file", "x.gguf"], "gguf_file"),
        ([str(checkpoint / "config.json"), str(tmp_path / "g")], "is not a folder"),
        ([str(checkpoint), str(tmp_path / "no" / "e")], "parent folder"),
        (
            [str(checkpoint), str(tmp_path / "h"), "--distill-file", str(tmp_path / "nope.txt")],
            "--distill-file",
        ),
        ([str(checkpoint), str(tmp_path / "j"), "--group-size", "5"], "group_size (5) must divide"),
        (  # 200 words of text are too few for windows of 256 tokens
            [str(checkpoint), str(tmp_path / "i"), "--distill-file", str(tmp_path / "calib.txt")],
            "seq=256",
        ),
    ]
    for argv, message in cases:
        assert convert_main(argv) == 2, argv
        assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "gpt2", "tiny-llama"]
    with pytest.raises(SystemExit):
        convert_main([str(checkpoint), str(tmp_path / "f"), "--timesteps", "0"])
    with pytest.raises(SystemExit):
        convert_main([str(checkpoint), str(tmp_path / "f"), "--group-size", "-1"])


def test_convert_group_size_and_final_mixer_options(checkpoint, tmp_path):
    dst = tmp_path / "grouped"
    assert convert_main([str(checkpoint), str(dst), "-T", "5", "--group-size", "4", "--final-mixer"]) == 0
    model = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True)
    assert model.config.encoder_group_size == 4 and model.model.layers[0].mlp.up_proj.pre.group_size == 4
    assert model.config.final_mixer and model.config.tie_word_embeddings
    assert convert_main([str(checkpoint), str(tmp_path / "plain"), "-T", "5"]) == 0
    plain = BTSpikingForCausalLM.from_pretrained(tmp_path / "plain", local_files_only=True)
    assert (
        plain.config.encoder_group_size == 0 and not plain.config.tie_word_embeddings
    )  # head_dim 8 does not fit


def test_chat_usage_errors(tmp_path, capsys):
    assert chat_main([str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_console_scripts_are_installed(checkpoint, tmp_path):
    bindir = Path(sys.executable).parent
    out = subprocess.run([bindir / "bt-convert", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--timesteps" in out
    out = subprocess.run([bindir / "bt-chat", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--prompt" in out


def test_convert_with_stage_one_distillation(checkpoint, tmp_path, capsys):
    dst = tmp_path / "distilled"
    text = str(tmp_path / "calib.txt")
    argv = [str(checkpoint), str(dst), "-T", "3", "--calibration-file", text, "--distill-file", text]
    assert convert_main([*argv, "--distill-steps", "3", "--distill-seq", "16", "--distill-lr", "1e-3"]) == 0
    err = capsys.readouterr().err
    assert "stage 1: distilling for 3 steps on 200 tokens" in err and "distillation KL per token" in err
    plain = tmp_path / "plain"
    assert convert_main([str(checkpoint), str(plain), "-T", "3", "--calibration-file", text]) == 0
    distilled = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True)
    converted = BTSpikingForCausalLM.from_pretrained(plain, local_files_only=True)
    assert distilled.config.timesteps == 3
    changed = [n for n, p in distilled.state_dict().items() if not torch.equal(p, converted.state_dict()[n])]
    assert changed and all("layer.weight" in n or "embed" in n or "norm" in n or "bias" in n for n in changed)
    # with --distill-learn-clip the encoders' clip ratios are trained too
    clipped = tmp_path / "clipped"
    more = ["--distill-steps", "3", "--distill-seq", "16", "--distill-lr", "1e-3", "--distill-learn-clip"]
    assert (
        convert_main(
            [
                str(checkpoint),
                str(clipped),
                "-T",
                "3",
                "--calibration-file",
                text,
                "--distill-file",
                text,
                *more,
            ]
        )
        == 0
    )
    learned = BTSpikingForCausalLM.from_pretrained(clipped, local_files_only=True).state_dict()
    assert any(
        not torch.equal(v, converted.state_dict()[n]) for n, v in learned.items() if n.endswith("clip_ratio")
    )
