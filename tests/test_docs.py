"""The documentation builds strictly, its figures can be redrawn, and the demo runs.

The code on the tutorial pages is executed by pytest-markdown-docs
(``--markdown-docs`` in ``pyproject.toml``), each ``python`` block as a test.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_mkdocs_build_strict(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert mkdocs, "mkdocs is not installed (pip install -e '.[dev]')"
    result = subprocess.run(
        [mkdocs, "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "eiif" / "index.html").exists()


def test_figures_script_draws_every_picture(tmp_path):
    sys.path.insert(0, str(ROOT / "docs" / "figures"))
    try:
        import make_figures
    finally:
        sys.path.pop(0)
    paths = make_figures.main([str(tmp_path)])
    for p in paths:
        assert p.stat().st_size > 10_000
        assert (ROOT / "docs" / "img" / p.name).exists(), f"docs/img/{p.name} is not committed"


def test_demo_runs_and_both_paths_agree(capsys):
    from bt_neurons.demo import main

    assert main(["1.2", "-3.5", "0.49", "--timesteps", "4"]) == 0
    out = capsys.readouterr().out
    assert "spike path == count path: True" in out
    assert "-3.500  ----" in out  # -3.5 rounds away from zero to -4


def test_demo_rejects_bad_timesteps():
    from bt_neurons.demo import main

    with pytest.raises(SystemExit) as exc:
        main(["--timesteps", "0"])
    assert exc.value.code == 2
