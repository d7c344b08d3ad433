"""Bad input to the commands, the files they read and the LLM / training entry points.

Each row gives one bad input and asserts: the exception type (or, for a
command, the exit status and a single ``prog: error:`` line with no
traceback), that the message names the argument or the file, and that no
file changed (every file's bytes, mode and mtime are compared). The commands
run in-process through their ``main(argv)``; only the Ctrl-C tests start a
subprocess. The models are tiny and random (``tests/test_models.py``).
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
from bt_neurons.approximators import NeuronArrayApproximator, cli
from bt_neurons.approximators.storage import save_approximator
from bt_neurons.models import BTSpikingConfig, BTSpikingForCausalLM, calibrate, convert, load_source
from bt_neurons.models.braintransformers.cli import chat_main, convert_main
from bt_neurons.models.braintransformers.evaluation import energy_per_token, perplexity, windows
from bt_neurons.models.training import (
    StageThreeLearner,
    distill,
    homeostasis_update,
    load_checkpoint,
    prepare_qat,
    save_checkpoint,
    stdp_update,
    to_spiking,
)
from bt_neurons.models.training.homeostasis import expected_first_spike_time
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from test_models import VOCAB, tiny_ann
from test_models_cli import tiny_tokenizer
from torch import nn

from bt_neurons import EIIFNode
from bt_neurons._atomic_writes import atomic_write_files, atomic_write_folder

MAX_POSITIONS = 128  # tiny_ann's max_position_embeddings


# ------------------------------------------------------------------ helpers


def snapshot(*folders: Path) -> dict[str, tuple]:
    """Every file and folder under ``folders``: bytes, mode and mtime (links: their target)."""
    seen: dict[str, tuple] = {}
    for folder in folders:
        if not folder.exists():
            continue
        for path in sorted([folder, *folder.rglob("*")]):
            st = path.lstat()
            if path.is_symlink():
                seen[str(path)] = ("link", os.readlink(path))
            elif path.is_dir():
                seen[str(path)] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                seen[str(path)] = (path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return seen


def run(main, argv: list[str], capsys) -> tuple[int, str]:
    """``main(argv)``'s exit status (argparse's SystemExit included) and its stderr."""
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def assert_one_error_line(err: str, prog: str) -> str:
    """stderr ends in exactly one ``prog: error: ...`` line and holds no traceback; returns that line."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(f"{prog}: error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


class Sentinel:
    """Unpickling this creates the file ``path``: proof that a pickle was opened."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (builtins.open, (self.path, "w"))


def write_pickle_weights(folder: Path) -> Path:
    """Replace the folder's safetensors weights by a malicious ``pytorch_model.bin``; returns the sentinel."""
    for f in folder.glob("*.safetensors"):
        f.unlink()
    sentinel = folder.parent / f"{folder.name}-was-unpickled"
    torch.save({"model.embed_tokens.weight": Sentinel(sentinel)}, folder / "pytorch_model.bin")
    return sentinel


def edit_config(**changes):
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        for key, value in changes.items():
            if value is _DROP:
                config.pop(key, None)
            else:
                config[key] = value
        (folder / "config.json").write_text(json.dumps(config))

    return edit


_DROP = object()


def write_text(name: str, data: str | bytes):
    def edit(folder: Path) -> None:
        path = folder / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())

    return edit


def edit_weights(change):
    def edit(folder: Path) -> None:
        path = folder / "model.safetensors"
        tensors = load_file(str(path))
        change(tensors)
        save_file(tensors, str(path), metadata={"format": "pt"})

    return edit


def truncate(name: str, keep: int | None = None):
    def edit(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: len(data) // 2 if keep is None else keep])

    return edit


def remove(*names: str):
    def edit(folder: Path) -> None:
        for name in names:
            (folder / name).unlink()

    return edit


def _set_nan(t):
    t["model.layers.0.mlp.up_proj.layer.weight"][0, 0] = float("nan")


def _drop_tensor(t):
    del t["model.layers.1.self_attn.q_proj.layer.weight"]


def _extra_tensor(t):
    t["model.layers.9.mlp.up_proj.layer.weight"] = torch.zeros(2, 2)


def _int_tensor(t):
    t["model.norm.weight"] = t["model.norm.weight"].to(torch.int32)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """A tiny Llama checkpoint with a tokenizer, and its spiking conversion (T = 3), on disk."""
    root = tmp_path_factory.mktemp("originals")
    src = root / "src"
    tiny_ann("llama", bias=True).save_pretrained(src)
    tiny_tokenizer().save_pretrained(src)
    assert convert_main([str(src), str(root / "model"), "-T", "3"]) == 0
    return root


@pytest.fixture
def src(originals, tmp_path) -> Path:
    shutil.copytree(originals / "src", tmp_path / "src")
    return tmp_path / "src"


@pytest.fixture
def model_dir(originals, tmp_path) -> Path:
    shutil.copytree(originals / "model", tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture(scope="module")
def model(originals) -> BTSpikingForCausalLM:
    return BTSpikingForCausalLM.from_pretrained(originals / "model", local_files_only=True).eval()


def long_text(words: int) -> str:
    return " ".join(f"w{i % 90}" for i in range(words))


# ------------------------------------------------------------------ bt-chat on broken model folders

CHAT_FOLDERS = [
    ("truncated-weights", truncate("model.safetensors"), "model.safetensors"),
    ("weights-cut-in-header", truncate("model.safetensors", keep=5), "model.safetensors"),
    ("no-weights", remove("model.safetensors"), "has no model.safetensors"),
    ("pickle-weights", write_pickle_weights, "pickle file"),
    ("timesteps-0", edit_config(timesteps=0), "timesteps"),
    ("timesteps-a-string", edit_config(timesteps="sixteen"), "timesteps"),
    ("timesteps-a-float", edit_config(timesteps=2.5), "timesteps"),
    ("config-a-list", write_text("config.json", "[1, 2, 3]"), "JSON object"),
    ("config-not-json", write_text("config.json", "{nope"), "not valid JSON"),
    ("config-not-utf8", write_text("config.json", b"\xff\xfe{}"), "not valid JSON"),
    ("config-of-a-llama", edit_config(model_type="llama"), "model_type 'llama'"),
    ("unknown-operator-mode", edit_config(operators={"softmax": "spikey"}), "operators['softmax']"),
    ("unknown-operator-name", edit_config(operators={"attention": "float"}), "unknown keys ['attention']"),
    ("operators-a-number", edit_config(operators=5), "operators"),
    ("hidden-size-mismatch", edit_config(hidden_size=40), "has shape"),
    ("hidden-size-missing", edit_config(hidden_size=_DROP), "has shape"),
    ("hidden-size-a-string", edit_config(hidden_size="big"), "hidden_size"),
    ("vocab-size-0", edit_config(vocab_size=0), "vocab_size"),
    ("heads-0", edit_config(num_attention_heads=0), "num_attention_heads"),
    ("rms-norm-eps-a-string", edit_config(rms_norm_eps="tiny"), "rms_norm_eps"),
    ("rms-norm-eps-negative", edit_config(rms_norm_eps=-1e-6), "rms_norm_eps"),
    ("tie-a-string", edit_config(tie_word_embeddings="yes"), "tie_word_embeddings"),
    ("path-unknown", edit_config(path="spikes"), "path"),
    ("pad-token-out-of-vocab", edit_config(pad_token_id=VOCAB + 5), "pad_token_id"),
    ("group-size-negative", edit_config(encoder_group_size=-2), "encoder_group_size"),
    ("nan-weight", edit_weights(_set_nan), "NaN"),
    ("missing-tensor", edit_weights(_drop_tensor), "lacks 1 tensor"),
    ("extra-tensor", edit_weights(_extra_tensor), "does not have"),
    ("integer-weight", edit_weights(_int_tensor), "dtype"),
    ("no-config", remove("config.json"), "no config.json"),
    ("no-tokenizer", remove("tokenizer.json", "tokenizer_config.json"), "has no tokenizer"),
    ("tokenizer-not-json", write_text("tokenizer.json", "{broken"), "cannot load the tokenizer"),
]


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in CHAT_FOLDERS], ids=[c[0] for c in CHAT_FOLDERS])
def test_chat_refuses_a_broken_model_folder(model_dir, edit, message, capsys):
    sentinel = edit(model_dir)
    before = snapshot(model_dir.parent)
    code, err = run(chat_main, [model_dir, "-p", "w1 w2", "--max-new-tokens", "2", "--raw"], capsys)
    assert code == 2
    line = assert_one_error_line(err, "bt-chat")
    assert message in line and str(model_dir) in line, line
    assert snapshot(model_dir.parent) == before
    if isinstance(sentinel, Path):
        assert not sentinel.exists()  # the pickle was never opened


