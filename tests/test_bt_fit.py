"""The bt-fit command: outputs, user functions, and every mistake a user can make."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
import torch
from bt_neurons.approximators import NeuronArrayApproximator, cli
from bt_neurons.approximators.targets import BUILTIN_TARGETS

SMALL = ["--neurons", "4", "--timesteps", "4", "--steps", "5", "--quiet"]


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_list(capsys):
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, spec in BUILTIN_TARGETS.items():
        assert name in out
        assert f"[{spec.full_domain[0]:g}, {spec.full_domain[1]:g}]" in out


def test_silu_with_default_settings_writes_three_files(tmp_path, capsys):
    assert cli.main(["silu", "--out", str(tmp_path), "--quiet"]) == 0
    assert files(tmp_path) == ["silu.json", "silu.png", "silu.safetensors"]
    out = capsys.readouterr().out
    for word in ("max abs error", "RMSE", "relative L2", "spikes / eval"):
        assert word in out
    meta = json.loads((tmp_path / "silu.json").read_text())
    assert meta["target"] == "silu" and meta["neurons"] == 16 and meta["timesteps"] == 7
    assert meta["coding"] == "binary" and meta["partition"] == "curvature"
    assert meta["errors"]["rel_l2"] < 0.01
    assert (tmp_path / "silu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    approx = NeuronArrayApproximator.load(tmp_path / "silu")
    x = torch.randn(100)
    assert (approx(x) - torch.nn.functional.silu(x)).abs().max() < 0.05


def test_user_function_by_import_path(tmp_path, monkeypatch, capsys):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mymodule.py").write_text(
        textwrap.dedent(
            """
            import math
            import torch

            def myfunc(x):
                return torch.sin(x) * x

            def scalar_only(x):
                return math.cos(x)

            def broken(x):
                raise ZeroDivisionError("boom")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    assert cli.main(["mypkg.mymodule:myfunc", "--domain", "-4", "4", "--out", str(out), *SMALL]) == 0
    assert files(out) == ["myfunc.json", "myfunc.png", "myfunc.safetensors"]
    assert cli.main(["mypkg.mymodule:scalar_only", "--domain", "0", "3", "--out", str(out), *SMALL]) == 0
    assert "scalar_only.json" in files(out)
    capsys.readouterr()
    assert cli.main(["mypkg.mymodule:broken", "--domain", "0", "3", "--out", str(out), *SMALL]) == 2
    assert "raised ZeroDivisionError: boom" in capsys.readouterr().err
    assert not any(n.startswith("broken") for n in files(out))


def test_user_function_from_the_current_folder(tmp_path, monkeypatch, capsys):
    """``bt-fit mymodule:fn`` finds mymodule.py in the current folder, as ``python -m`` would."""
    (tmp_path / "bt_fit_cwd_module.py").write_text("import torch\n\ndef wave(x):\n    return torch.cos(x)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "bt_fit_cwd_module", raising=False)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", str(tmp_path))])
    path_before = list(sys.path)
    assert cli.main(["bt_fit_cwd_module:wave", "--domain", "-3", "3", "--out", "fitted", *SMALL]) == 0
    assert files(tmp_path / "fitted") == ["wave.json", "wave.png", "wave.safetensors"]
    assert "bt-fit wave: 4 neurons x 4 steps" in capsys.readouterr().out
    assert sys.path == path_before  # the folder was importable only while bt-fit imported the module
    meta = json.loads((tmp_path / "fitted" / "wave.json").read_text())
    assert meta["target"] == "wave"


def test_help_shows_every_default(capsys, monkeypatch):
    parser = cli._parser()
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.option_strings and action.nargs != 0:  # every option that takes a value
            assert "default" in formatter._expand_help(action), action.option_strings
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: 300)",
        "(default: 0)",
        "(default: cpu)",
        "64 for your own function",
        "(default: the",
    ):
        assert shown in text
    assert "default: None" not in text and "default: False" not in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["slu"], "Did you mean 'silu'"),
        (["sqrt", "--domain", "-1", "1", "--partition", "linear"], "not finite on its domain"),
        (["silu", "--domain", "2", "2"], "--domain is empty"),
        (["silu", "--domain", "3", "-3"], "--domain is empty"),
        (["silu", "--domain", "0", "inf"], "--domain must be finite"),
        (["nosuchpkg.mod:f", "--domain", "0", "1"], "cannot import module 'nosuchpkg.mod'"),
        (["math:nosuch", "--domain", "0", "1"], "has no attribute 'nosuch'"),
        (["math:pi", "--domain", "0", "1"], "is not callable"),
        (["math:sin"], "--domain LO HI is required"),
        (["silu", "--timesteps", "1"], "--timesteps must be >= 2"),
        (["silu", "--neurons", "0"], "--neurons must be >= 1"),
        (["silu", "--steps", "-1"], "--steps must be >= 0"),
        (["silu", "--device", "tpu"], "--device must be cpu or cuda"),
        ([], "a target is required"),
    ],
)
def test_bad_input_exits_non_zero_and_writes_nothing(tmp_path, capsys, argv, message):
    code = cli.main([*argv, "--out", str(tmp_path), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("bt-fit: error:")
    assert files(tmp_path) == []


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert cli.main(["tanh", "--out", str(blocker / "sub"), *SMALL]) == 2
    assert "is not a writable folder" in capsys.readouterr().err


def test_ctrl_c_during_fit_writes_nothing(tmp_path, monkeypatch, capsys):
    import bt_neurons.approximators.fitting as fitting

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "fit_approximator", interrupted)
    assert cli.main(["tanh", "--out", str(tmp_path), *SMALL]) == 130
    assert "interrupted; nothing was written" in capsys.readouterr().err
    assert files(tmp_path) == []


def test_ctrl_c_while_writing_leaves_no_partial_file(tmp_path, monkeypatch):
    import bt_neurons.approximators.plotting as plotting

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(plotting, "plot_fit", interrupted)
    assert cli.main(["tanh", "--out", str(tmp_path), *SMALL]) == 130
    assert files(tmp_path) == []  # neither the .safetensors nor the .json, nor temporaries
