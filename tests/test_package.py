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
    assert "bt_neurons/snntorch/__init__.py" in names
    for target in ("silu", "exp", "rsqrt"):  # the fitted parameters ship in the wheel
        assert f"bt_neurons/approximators/pretrained/{target}.safetensors" in names
        assert f"bt_neurons/approximators/pretrained/{target}.json" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "bt-demo = bt_neurons.demo:main" in scripts
    assert "bt-fit = bt_neurons.approximators.cli:main" in scripts


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