# ------------------------------------------------------------------ bt-chat options and prompts

CHAT_ARGUMENTS = [
    ("empty-prompt", ["-p", ""], 2, "--prompt is empty"),
    ("blank-prompt", ["-p", "  \n "], 2, "--prompt is empty"),
    ("prompt-too-long", ["-p", long_text(MAX_POSITIONS + 10), "--raw"], 2, "max_position_embeddings"),
    ("temperature-nan", ["-p", "w1", "--temperature", "nan"], 2, "--temperature"),
    ("temperature-0", ["-p", "w1", "--temperature", "0"], 2, "--temperature"),
    ("temperature-inf", ["-p", "w1", "--temperature", "inf"], 2, "--temperature"),
    ("top-p-2", ["-p", "w1", "--top-p", "2"], 2, "--top-p"),
    ("top-p-0", ["-p", "w1", "--top-p", "0"], 2, "--top-p"),
    ("top-p-nan", ["-p", "w1", "--top-p", "nan"], 2, "--top-p"),
    ("max-new-tokens-0", ["-p", "w1", "--max-new-tokens", "0"], 2, "--max-new-tokens"),
    ("max-new-tokens-text", ["-p", "w1", "--max-new-tokens", "many"], 2, "--max-new-tokens"),
    ("timesteps-0", ["-p", "w1", "-T", "0"], 2, "--timesteps"),
    ("seed-too-large", ["-p", "w1", "--seed", str(2**70)], 2, "--seed"),
    ("unknown-operators", ["-p", "w1", "--operators", "all"], 2, "--operators"),
]


@pytest.mark.parametrize(
    ("extra", "status", "message"), [c[1:] for c in CHAT_ARGUMENTS], ids=[c[0] for c in CHAT_ARGUMENTS]
)
def test_chat_refuses_bad_arguments(model_dir, extra, status, message, capsys):
    before = snapshot(model_dir)
    code, err = run(chat_main, [model_dir, *extra], capsys)
    assert code == status
    assert message in assert_one_error_line(err, "bt-chat")
    assert snapshot(model_dir) == before


@pytest.mark.parametrize("where", ["missing", "a-file", "fake.gguf"])
def test_chat_refuses_what_is_not_a_model_folder(tmp_path, where, capsys):
    path = tmp_path / where
    if where != "missing":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    code, err = run(chat_main, [path, "-p", "w1"], capsys)
    assert code == 2 and "is not a model folder (no config.json)" in assert_one_error_line(err, "bt-chat")
    assert str(path) in err


def test_chat_stdin_that_is_not_utf8(model_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"w1 \xff\xfe w2\n"), encoding="utf-8"))
    code, err = run(chat_main, [model_dir, "--max-new-tokens", "2", "--raw"], capsys)
    assert code == 2 and "stdin is not UTF-8 text" in assert_one_error_line(err, "bt-chat")


def test_chat_conversation_longer_than_the_context_fails_the_run(model_dir, monkeypatch, capsys):
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['content'] }} {% endfor %}"  # the whole history
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    lines = "\n".join(long_text(50) for _ in range(3)) + "\n"  # 150 tokens > 128 positions by the third
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    code, err = run(chat_main, [model_dir, "--max-new-tokens", "2"], capsys)
    assert code == 1 and "the conversation has" in assert_one_error_line(err, "bt-chat")


def test_chat_caps_the_answer_at_the_context(model_dir, capsys):
    prompt = long_text(MAX_POSITIONS - 2)
    code, err = run(chat_main, [model_dir, "-p", prompt, "--raw", "--max-new-tokens", "50"], capsys)
    assert code == 0, err  # two positions left: at most two new tokens, and no error


# ------------------------------------------------------------------ bt-convert

