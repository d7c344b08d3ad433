"""bt-demo: its help is plain text and its errors are usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bt_neurons.demo import main


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: bt-demo")
    text = " ".join(out.split())
    assert "Encode a few values with an EI_IF neuron and show what it did" in text
    assert "spike path" in text and "count path" in text
    assert "(default: 8)" in text
    for markup in ("`", "::", "**", "$"):  # no Markdown / reStructuredText left from the docstring
        assert markup not in out, markup


def test_console_script_help():
    demo = Path(sys.executable).parent / "bt-demo"
    result = subprocess.run([demo, "--help"], capture_output=True, text=True, check=True)
    assert "`" not in result.stdout and "Encode a few values" in result.stdout
    assert result.stderr == ""


def test_bad_arguments_are_usage_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["1.0", "--timesteps", "-3"])
    assert exc.value.code == 2
    assert "bt-demo: error: --timesteps must be a positive integer, got -3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["inf"])
    assert exc.value.code == 2
    assert "values must be finite numbers" in capsys.readouterr().err
