"""Packaging: the wheel installs one top-level package, ``bt_neurons``, with both upper layers."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import bt_neurons

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_has_only_bt_neurons_with_both_subpackages(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = tmp_path.glob("bt_neurons-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"bt_neurons"}
    assert "bt_neurons/approximators/__init__.py" in names
    assert "bt_neurons/models/__init__.py" in names
    assert "bt_neurons/models/braintransformers/modeling.py" in names  # one folder per model family
    assert "bt_neurons/models/spikegpt/modeling.py" in names
    assert "bt_neurons/snntorch/__init__.py" in names
    for target in ("silu", "exp", "rsqrt"):  # the fitted parameters ship in the wheel
        assert f"bt_neurons/approximators/pretrained/{target}.safetensors" in names
        assert f"bt_neurons/approximators/pretrained/{target}.json" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "bt-demo = bt_neurons.demo:main" in scripts
    assert "bt-fit = bt_neurons.approximators.cli:main" in scripts
    assert "bt-convert = bt_neurons.models.braintransformers.cli:convert_main" in scripts
    assert "bt-spikegpt = bt_neurons.models.spikegpt.cli:main" in scripts


def test_upper_layers_import_as_subpackages_from_their_folders():
    import bt_neurons.approximators as approximators
    import bt_neurons.models as models

    assert Path(approximators.__file__).resolve() == ROOT / "approximators" / "__init__.py"
    assert Path(models.__file__).resolve() == ROOT / "models" / "__init__.py"


def test_layering_imports_flow_one_way():
    import re

    upward = {
        "bt_neurons": re.compile(
            r"^\s*(from|import)\s+(bt_neurons\.)?(approximators|models)\b|^\s*from\s+\.\.?(approximators|models)"
        ),
        "approximators": re.compile(r"^\s*(from|import)\s+(bt_neurons\.)?models\b|^\s*from\s+\.\.?models"),
    }
    for folder, pattern in upward.items():
        for path in (ROOT / folder).rglob("*.py"):
            bad = [line for line in path.read_text().splitlines() if pattern.search(line)]
            assert not bad, f"{path} imports an upper layer: {bad}"


def test_version():
    assert bt_neurons.__version__ != "0+unknown"


USER_SCRIPT = """
import bt_neurons  # first: on a CPU torch, the CUDA torchvision SpikingJelly pulls in then reads as absent
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, pipeline

torch.manual_seed(0)

config = LlamaConfig(
    vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
)
model = AutoModelForCausalLM.from_config(config).eval()
out = model.generate(
    torch.tensor([[1, 2, 3]]), max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=0
)
print("generated", out.shape[1], callable(pipeline))
"""


def test_a_user_script_that_imports_bt_neurons_then_transformers_works(tmp_path):
    script = tmp_path / "user_script.py"
    script.write_text(USER_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "generated 5 True"


def test_a_working_optional_package_is_left_alone_and_a_broken_one_reads_as_absent(tmp_path):
    (tmp_path / "broken_pkg").mkdir()
    (tmp_path / "broken_pkg" / "__init__.py").write_text(
        "raise RuntimeError('operator x::nms does not exist')\n"
    )
    (tmp_path / "fine_pkg").mkdir()
    (tmp_path / "fine_pkg" / "__init__.py").write_text("VALUE = 3\n")
    code = (
        "import importlib.util, sys\n"
        "from bt_neurons._optional_imports import hide_broken_optional_imports\n"
        "print(hide_broken_optional_imports(('broken_pkg', 'fine_pkg')))\n"
        "print(importlib.util.find_spec('broken_pkg'), sys.modules['fine_pkg'].VALUE)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[:2] == ["['broken_pkg']", "None 3"]