CONVERT_SOURCES = [
    ("pickle-weights", write_pickle_weights, "pickle file"),
    ("truncated-weights", truncate("model.safetensors"), "cannot load the checkpoint"),
    ("missing-weight", lambda f: _drop_source_weight(f), "lacks 1 weight"),
    ("config-not-json", write_text("config.json", "{nope"), "cannot load the checkpoint"),
    ("no-config", remove("config.json"), "has no config.json"),
    ("no-weights", remove("model.safetensors"), "has no weights"),
]


def _drop_source_weight(folder: Path) -> None:
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    del tensors["model.layers.0.mlp.up_proj.weight"]
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize(
    ("edit", "message"), [c[1:] for c in CONVERT_SOURCES], ids=[c[0] for c in CONVERT_SOURCES]
)
def test_convert_refuses_a_broken_source(src, tmp_path, edit, message, capsys):
    sentinel = edit(src)
    before = snapshot(tmp_path)
    code, err = run(convert_main, [src, tmp_path / "out"], capsys)
    assert code == 2
    line = assert_one_error_line(err, "bt-convert")
    assert message in line and str(src) in line, line
    assert snapshot(tmp_path) == before
    if isinstance(sentinel, Path):
        assert not sentinel.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GGUF" + bytes(range(256)) * 4, "cannot load the checkpoint"),
        (b"", "cannot load the checkpoint"),
        (b"not a gguf file at all", "cannot load the checkpoint"),
    ],
    ids=["random-bytes", "empty", "text"],
)
def test_convert_refuses_a_fake_gguf(tmp_path, data, message, capsys):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(data)
    before = snapshot(tmp_path)
    code, err = run(convert_main, [fake, tmp_path / "out"], capsys)
    assert code == 2
    line = assert_one_error_line(err, "bt-convert")
    assert message in line and "model.gguf" in line
    assert snapshot(tmp_path) == before


def _files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "empty": tmp_path / "empty.txt",
        "blank": tmp_path / "blank.txt",
        "latin1": tmp_path / "latin1.txt",
        "folder": tmp_path / "a-folder",
        "short": tmp_path / "short.txt",
        "long": tmp_path / "long.txt",
    }
    files["empty"].write_text("")
    files["blank"].write_text(" \n\t\n")
    files["latin1"].write_bytes("caf\xe9 w1 w2".encode("latin-1"))
    files["folder"].mkdir()
    files["short"].write_text(long_text(30))
    files["long"].write_text(long_text(600))
    return files


CONVERT_ARGUMENTS = [
    ("calibration-empty", ["--calibration-file", "{empty}"], "--calibration-file"),
    ("calibration-blank", ["--calibration-file", "{blank}"], "is empty"),
    ("calibration-not-utf8", ["--calibration-file", "{latin1}"], "not UTF-8 text"),
    ("calibration-a-folder", ["--calibration-file", "{folder}"], "cannot read --calibration-file"),
    ("distill-empty", ["--distill-file", "{empty}"], "--distill-file"),
    ("distill-not-utf8", ["--distill-file", "{latin1}"], "not UTF-8 text"),
    ("distill-too-short", ["--distill-file", "{short}", "--distill-seq", "64"], "seq=64"),
    ("distill-seq-over-context", ["--distill-file", "{long}", "--distill-seq", "500"], "--distill-seq"),
    ("distill-lr-nan", ["--distill-lr", "nan"], "--distill-lr"),
    ("distill-lr-0", ["--distill-lr", "0"], "--distill-lr"),
    ("distill-lr-negative", ["--distill-lr", "-1e-3"], "--distill-lr"),
    ("distill-steps-0", ["--distill-steps", "0"], "--distill-steps"),
    ("distill-seq-0", ["--distill-seq", "0"], "--distill-seq"),
    ("calibration-tokens-0", ["--calibration-tokens", "0"], "--calibration-tokens"),
    ("seed-too-large", ["--seed", str(2**64)], "--seed"),
    ("seed-not-a-number", ["--seed", "x"], "--seed"),
    ("unknown-path", ["--path", "counts"], "--path"),
]


@pytest.mark.parametrize(
    ("extra", "message"), [c[1:] for c in CONVERT_ARGUMENTS], ids=[c[0] for c in CONVERT_ARGUMENTS]
)
def test_convert_refuses_bad_arguments(src, tmp_path, extra, message, capsys):
    files = {k: str(v) for k, v in _files(tmp_path).items()}
    before = snapshot(tmp_path)
    code, err = run(convert_main, [src, tmp_path / "out", *(a.format(**files) for a in extra)], capsys)
    assert code == 2
    assert message in assert_one_error_line(err, "bt-convert")
    assert snapshot(tmp_path) == before


