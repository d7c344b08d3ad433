"""bt-convert and bt-chat: a tiny Llama checkpoint on disk, converted and talked to from the shell."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bt_neurons.models import BTSpikingForCausalLM, convert, load_source
from bt_neurons.models.braintransformers.cli import (
    _answer_streamer,
    _reply,
    chat_main,
    chat_parser,
    convert_main,
    convert_parser,
)
from test_models import VOCAB, tiny_ann
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, TextStreamer


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
        (
            [str(tmp_path / "missing"), str(tmp_path / "a")],
            f"src {str(tmp_path / 'missing')!r} does not exist: expected a checkpoint folder or a .gguf file",
        ),
        ([str(gpt2), str(tmp_path / "b")], "supported architectures are llama, qwen2"),
        (
            [str(checkpoint), str(tmp_path / "c"), "--calibration-file", str(tmp_path / "nope.txt")],
            "calibration",
        ),
        ([str(checkpoint), str(tmp_path / "d"), "--gguf-file", "x.gguf"], "gguf_file"),
        (
            [str(checkpoint / "config.json"), str(tmp_path / "g")],
            "is not a checkpoint folder or a .gguf file",
        ),
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
        err = capsys.readouterr().err
        assert message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "gpt2", "tiny-llama"]
    with pytest.raises(SystemExit):
        convert_main([str(checkpoint), str(tmp_path / "f"), "--timesteps", "0"])
    assert "argument --timesteps/-T: expected a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_main([str(checkpoint), str(tmp_path / "f"), "--group-size", "-1"])
    assert "argument --group-size: expected an integer >= 0, got -1" in capsys.readouterr().err


def test_load_source_names_what_is_missing(tmp_path):
    with pytest.raises(
        FileNotFoundError, match="a local checkpoint folder or a .gguf file; .* does not exist"
    ):
        load_source(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_source(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source(tmp_path / "missing.gguf")  # a .gguf path that is not a file


def test_convert_shows_progress_bars_on_stderr(checkpoint, tmp_path, capsys):
    calib = str(tmp_path / "calib.txt")
    assert (
        convert_main([str(checkpoint), str(tmp_path / "spiking"), "-T", "4", "--calibration-file", calib])
        == 0
    )
    err = capsys.readouterr().err
    layers = 2  # tiny_ann
    # one bar for the folding (embedding, the layers, the head, building the model) ...
    assert "folding norms and rotations: 100%" in err and f"| {layers + 3}/{layers + 3} [" in err
    # ... and one for the calibration (the layers, then the head), each operator named as it is calibrated
    assert "calibrating clip ratios: 100%" in err and f"| {layers + 1}/{layers + 1} [" in err
    assert "layer 0 self_attn.q_proj" in err and "lm_head" in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[0] == f"loading {checkpoint} ..." and lines[-1].startswith(f"wrote {tmp_path / 'spiking'} (")
    assert convert_main([str(checkpoint), str(tmp_path / "plain"), "-T", "4", "--no-rotate"]) == 0
    err = capsys.readouterr().err
    assert "copying weights: 100%" in err and "calibrating" not in err  # no calibration text: no calibration

    # the library is quiet unless asked
    source, tokenizer = load_source(checkpoint)
    capsys.readouterr()
    convert(source, 4, "w1 w2 w3 w4", tokenizer=tokenizer)
    assert capsys.readouterr().err == ""
    convert(source, 4, "w1 w2 w3 w4", tokenizer=tokenizer, progress=True)
    err = capsys.readouterr().err
    assert "folding norms and rotations: 100%" in err and "calibrating clip ratios: 100%" in err


def test_convert_group_size_and_final_mixer_options(checkpoint, tmp_path):
    dst = tmp_path / "grouped"
    assert convert_main([str(checkpoint), str(dst), "-T", "5", "--group-size", "4", "--final-mixer"]) == 0
    model = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True)
    assert model.config.encoder_group_size == 4 and model.model.layers[0].mlp.up_proj.pre.group_size == 4
    assert model.config.final_mixer and model.config.tie_word_embeddings
    assert convert_main([str(checkpoint), str(tmp_path / "plain"), "-T", "5"]) == 0
    plain = BTSpikingForCausalLM.from_pretrained(tmp_path / "plain", local_files_only=True)
    assert plain.config.encoder_group_size == 0  # head_dim 8 does not fit
    assert plain.config.tie_word_embeddings and plain.config.final_mixer_mode == "factored"
    assert convert_main([str(checkpoint), str(tmp_path / "untied"), "-T", "5", "--head", "untied"]) == 0
    untied = BTSpikingForCausalLM.from_pretrained(tmp_path / "untied", local_files_only=True)
    assert not untied.config.tie_word_embeddings and untied.final_mixer is None


def test_chat_stats_times_the_prompt_and_the_answer(checkpoint, tmp_path, capsys):
    dst = tmp_path / "spiking"
    assert convert_main([str(checkpoint), str(dst), "-T", "5"]) == 0
    capsys.readouterr()
    argv = [str(dst), "-p", "w1 w2 w3", "--max-new-tokens", "5", "--raw"]
    assert chat_main(argv) == 0
    plain = capsys.readouterr()
    assert chat_main([*argv, "--stats"]) == 0
    timed = capsys.readouterr()
    assert timed.out == plain.out  # the answer itself is unchanged; the figures go to stderr
    line = timed.err.strip().splitlines()[-1]
    match = re.fullmatch(
        r"\[3 prompt tokens and the first new one in [0-9.]+ s \([0-9.]+ prompt tokens/s\)"
        r"(; (\d+) more in [0-9.]+ s \([0-9.]+ tokens/s\))?\]",
        line,
    )
    assert match, line
    tokenizer = PreTrainedTokenizerFast.from_pretrained(dst)
    model = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True).eval()
    enc = tokenizer("w1 w2 w3", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    new = out.shape[1] - 3
    assert int(match.group(2) or 0) == new - 1  # every new token but the first is counted in the rate


def test_chat_streams_the_answer_it_returns(checkpoint, tmp_path, monkeypatch, capsys):
    dst = tmp_path / "spiking"
    assert convert_main([str(checkpoint), str(dst), "-T", "5"]) == 0
    model = BTSpikingForCausalLM.from_pretrained(dst, local_files_only=True).eval()
    tokenizer = PreTrainedTokenizerFast.from_pretrained(dst)
    args = chat_parser().parse_args([str(dst), "--max-new-tokens", "6", "--raw"])

    printed_during_generate, streamers = [], []
    generate = BTSpikingForCausalLM.generate

    def spy(self, *a, **kw):
        capsys.readouterr()
        out = generate(self, *a, **kw)
        streamers.append(kw.get("streamer"))
        printed_during_generate.append(capsys.readouterr().out)
        return out

    # -p: what is printed while generate() runs is the whole answer, then a newline
    expected = _reply(model, tokenizer, [{"role": "user", "content": "w1 w2 w3"}], args)
    assert expected and not printed_during_generate
    monkeypatch.setattr(BTSpikingForCausalLM, "generate", spy)
    assert chat_main([str(dst), "-p", "w1 w2 w3", "--max-new-tokens", "6", "--raw"]) == 0
    assert isinstance(streamers[-1], TextStreamer)
    assert printed_during_generate == [expected + "\n"] and capsys.readouterr().out == ""

    # the conversation: each answer streamed; the history holds the full answers
    monkeypatch.setattr(BTSpikingForCausalLM, "generate", generate)
    history, answers = [], []
    for line in ("w4 w5", "w6"):
        history.append({"role": "user", "content": line})
        answers.append(_reply(model, tokenizer, history, args))
        history.append({"role": "assistant", "content": answers[-1]})
    monkeypatch.setattr(BTSpikingForCausalLM, "generate", spy)
    monkeypatch.setattr(sys, "stdin", io.StringIO("w4 w5\nw6\n"))
    printed_during_generate.clear()
    assert chat_main([str(dst), "--max-new-tokens", "6", "--raw"]) == 0
    assert printed_during_generate == [a + "\n" for a in answers]


def test_answer_streamer_prints_the_stripped_answer(capsys):
    streamer = _answer_streamer(tiny_tokenizer())
    pieces = ["\n ", " Hello", " world", "\n\n", " again ", "  "]
    printed = ""
    for piece in pieces:
        streamer.on_finalized_text(piece)
        printed += capsys.readouterr().out
        assert not printed.endswith((" ", "\n"))  # trailing blanks wait for more text
    assert printed == "Hello world\n\n again"
    streamer.on_finalized_text("", stream_end=True)
    assert printed + capsys.readouterr().out == "".join(pieces).strip() + "\n"
    empty = _answer_streamer(tiny_tokenizer())
    empty.on_finalized_text(" \n", stream_end=True)
    assert capsys.readouterr().out == "\n"


def option_helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's help as ``--help`` shows it (defaults expanded), flags left out."""
    formatter = parser._get_formatter()
    return {
        action.dest: formatter._expand_help(action)
        for action in parser._actions
        if action.option_strings and action.nargs != 0
    }


@pytest.mark.parametrize(
    ("parser", "shown"),
    [
        (convert_parser(), ["(default: 15)", "(default: 256)", "(default: 3e-05)", "(default: hybrid)"]),
        (chat_parser(), ["(default: 64)", "(default: 0.7)", "(default: 0.9)", "(default: the model's T)"]),
    ],
)
def test_help_shows_every_default(parser, shown, monkeypatch):
    helps = option_helps(parser)
    assert helps and all("default" in text for text in helps.values()), helps
    monkeypatch.setenv("COLUMNS", "100")
    text = " ".join(parser.format_help().split())
    assert all(s in text for s in shown), text
    assert "(default: 0)" in text  # --seed: a default of 0 is shown too
    assert "default: False" not in text and "default: None" not in text


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
