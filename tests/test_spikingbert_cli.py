"""``bt-spikingbert``: finetune, distil and eval on a task file, and every bad input a user can give."""

from __future__ import annotations

import json

import pytest
from bt_neurons.models.spikingbert import DistillationConfig, SpikingBertForSequenceClassification
from bt_neurons.models.spikingbert.cli import main
from test_spikingbert_teacher import tiny_archive, toy_task


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny teacher archive, the toy task as a JSON file, and a teacher fine-tuned on it."""
    root = tmp_path_factory.mktemp("spikingbert-cli")
    tiny_archive(root / "model.zip")
    toy_task().to_json(root / "toy.json")
    argv = ["finetune", "--task", str(root / "toy.json"), "--out", str(root / "teacher")]
    argv += ["--archive", str(root / "model.zip"), "--epochs", "30", "--batch-size", "8", "--lr", "3e-3"]
    assert main(argv) == 0
    return root


def test_finetune_distil_eval(files, tmp_path, capsys):
    capsys.readouterr()
    task, student = str(files / "toy.json"), tmp_path / "student"
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    DistillationConfig.intermediate(hidden_map={0: 0, 2: 2}).save(first)
    DistillationConfig.prediction(label_weight=0.5).save(second)
    argv = ["distil", "--teacher", str(files / "teacher"), "--task", task, "--out", str(student)]
    argv += ["--layers", "2", "--time-steps", "6", "--epochs", "20", "--batch-size", "8", "--lr", "3e-3"]
    assert main([*argv, "--distillation", str(first), "--distillation", str(second)]) == 0
    reports = [line for line in capsys.readouterr().err.splitlines() if line.startswith("stage ")]
    assert [r.split(": wrote")[0] for r in reports] == ["stage 1 of 2", "stage 2 of 2"]
    assert "test accuracy 100.0%" in reports[1]
    for k, config in ((1, first), (2, second)):
        saved = DistillationConfig.load(student / f"stage-{k}" / "distillation.json")
        assert saved == DistillationConfig.load(config)
    model = SpikingBertForSequenceClassification.from_pretrained(student)
    assert model.config.time_steps == 6 and model.config.id2label == {0: "comedy", 1: "history"}
    assert main(["eval", str(student), "--task", task, "--time-steps", "3", "6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "toy / test (12 passages)"
    assert out[1].startswith("T = 3: accuracy ") and out[2].startswith("T = 6: accuracy 100.0%, ")
    assert out[2].endswith(" spikes per passage")
    assert main(["eval", str(files / "teacher"), "--task", task, "--split", "validation"]) == 0
    assert capsys.readouterr().out.splitlines() == ["toy / validation (8 passages)", "accuracy 100.0%"]
    argv = ["eval", str(files / "teacher"), "--task", task, "--convert", "--time-steps", "15"]
    assert main([*argv, "--layernorm", "spiking"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "converted, T = 15, LayerNorm spiking: accuracy 100.0%"
    with pytest.raises(SystemExit):
        main(["eval", str(student), "--task", task, "--convert", "--layernorm", "rms"])
    assert main(["eval", str(student), "--task", task, "--convert"]) == 2
    assert "--convert: MODEL must be a BERT classifier" in capsys.readouterr().err


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_bad_input_is_one_line_and_exit_2(files, tmp_path, capsys):
    task, teacher = str(files / "toy.json"), str(files / "teacher")
    (tmp_path / "file").write_text("x")
    (tmp_path / "broken.json").write_text(json.dumps({"hidden_weight": -1}))
    three = json.loads((files / "toy.json").read_text()) | {"labels": ["a", "b", "c"]}
    (tmp_path / "three.json").write_text(json.dumps(three))
    distil = ["distil", "--teacher", teacher, "--task", task]
    cases = [
        (["eval", teacher, "--task", "authorship"], "--task: task must be one of ['genre', 'period']"),
        (["eval", teacher, "--task", str(tmp_path / "no.json")], "no.json"),
        (["eval", str(tmp_path), "--task", task], "is not a model folder (no config.json)"),
        (
            ["eval", teacher, "--task", task, "--time-steps", "4"],
            "--time-steps: MODEL is not a spiking model",
        ),
        (["eval", teacher, "--task", str(tmp_path / "three.json")], "MODEL has 2 labels, the task 'toy' 3"),
        ([*distil, "--out", str(tmp_path / "file")], "is a file, not a folder"),
        ([*distil, "--out", teacher], "already holds a model (--force to replace it)"),
        ([*distil, "--out", str(tmp_path / "a" / "b")], "the parent folder of --out"),
        ([*distil, "--out", str(tmp_path / "s"), "--layers", "3"], "--layers 3 exceeds the teacher's 2"),
        (
            [*distil, "--out", str(tmp_path / "s"), "--distillation", str(tmp_path / "broken.json")],
            "hidden_weight must be",
        ),
        (
            [*distil, "--out", str(tmp_path / "s"), "--distillation", str(tmp_path / "none.json")],
            "does not exist",
        ),
        (
            [
                "distil",
                "--teacher",
                teacher,
                "--task",
                str(tmp_path / "three.json"),
                "--out",
                str(tmp_path / "s"),
            ],
            "--teacher has 2 labels, the task 'toy' 3",
        ),
        (
            [
                "finetune",
                "--task",
                task,
                "--out",
                str(tmp_path / "t"),
                "--archive",
                str(tmp_path / "none.zip"),
            ],
            "none.zip",
        ),
    ]
    for argv, message in cases:
        line = _error(capsys, argv)
        assert line.startswith("bt-spikingbert: error: ") and message in line, (argv, line)
    assert not (tmp_path / "s").exists() and not (tmp_path / "t").exists()  # nothing half-written
    with pytest.raises(SystemExit) as usage:
        main(["distil", "--teacher", teacher, "--task", task, "--out", "x", "--time-steps", "0"])
    assert usage.value.code == 2 and "expected a positive integer" in capsys.readouterr().err