def test_convert_refuses_dst_that_would_lose_data(src, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    inner = src / "sub"
    inner.mkdir()
    here = tmp_path / "here"
    here.mkdir()
    cases = [
        ([src, src, "--force"], "holds src"),  # SRC == DST
        ([inner, tmp_path, "--force"], "holds src"),  # DST holds SRC
        ([src, a_file], "already exists (use --force"),  # DST a file, no --force
        ([src, a_file, "--force"], "is a file, not a model folder"),
        ([src, ".", "--force"], "holds the current folder"),
        ([src, tmp_path / "missing" / "out"], "parent folder"),
    ]
    monkeypatch.chdir(here)
    for argv, message in cases:
        before = snapshot(tmp_path)
        code, err = run(convert_main, argv, capsys)
        assert code == 2, argv
        assert message in assert_one_error_line(err, "bt-convert"), (argv, err)
        assert snapshot(tmp_path) == before


def test_convert_into_a_read_only_folder_is_refused_before_converting(src, tmp_path, monkeypatch, capsys):
    import bt_neurons.models.braintransformers.conversion as conversion

    def must_not_run(*args, **kwargs):  # pragma: no cover - the check comes first
        raise AssertionError("the conversion ran although DST cannot be written")

    monkeypatch.setattr(conversion, "load_source", must_not_run)
    code, err = run(convert_main, [src, "/proc/bt-neurons-model"], capsys)  # read-only even for root
    assert code == 2 and "is not writable" in assert_one_error_line(err, "bt-convert")
    if os.geteuid() != 0:  # root writes anywhere: a mode-0555 folder stops only other users
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            code, err = run(convert_main, [src, locked / "out"], capsys)
            assert code == 2 and "is not writable" in assert_one_error_line(err, "bt-convert")
        finally:
            locked.chmod(0o755)


def test_convert_failures_during_the_run_keep_the_old_dst(src, originals, tmp_path, monkeypatch, capsys):
    dst = tmp_path / "model"
    shutil.copytree(originals / "model", dst)
    before = snapshot(tmp_path)

    def no_space(self, folder, *args, **kwargs):
        raise OSError(28, "No space left on device", str(folder))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered\nmore detail")

    import bt_neurons.models.braintransformers.conversion as conversion

    for target, name, replacement, status, message in [
        (BTSpikingForCausalLM, "save_pretrained", no_space, 1, "No space left on device"),
        (conversion, "convert", interrupted, 130, "interrupted; nothing was written"),
        (conversion, "convert", broken, 1, "RuntimeError: CUDA error: device-side assert triggered more"),
    ]:
        with monkeypatch.context() as m:
            m.setattr(target, name, replacement)
            code, err = run(convert_main, [src, dst, "--force", "-T", "2"], capsys)
        assert code == status
        assert message in assert_one_error_line(err, "bt-convert")
        assert snapshot(tmp_path) == before  # the old DST is intact, no temporary folder is left


def test_convert_writes_folders_with_the_umask_permissions(src, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert convert_main([str(src), str(tmp_path / "out"), "-T", "2"]) == 0
    finally:
        os.umask(old)
    out = tmp_path / "out"
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not mkdtemp's 0700
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o644}  # not 0600


def test_convert_force_replaces_a_symlink_not_its_target(src, originals, tmp_path, capsys):
    target = tmp_path / "elsewhere"
    shutil.copytree(originals / "model", target)
    link = tmp_path / "link"
    link.symlink_to(target, target_is_directory=True)
    before = snapshot(target)
    assert convert_main([str(src), str(link), "--force", "-T", "2"]) == 0
    assert not link.is_symlink() and (link / "config.json").is_file()
    assert snapshot(target) == before


# ------------------------------------------------------------------ bt-fit

MODULE = textwrap.dedent(
    """
    import torch

    def wrong_shape(x):
        return torch.cat([x, x])

    def a_string(x):
        return "abc"

    def nothing(x):
        return None

    def not_finite(x):
        return torch.log(x)

    def only_tensors(x):
        return x.exp()
    """
)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "bt_fit_funcs.py").write_text(MODULE)
    (pkg / "bt_fit_raises.py").write_text("raise ZeroDivisionError('at import')\n")
    (pkg / "bt_fit_syntax.py").write_text("def f(x) return x\n")
    monkeypatch.syspath_prepend(str(pkg))
    for name in ("bt_fit_funcs", "bt_fit_raises", "bt_fit_syntax"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return pkg


SMALL = ["--neurons", "4", "--timesteps", "4", "--steps", "3", "--quiet"]

FIT_CASES = [
    ("existing-outputs", ["silu"], "already holds silu.safetensors, silu.json, silu.png (use --force"),
    ("png-is-a-folder", ["silu", "--force"], "holds a folder named 'silu.png'"),
    ("name-with-folders", ["silu", "--name", "../escaped"], "--name must be a plain file name"),
    ("name-with-slash", ["silu", "--name", "a/b"], "--name must be a plain file name"),
    ("name-empty", ["silu", "--name", ""], "--name must be a plain file name"),
    ("name-hidden", ["silu", "--name", ".hidden"], "--name must be a plain file name"),
    ("too-many-neurons", ["silu", "--neurons", "1000000"], "--neurons must be <="),
    ("too-many-timesteps", ["silu", "--timesteps", "65"], "--timesteps must be <= 64"),
    ("device-garbage", ["silu", "--device", "cuda:x"], "--device must be cpu or cuda"),
    ("neurons-not-a-number", ["silu", "--neurons", "four"], "--neurons"),
    ("domain-nan", ["silu", "--domain", "nan", "1"], "--domain must be finite"),
    ("target-without-module", [":sin", "--domain", "0", "1"], "must look like 'package.module:function'"),
    ("target-without-function", ["math:", "--domain", "0", "1"], "must look like 'package.module:function'"),
    ("module-raises-on-import", ["bt_fit_raises:f", "--domain", "0", "1"], "raised ZeroDivisionError"),
    ("module-syntax-error", ["bt_fit_syntax:f", "--domain", "0", "1"], "raised SyntaxError"),
    ("wrong-shape", ["bt_fit_funcs:wrong_shape", "--domain", "0", "1"], "must work element by element"),
    ("returns-a-string", ["bt_fit_funcs:a_string", "--domain", "0", "1"], "must return numbers"),
    ("returns-none", ["bt_fit_funcs:nothing", "--domain", "0", "1"], "must return a number"),
    ("not-finite", ["bt_fit_funcs:not_finite", "--domain", "-1", "1"], "not finite on its domain"),
    ("unknown-target", ["relu6"], "unknown target 'relu6'"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in FIT_CASES], ids=[c[0] for c in FIT_CASES])
def test_fit_refuses_bad_input_and_keeps_what_is_there(tmp_path, user_module, argv, message, capsys):
    out = tmp_path / "out"
    out.mkdir()
    for suffix in (".safetensors", ".json"):
        (out / f"silu{suffix}").write_text("an earlier fit")
    (out / "silu.png").mkdir() if "--force" in argv else (out / "silu.png").write_text("an earlier plot")
    before = snapshot(tmp_path)
    code, err = run(cli.main, [*SMALL, *argv, "--out", out], capsys)  # argv's options win
    assert code == 2
    assert message in assert_one_error_line(err, "bt-fit")
    assert snapshot(tmp_path) == before


def test_fit_force_replaces_all_three_files(tmp_path, capsys):
    for suffix in (".safetensors", ".json", ".png"):
        (tmp_path / f"tanh{suffix}").write_text("old")
    assert cli.main(["tanh", "--out", str(tmp_path), "--force", *SMALL]) == 0
    assert all((tmp_path / f"tanh{s}").read_bytes() != b"old" for s in (".safetensors", ".json", ".png"))
    assert stat.S_IMODE((tmp_path / "tanh.json").stat().st_mode) == 0o666 & ~_umask()


def test_fit_does_not_create_out_when_it_fails(tmp_path, capsys):
    code, err = run(cli.main, ["nosuchtarget", "--out", tmp_path / "new" / "folder", *SMALL], capsys)
    assert code == 2 and not (tmp_path / "new").exists()


def test_fit_failure_while_writing_keeps_the_old_files(tmp_path, monkeypatch, capsys):
    """The plot fails after the .safetensors and .json are written aside: the old three stay."""
    import bt_neurons.approximators.plotting as plotting

    for suffix in (".safetensors", ".json", ".png"):
        (tmp_path / f"tanh{suffix}").write_text("old")
    before = snapshot(tmp_path)

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plotting, "plot_fit", no_space)
    code, err = run(cli.main, ["tanh", "--out", tmp_path, "--force", *SMALL], capsys)
    assert code == 1 and "No space left on device" in assert_one_error_line(err, "bt-fit")
    assert snapshot(tmp_path) == before


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ------------------------------------------------------------------ atomic writes


def test_atomic_files_a_failing_writer_changes_nothing(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(f"old {name}")
    before = snapshot(tmp_path)

    def fail(path):
        raise ValueError("the third writer failed")

    writers = [
        (tmp_path / "a", lambda p: p.write_text("new")),
        (tmp_path / "b", lambda p: p.write_text("new")),
    ]
    with pytest.raises(ValueError, match="third writer"):
        atomic_write_files([*writers, (tmp_path / "c", fail)])
    assert snapshot(tmp_path) == before


def test_atomic_files_a_failing_rename_restores_the_old_files(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(f"old {name}")
    before = snapshot(tmp_path)
    real_replace = os.replace

    def replace(src, dst):  # the new c cannot be moved in (its old file can be moved back)
        if Path(dst) == tmp_path / "c" and str(src).endswith(".tmp"):
            raise PermissionError(13, "Permission denied", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    writers = [(tmp_path / n, lambda p: p.write_text("new")) for n in ("a", "b", "c")]
    with pytest.raises(PermissionError):
        atomic_write_files(writers)
    monkeypatch.setattr(os, "replace", real_replace)
    assert snapshot(tmp_path) == before  # a and b were put back, no temporary is left


@pytest.mark.parametrize(
    ("writers", "error", "message"),
    [
        (
            lambda d: [(d / "a", lambda p: p.write_text("x")), (d / "folder", lambda p: p.write_text("x"))],
            IsADirectoryError,
            "a folder is in the way",
        ),
        (
            lambda d: [(d / "a", lambda p: p.write_text("x")), (d / "a", lambda p: p.write_text("y"))],
            ValueError,
            "destinations must differ",
        ),
    ],
    ids=["destination-is-a-folder", "same-destination-twice"],
)
def test_atomic_files_refuse_bad_destinations(tmp_path, writers, error, message):
    (tmp_path / "a").write_text("old")
    (tmp_path / "folder").mkdir()
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        atomic_write_files(writers(tmp_path))
    assert snapshot(tmp_path) == before


def test_atomic_files_replace_a_symlink_not_its_target(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text("theirs")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "silu.json").symlink_to(target)
    atomic_write_files([(tmp_path / "out" / "silu.json", lambda p: p.write_text("ours"))])
    assert target.read_text() == "theirs" and not (tmp_path / "out" / "silu.json").is_symlink()


def test_atomic_folder_failure_keeps_the_old_folder(tmp_path):
    dst = tmp_path / "dst"
    dst.mkdir()
    (dst / "f").write_text("old")
    before = snapshot(tmp_path)

    def half_then_fail(folder):
        (folder / "f").write_text("new")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write_folder(dst, half_then_fail, replace=True)
    with pytest.raises(FileExistsError):
        atomic_write_folder(dst, lambda folder: None)
    assert snapshot(tmp_path) == before


def _approximator(**tensors) -> NeuronArrayApproximator:
    approx = NeuronArrayApproximator(torch.linspace(0.0, 1.0, 5), 4)
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(approx, name).copy_(value)
    return approx


@pytest.mark.parametrize(
    ("approx", "name", "error", "message"),
    [
        (lambda: _approximator(), "../escaped", ValueError, "name must be a plain file name"),
        (lambda: _approximator(), "", ValueError, "name must be a plain file name"),
        (lambda: _approximator(), 3, TypeError, "name must be a str"),
        (lambda: _approximator(left_tail=torch.tensor([float("nan"), 0.0])), "x", ValueError, "left_tail"),
        (lambda: _approximator(right_tail=torch.tensor([0.0, float("inf")])), "x", ValueError, "right_tail"),
    ],
    ids=["name-escapes", "name-empty", "name-not-a-string", "nan-tail", "inf-tail"],
)
def test_save_approximator_refuses_and_writes_nothing(tmp_path, approx, name, error, message):
    before = snapshot(tmp_path)
    with pytest.raises(error, match=message):
        save_approximator(approx(), tmp_path / "out", name, {})
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------------ the LLM's inputs


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(input_ids=torch.tensor([1, 2, 3])),
            ValueError,
            r"input_ids must have shape \[batch, tokens\]",
        ),
        (dict(input_ids=torch.ones(1, 0, dtype=torch.long)), ValueError, "at least one token"),
        (dict(input_ids=torch.ones(1, 1, 3, dtype=torch.long)), ValueError, "input_ids must have shape"),
        (dict(input_ids=torch.tensor([[1, -1]])), ValueError, r"input_ids must lie in \[0, 97\).*got -1"),
        (dict(input_ids=torch.tensor([[1, VOCAB]])), ValueError, "got 97"),
        (
            dict(input_ids=torch.ones(1, 3, dtype=torch.int16)),
            TypeError,
            "input_ids must be an integer tensor",
        ),
        (dict(input_ids=[[1, 2]]), TypeError, "input_ids must be a torch.Tensor"),
        (
            dict(input_ids=torch.ones(1, MAX_POSITIONS + 1, dtype=torch.long)),
            ValueError,
            "more than the model's 128 positions",
        ),
        (dict(inputs_embeds=torch.ones(3, 36)), ValueError, "inputs_embeds must have shape"),
        (dict(inputs_embeds=torch.ones(1, 3, 30)), ValueError, r"\[batch, sequence, 36\]"),
        (
            dict(inputs_embeds=torch.ones(1, 3, 36, dtype=torch.long)),
            TypeError,
            "inputs_embeds must have a floating",
        ),
        (
            dict(input_ids=torch.ones(1, 3, dtype=torch.long), labels=torch.ones(1, 4, dtype=torch.long)),
            ValueError,
            "labels must be integer token ids of shape",
        ),
        (dict(input_ids=torch.ones(1, 3, dtype=torch.long), labels=torch.ones(1, 3)), ValueError, "labels"),
        (dict(input_ids=torch.ones(1, 3, dtype=torch.long), logits_to_keep=-1), ValueError, "logits_to_keep"),
        (dict(input_ids=torch.ones(1, 3, dtype=torch.long), logits_to_keep=1.5), TypeError, "logits_to_keep"),
        (
            dict(input_ids=torch.ones(1, 3, dtype=torch.long), position_ids=torch.tensor([[0, 1, 500]])),
            ValueError,
            r"position_ids must lie in \[0, 128\)",
        ),
        (
            dict(input_ids=torch.ones(1, 3, dtype=torch.long), position_ids=torch.tensor([[0.0, 1.0, 2.0]])),
            TypeError,
            "position_ids must be an integer tensor",
        ),
        (
            dict(input_ids=torch.ones(1, 3, dtype=torch.long), position_ids=torch.tensor([[0, 1]])),
            ValueError,
            r"position_ids must have shape \[batch or 1, 3\]",
        ),
    ],
    ids=[
        "1-d",
        "no-tokens",
        "3-d",
        "negative-id",
        "id-past-vocab",
        "int16",
        "a-list",
        "longer-than-context",
        "embeds-2d",
        "embeds-width",
        "embeds-integer",
        "labels-shape",
        "labels-float",
        "logits-to-keep-negative",
        "logits-to-keep-float",
        "positions-past-context",
        "positions-float",
        "positions-shape",
    ],
)
def test_model_forward_refuses(model, kwargs, error, message):
    with pytest.raises(error, match=message):
        model(use_cache=False, **kwargs)


@settings(max_examples=20, deadline=None)
@given(shape=st.lists(st.integers(0, 3), max_size=4).filter(lambda s: len(s) != 2 or 0 in s[1:]))
def test_input_ids_of_any_other_shape_are_refused(model, shape):
    with pytest.raises(ValueError, match=r"input_ids must have shape \[batch, tokens\]"):
        model(input_ids=torch.ones(shape, dtype=torch.long), use_cache=False)


@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_a_non_finite_weight_anywhere_is_refused_naming_the_tensor(originals, data):
    """Hypothesis picks the tensor, the element and the value (NaN, +Inf, -Inf)."""
    tensors = load_file(str(originals / "model" / "model.safetensors"))
    name = data.draw(st.sampled_from(sorted(k for k, t in tensors.items() if t.is_floating_point())))
    index = data.draw(st.integers(0, tensors[name].numel() - 1))
    tensors[name].view(-1)[index] = data.draw(st.sampled_from([float("nan"), float("inf"), -float("inf")]))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "model"
        shutil.copytree(originals / "model", folder)
        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
        with pytest.raises(ValueError, match=f"tensor '{re.escape(name)}' of .* must be finite"):
            BTSpikingForCausalLM.from_pretrained(folder, local_files_only=True)


def test_generate_stops_at_the_context_with_a_clear_error(model):
    ids = torch.ones(1, MAX_POSITIONS - 2, dtype=torch.long)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(input_ids=ids, max_new_tokens=10, do_sample=False)


def test_an_empty_batch_is_legal(model):
    assert model(input_ids=torch.ones(0, 3, dtype=torch.long), use_cache=False).logits.shape == (0, 3, VOCAB)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda m: perplexity(m, torch.ones(40, dtype=torch.long), 8, batch=0), ValueError, "batch"),
        (lambda m: perplexity(m, torch.ones(40, dtype=torch.long), 8, batch=1.5), TypeError, "batch"),
        (
            lambda m: perplexity(m, torch.ones(40, dtype=torch.long), 8, max_windows=0),
            ValueError,
            "max_windows",
        ),
        (lambda m: perplexity(m, torch.ones(2, 40, dtype=torch.long), 8), ValueError, r"one sequence \[L\]"),
        (lambda m: windows(torch.ones(40), 8), TypeError, "input_ids must be an integer tensor"),
        (lambda m: windows([1, 2, 3], 2), TypeError, "input_ids must be a torch.Tensor"),
        (lambda m: energy_per_token(m, torch.ones(1, 0, dtype=torch.long)), ValueError, "not empty"),
        (
            lambda m: calibrate(m, torch.ones(5, dtype=torch.long)),
            ValueError,
            r"input_ids must be .*\[B, L\]",
        ),
        (
            lambda m: calibrate(m, torch.ones(1, 5, dtype=torch.long), channel_strength=float("nan")),
            ValueError,
            "channel_strength",
        ),
    ],
    ids=[
        "perplexity-batch-0",
        "perplexity-batch-float",
        "perplexity-max-windows-0",
        "perplexity-two-rows",
        "windows-float-ids",
        "windows-a-list",
        "energy-empty",
        "calibrate-1d",
        "calibrate-nan-strength",
    ],
)
def test_evaluation_refuses(model, call, error, message):
    clips = {n: b.clone() for n, b in model.named_buffers() if n.endswith("clip_ratio")}
    with pytest.raises(error, match=message):
        call(model)
    assert all(torch.equal(b, clips[n]) for n, b in model.named_buffers() if n.endswith("clip_ratio"))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(calibration_text=torch.ones(1, 20, dtype=torch.long), calibration_tokens=-1),
            ValueError,
            "calibration_tokens",
        ),
        (
            dict(calibration_text=torch.ones(1, 20, dtype=torch.long), calibration_tokens=0),
            ValueError,
            "calibration_tokens",
        ),
        (dict(calibration_tokens=2.5), TypeError, "calibration_tokens"),
        (
            dict(calibration_text=torch.ones(1, 2, 20, dtype=torch.long)),
            ValueError,
            "calibration_text as a tensor",
        ),
        (dict(seed="1"), TypeError, "seed"),
        (dict(rotate="False"), TypeError, "rotate must be True or False"),
        (dict(final_mixer=1), TypeError, "final_mixer"),
    ],
    ids=[
        "tokens-negative",
        "tokens-0",
        "tokens-float",
        "ids-3d",
        "seed-a-string",
        "rotate-a-string",
        "final-mixer-an-int",
    ],
)
def test_convert_function_refuses(kwargs, error, message):
    with pytest.raises(error, match=message):
        convert(tiny_ann(), 5, **kwargs)


def test_load_source_never_opens_a_pickle(src):
    sentinel = write_pickle_weights(src)
    with pytest.raises(ValueError, match="pytorch_model.bin, a pickle file"):
        load_source(src)
    assert not sentinel.exists()


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: BTSpikingConfig(hidden_size="big"), TypeError, "hidden_size must be a positive int"),
        (
            lambda: BTSpikingConfig(num_attention_heads=0),
            ValueError,
            "num_attention_heads must be a positive",
        ),
        (lambda: BTSpikingConfig(vocab_size=10, pad_token_id=50), ValueError, "pad_token_id"),
        (lambda: BTSpikingConfig(rms_norm_eps=float("nan")), ValueError, "rms_norm_eps"),
        (lambda: BTSpikingConfig(rotated="yes"), TypeError, "rotated must be True or False"),
        (lambda: BTSpikingConfig(hidden_size=4, num_attention_heads=8), ValueError, "hidden_size"),
        (lambda: BTSpikingConfig(rope_parameters=[1]), TypeError, "rope_parameters"),
    ],
    ids=[
        "hidden-a-string",
        "heads-0",
        "pad-past-vocab",
        "eps-nan",
        "rotated-a-string",
        "heads-over-hidden",
        "rope-a-list",
    ],
)
def test_config_refuses(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_from_pretrained_folder_without_config_says_so(model_dir):
    (model_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        BTSpikingForCausalLM.from_pretrained(model_dir, local_files_only=True)


def test_from_pretrained_refuses_to_unpickle(model_dir):
    with pytest.raises(ValueError, match="use_safetensors=False"):
        BTSpikingForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=False)


# ------------------------------------------------------------------ training helpers


def _small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))


def _spiking_net() -> nn.Module:
    return to_spiking(prepare_qat(_small_net(), timesteps=4))


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _checkpoint(tmp_path: Path, edit) -> tuple[Path, nn.Module, torch.optim.Optimizer, StageThreeLearner]:
    """A checkpoint of a spiking net with an optimiser and a learner, then ``edit(tensors, meta)`` applied."""
    net = _spiking_net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(torch.randn(2, 4)).sum().backward()
    opt.step()
    learner = StageThreeLearner(net)
    path = save_checkpoint(
        tmp_path / "ckpt.safetensors", net, optimizer=opt, learner=learner, info={"step": 3}
    )
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["bt_neurons"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    edit(tensors, meta)
    save_file(tensors, str(path), metadata={"bt_neurons": json.dumps(meta)})
    fresh = _spiking_net()
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)  # differs from the checkpoint: a partial load would show
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    return path, fresh, fresh_opt, StageThreeLearner(fresh)


def _first_weight(tensors: dict) -> str:
    return next(k for k in tensors if k.startswith("model/") and k.endswith("weight"))


CHECKPOINTS = [
    ("no-info", lambda t, m: m.pop("info"), "lacks the 'info' object"),
    ("info-a-list", lambda t, m: m.update(info=[1]), "lacks the 'info' object"),
    ("aliases-a-list", lambda t, m: m.update(aliases=[]), "'aliases'"),
    ("learner-without-config", lambda t, m: m["learner"].pop("config"), "learner"),
    ("learner-bad-coefficient", lambda t, m: m["learner"]["config"].update(beta="high"), "beta"),
    ("learner-negative-steps", lambda t, m: m["learner"].update(steps=-4), "'steps'"),
    ("learner-nan-history", lambda t, m: m["learner"]["modulation"].update(history=[float("nan")]), "finite"),
    ("no-optimizer", lambda t, m: m.pop("optimizer"), "holds no optimizer state"),
    (
        "optimizer-moment-shape",
        lambda t, m: t.update({k: torch.zeros(7) for k in t if k.endswith("exp_avg")}),
        "does not fit this optimizer",
    ),
    (
        "optimizer-bad-id",
        lambda t, m: m["optimizer"]["state"].update({"x": {}}),
        "not an optimizer parameter id",
    ),
    ("nan-weight", lambda t, m: t[_first_weight(t)].fill_(float("nan")), "NaN"),
    ("wrong-shape", lambda t, m: t.update({_first_weight(t): torch.zeros(1, 1)}), "does not fit this model"),
]


@pytest.mark.parametrize(("edit", "message"), [c[1:] for c in CHECKPOINTS], ids=[c[0] for c in CHECKPOINTS])
def test_load_checkpoint_changes_nothing_until_everything_fits(tmp_path, edit, message):
    path, net, opt, learner = _checkpoint(tmp_path, edit)
    weights, optimizer_state, learner_state = _state(net), opt.state_dict(), learner.state_dict()
    with pytest.raises(ValueError, match=message):
        load_checkpoint(path, net, optimizer=opt, learner=learner)
    assert _same(_state(net), weights)
    assert opt.state_dict() == optimizer_state and learner.state_dict() == learner_state


def test_save_checkpoint_does_not_replace_a_good_one_with_nan(tmp_path):
    net = _spiking_net()
    path = save_checkpoint(tmp_path / "ckpt.safetensors", net, info={"step": 1})
    before = snapshot(tmp_path)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    with pytest.raises(ValueError, match="not saved.*must be finite"):
        save_checkpoint(path, net)
    with pytest.raises(TypeError, match="info must be a dict"):
        save_checkpoint(path, _spiking_net(), info=[1, 2])
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: prepare_qat(nn.Linear(4, 4), timesteps=4), ValueError, "model is itself a Linear"),
        (lambda: prepare_qat(_small_net(), timesteps=4, skip="0"), TypeError, "skip must be a list"),
        (lambda: prepare_qat(_small_net(), timesteps=4, activations=nn.ReLU), TypeError, r"\(ReLU,\)"),
        (lambda: StageThreeLearner(_spiking_net(), synapses="0"), TypeError, "synapses must be a list"),
        (lambda: StageThreeLearner(_spiking_net(), nodes="1"), TypeError, "nodes must be a list"),
        (lambda: StageThreeLearner(_spiking_net()).load_state_dict({}), ValueError, "'steps', 'config'"),
        (lambda: StageThreeLearner(_spiking_net()).step(torch.ones(3)), ValueError, "task_loss"),
        (lambda: StageThreeLearner(_spiking_net()).step("0.5"), TypeError, "task_loss"),
        (
            lambda: StageThreeLearner(_spiking_net()).objective(0.5),
            TypeError,
            "task_loss must be the loss tensor",
        ),
        (
            lambda: StageThreeLearner(_spiking_net()).training_step(torch.tensor(1.0), "adam"),
            TypeError,
            "optimizer must be a torch.optim.Optimizer",
        ),
        (
            lambda: stdp_update(torch.zeros(2, 2), torch.zeros(2, 2), 0.5, eta_w=float("nan")),
            ValueError,
            "eta_w",
        ),
        (
            lambda: expected_first_spike_time(torch.ones(3, 2), torch.ones(3), float("nan")),
            ValueError,
            "temperature",
        ),
    ],
    ids=[
        "qat-a-bare-linear",
        "qat-skip-a-string",
        "qat-activations-a-type",
        "learner-synapses-a-string",
        "learner-nodes-a-string",
        "learner-empty-state",
        "learner-step-vector-loss",
        "learner-step-string-loss",
        "learner-objective-float-loss",
        "learner-optimizer-a-string",
        "stdp-eta-nan",
        "first-spike-nan-temperature",
    ],
)
def test_training_helpers_refuse(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("field", ["spike_rate", "membrane", "modulation", "eta_theta"])
def test_homeostasis_refuses_nan_and_changes_nothing(field):
    node = EIIFNode(T=4, path="count")
    before = _state(node)
    args = dict(spike_rate=0.2, membrane=0.4, modulation=0.5)
    kwargs = {field: float("nan")}
    with pytest.raises(ValueError, match=f"{field} must be finite"):
        homeostasis_update(node, **{**args, **kwargs})
    assert _same(_state(node), before)


@pytest.fixture
def distill_setup():
    teacher = tiny_ann()
    student = convert(teacher, 3, rotate=False)
    return student, teacher, torch.randint(0, VOCAB, (80,), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (dict(max_grad_norm=0.0), ValueError, "max_grad_norm"),
        (dict(lr=float("nan")), ValueError, "lr must be a positive finite number"),
        (dict(steps=0), ValueError, "steps must be a positive int"),
        (dict(seed="0"), TypeError, "seed"),
        (dict(learn_clip="yes"), TypeError, "learn_clip"),
        (dict(token_ids=torch.full((80,), VOCAB)), ValueError, r"token_ids must lie in \[0, 97\)"),
        (dict(token_ids=torch.ones(2, 40, dtype=torch.long)), ValueError, "token_ids must be a 1-D tensor"),
        (dict(seq=200, token_ids=torch.ones(300, dtype=torch.long)), ValueError, "max_position_embeddings"),
        (dict(teacher=42), TypeError, "teacher must be a causal LM"),
        (dict(teacher=tiny_ann(vocab_size=50)), ValueError, "share a vocabulary"),
    ],
    ids=[
        "grad-norm-0",
        "lr-nan",
        "steps-0",
        "seed-a-string",
        "learn-clip-a-string",
        "ids-past-vocab",
        "ids-2d",
        "seq-over-context",
        "teacher-a-number",
        "teacher-other-vocab",
    ],
)
def test_distill_refuses_before_changing_the_model(distill_setup, change, error, message):
    student, teacher, ids = distill_setup
    kwargs = dict(teacher=teacher, token_ids=ids, steps=1, seq=16) | change
    before = _state(student)
    modules = [type(m) for m in student.modules()]
    with pytest.raises(error, match=message):
        distill(student, kwargs.pop("teacher"), kwargs.pop("token_ids"), **kwargs)
    assert [type(m) for m in student.modules()] == modules and _same(_state(student), before)


# ------------------------------------------------------------------ Ctrl-C from the very first second


def _wait_for(condition, what: str, limit: float = 300.0) -> None:
    """Poll until ``condition()``; the limit only stops a hung test (nothing is asserted about time)."""
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:  # pragma: no cover
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _as_at_a_terminal() -> None:
    """In the child, before exec: SIGINT delivered as at a terminal (its default disposition).

    A test run started in the background of a non-interactive shell (``cmd &``)
    inherits SIGINT ignored, as POSIX shells set it for asynchronous commands;
    a program launched from there rightly keeps ignoring it, which is not what
    these tests are about.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _script(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.exists():  # pragma: no cover
        pytest.skip(f"the console script {name} is not installed")
    return path


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports happen")
def test_ctrl_c_while_bt_fit_imports_torch(tmp_path):
    """SIGINT while ``import bt_neurons`` is still loading torch: one line, status 130, nothing written."""
    proc = subprocess.Popen(
        [_script("bt-fit"), "silu", "--out", str(tmp_path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_at_a_terminal,
    )
    maps = Path(f"/proc/{proc.pid}/maps")

    def loading_torch() -> bool:
        try:
            return proc.poll() is not None or "libtorch" in maps.read_text()
        except OSError:
            return proc.poll() is not None

    _wait_for(loading_torch, "bt-fit to start importing torch")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted" in assert_one_error_line(err, "bt-fit")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_during_the_fit(tmp_path):
    """SIGINT while the user's function runs (inside main): one line, status 130, nothing written."""
    marker = tmp_path / "started"
    (tmp_path / "bt_fit_slow.py").write_text(
        textwrap.dedent(
            f"""
            import pathlib, time, torch

            def slow(x):
                pathlib.Path({str(marker)!r}).touch()
                time.sleep(0.05)
                return torch.sin(x)
            """
        )
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [_script("bt-fit"), "bt_fit_slow:slow", "--domain", "0", "3", "--out", str(out), *SMALL],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_at_a_terminal,
    )
    _wait_for(lambda: marker.exists() or proc.poll() is not None, "the fit to call the function")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "interrupted; nothing was written" in assert_one_error_line(err, "bt-fit")
    assert not out.exists() or list(out.iterdir()) == []


def test_exit_statuses_are_the_documented_ones():
    from bt_neurons import _commands

    statuses = (_commands.EXIT_OK, _commands.EXIT_FAILED, _commands.EXIT_USAGE, _commands.EXIT_INTERRUPTED)
    assert statuses == (0, 1, 2, 130)
