"""The three training stages end to end on a small spiking LM and real text (paper section 3.3).

A byte-level spiking LM (`BTSpikingForCausalLM`: 2 layers, hidden size 64,
grouped-query attention, T = 15, spiking linear layers, attention products
and gate product) learns real English text: the Vim user manual, chapters 1-8
(the text of the LLM benchmark; the project's ``docs/*.md`` where the system
has no Vim manual, or ``--text FILES``), 90% for training, the last 10% held
out:

0. reference: the float twin (every operator float), trained the same way;
1. stage 1: `prepare_qat`, then quantization-aware training (straight-through);
2. stage 2: `to_spiking`; the count path must give the stage-1 logits bit for
   bit, the spike path is evaluated on a few windows;
3. stage 3: `StageThreeLearner` with the paper's coefficients, and, from the
   same stage-2 weights, an ablation that keeps only the task loss (no STDP,
   no neuron terms), so the effect of the stage-3 rules is seen apart from
   the extra training steps.

Checkpoints are written after every stage (atomically) and stage 3 starts from
the reloaded stage-2 checkpoint. Results: held-out perplexity (bytes) after
each stage. ``--quick`` runs a tiny version (the test suite does).

    python benchmarks/bench_training.py --write-results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bt_neurons.models import BTSpikingConfig, BTSpikingForCausalLM, perplexity  # noqa: E402
from bt_neurons.models.training import (  # noqa: E402
    LOSS_TERMS,
    StageThreeConfig,
    StageThreeLearner,
    load_checkpoint,
    prepare_qat,
    save_checkpoint,
    to_spiking,
)
from results_file import machine_info, markers, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
THREADS = 2
SEQ = 64


#: The Vim user manual, chapters 1-8 (the text of the LLM benchmark), when the system has it.
VIM_MANUAL = [Path(f"/usr/share/vim/vim90/doc/usr_0{i}.txt") for i in range(1, 9)]


def default_text() -> list[Path]:
    """The Vim manual chapters if all are present, else this project's ``docs/*.md``."""
    if all(p.is_file() for p in VIM_MANUAL):
        return VIM_MANUAL
    return sorted((ROOT / "docs").glob("*.md"))


def corpus(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The bytes of ``paths``: (train, held-out), split 90 / 10."""
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in paths)
    data = torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
    split = int(0.9 * data.numel())
    return data[:split], data[split:]


def small_lm(timesteps: int, seed: int = 0) -> BTSpikingForCausalLM:
    torch.manual_seed(seed)
    config = BTSpikingConfig(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        timesteps=timesteps,
        rotated=False,
    )
    return BTSpikingForCausalLM(config)


def batches(train: torch.Tensor, steps: int, batch: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        starts = torch.randint(0, train.numel() - SEQ - 1, (batch,), generator=g)
        yield torch.stack([train[s : s + SEQ] for s in starts.tolist()])


def train_task(model, train, steps, batch, lr, seed) -> float:
    """Plain training on the task loss (stages 0 and 1); returns the last loss."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    loss = torch.tensor(float("nan"))
    for ids in batches(train, steps, batch, seed):
        loss = model(input_ids=ids, labels=ids).loss
        if not torch.isfinite(loss):
            raise ValueError(f"the task loss became {float(loss)}: training stopped")
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return float(loss.detach())


def train_stage3(model, train, steps, batch, lr, seed, config: StageThreeConfig) -> dict:
    model.train()
    learner = StageThreeLearner(model, config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    info: dict = {}
    g = []
    for ids in batches(train, steps, batch, seed):
        info = learner.training_step(model(input_ids=ids, labels=ids).loss, opt)
        g.append(info["modulation"])
    learner.close()
    info.update(mean_modulation=sum(g) / len(g), min_modulation=min(g), max_modulation=max(g))
    return info


def held_out(model, test, windows) -> float:
    model.eval()
    return perplexity(model, test, window=SEQ * 2, max_windows=windows, batch=8)


def run(args: argparse.Namespace) -> tuple[list[str], dict]:
    torch.set_num_threads(THREADS)
    paths = args.text or default_text()
    train, test = corpus(paths)
    T = args.timesteps
    r: dict = {"train_bytes": train.numel(), "test_bytes": test.numel()}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp)
        t0 = time.perf_counter()
        ann = small_lm(T).set_spiking(operators="float")
        train_task(ann, train, args.steps, args.batch, args.lr, seed=1)
        r["ann"] = held_out(ann, test, args.windows)
        r["ann_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        model = prepare_qat(small_lm(T), timesteps=T)
        train_task(model, train, args.steps, args.batch, args.lr, seed=1)
        r["stage1"] = held_out(model, test, args.windows)
        r["stage1_s"] = time.perf_counter() - t0
        save_checkpoint(ckpt / "stage1.safetensors", model, info={"stage": 1})
        probe = test[: SEQ * 4].view(4, SEQ)
        with torch.no_grad():
            logits1 = model(input_ids=probe).logits

        t0 = time.perf_counter()
        to_spiking(model, timesteps=T)
        with torch.no_grad():
            r["stage2_equal"] = bool(torch.equal(model(input_ids=probe).logits, logits1))
        r["stage2"] = held_out(model, test, args.windows)
        model.set_spiking(path="spike")
        r["stage2_spike"] = held_out(model, test, args.spike_windows)
        model.set_spiking(path="count")
        r["stage2_spike_count"] = held_out(model, test, args.spike_windows)
        r["stage2_s"] = time.perf_counter() - t0
        save_checkpoint(ckpt / "stage2.safetensors", model, info={"stage": 2})

        # ablations: only the task loss of eq. 34 (plus the local rules), then the task loss alone
        local_only = StageThreeConfig(**{k: 0.0 for k in LOSS_TERMS.values() if k != "lambda_task"})
        task_only = replace(local_only, eta_w=0.0, eta_theta=0.0, eta_alpha=0.0, eta_r=0.0)
        variants = {"paper": StageThreeConfig(), "local_only": local_only, "task_only": task_only}
        for name, config in variants.items():
            runs = []
            t0 = time.perf_counter()
            for seed in range(args.seeds):  # each seed: another order of the stage-3 batches
                info = load_checkpoint(ckpt / "stage2.safetensors", model)
                assert info == {"stage": 2}
                last = train_stage3(
                    model, train, args.stage3_steps, args.batch, args.stage3_lr, 2 + seed, config
                )
                runs.append(held_out(model, test, args.windows))
                if seed == 0:
                    r[f"stage3_{name}_info"] = last
            r[f"stage3_{name}_all"] = runs
            r[f"stage3_{name}"] = sum(runs) / len(runs)
            r[f"stage3_{name}_s"] = (time.perf_counter() - t0) / args.seeds

    lines = [
        f"Byte-level spiking LM (2 layers, hidden 64, 4 query / 2 key-value heads, T = {T}; spiking linear layers, "
        f"attention products and gate product, float softmax / RMSNorm / SiLU), trained on {describe(paths)} "
        f"({r['train_bytes']} bytes; held out: the last {r['test_bytes']} bytes, perplexity per byte over "
        f"{args.windows} windows of {2 * SEQ}). Batches of {args.batch} x {SEQ} bytes.",
        "",
        "| stage | held-out perplexity | vs float twin | time (s) |",
        "| --- | ---: | ---: | ---: |",
        f"| float twin, AdamW {args.steps} steps | {r['ann']:.3f} | 1.000x | {r['ann_s']:.0f} |",
        f"| 1: quantized ANN (prepare_qat, T = {T}), AdamW {args.steps} steps | {r['stage1']:.3f} | "
        f"{r['stage1'] / r['ann']:.3f}x | {r['stage1_s']:.0f} |",
        f"| 2: converted (to_spiking), count path | {r['stage2']:.3f} | {r['stage2'] / r['ann']:.3f}x | "
        f"{r['stage2_s']:.0f} |",
        *(
            f"| {label}, Adam {args.stage3_steps} steps | {spread(r[f'stage3_{key}_all'])} | "
            f"{r[f'stage3_{key}'] / r['ann']:.3f}x | {r[f'stage3_{key}_s']:.0f} |"
            for key, label in (
                ("paper", "3: StageThreeLearner, paper coefficients"),
                (
                    "local_only",
                    "3, ablation: task loss + the local rules (eqs. 24, 29-31), no other loss terms",
                ),
                ("task_only", "3, ablation: task loss only (no STDP, neuron or time terms)"),
            )
        ),
        "",
        f"Stage 3 rows: the mean over {args.seeds} orders of the stage-3 batches (min .. max), each from the "
        "reloaded stage-2 checkpoint; their time is per run.",
        "",
        f"Stage 2 count path == stage 1 logits bit for bit: {r['stage2_equal']}. Spike path on "
        f"{args.spike_windows} windows: {r['stage2_spike']:.3f} (count path on the same windows: "
        f"{r['stage2_spike_count']:.3f}).",
        "",
        f"Stage 3 vs stage 2 in held-out perplexity: paper coefficients "
        f"{100 * (r['stage3_paper'] / r['stage2'] - 1):+.2f}%, task loss + local rules "
        f"{100 * (r['stage3_local_only'] / r['stage2'] - 1):+.2f}%, task loss only "
        f"{100 * (r['stage3_task_only'] / r['stage2'] - 1):+.2f}%. Global factor G over stage 3 (paper "
        f"coefficients): mean {r['stage3_paper_info']['mean_modulation']:.4f}, range "
        f"{r['stage3_paper_info']['min_modulation']:.4f} .. {r['stage3_paper_info']['max_modulation']:.4f}. "
        "Last batch's terms of eq. 34 "
        "(paper coefficients): "
        + ", ".join(f"{k[5:]} {v:.3g}" for k, v in r["stage3_paper_info"].items() if k.startswith("term_"))
        + ".",
        "",
    ]
    return lines, r


def describe(paths: list[Path]) -> str:
    """A short name for the text files."""
    if paths == VIM_MANUAL:
        return "the Vim user manual, chapters 1-8 (`/usr/share/vim/vim90/doc/usr_0[1-8].txt`)"
    return ", ".join(f"`{p.name}`" for p in paths)


def spread(values: list[float]) -> str:
    """``mean (min .. max)``, or the value alone for one run."""
    mean = sum(values) / len(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ({min(values):.3f} .. {max(values):.3f})"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--timesteps", type=int, default=15)
    p.add_argument(
        "--text", type=Path, nargs="+", help="text files (default: the Vim user manual 1-8, else docs)"
    )
    p.add_argument("--steps", type=int, default=1500, help="training steps of the float twin and of stage 1")
    p.add_argument("--stage3-steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--stage3-lr", type=float, default=3e-4)
    p.add_argument("--windows", type=int, default=40, help="held-out windows for the perplexities")
    p.add_argument("--spike-windows", type=int, default=4, help="held-out windows for the spike path")
    p.add_argument("--seeds", type=int, default=1, help="batch orders of each stage-3 variant (default 1)")
    p.add_argument("--quick", action="store_true", help="a tiny run (seconds), as in the test suite")
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.stage3_steps, args.windows, args.spike_windows, args.batch = 12, 2, 2, 1, 4
        args.seeds = 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    start = time.perf_counter()
    lines, results = run(args)
    command = "python benchmarks/bench_training.py " + " ".join(argv if argv is not None else sys.argv[1:])
    footer = [
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Runtime: {time.perf_counter() - start:.0f} s  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in machine_info(THREADS).items()),
    ]
    print("\n".join(lines + footer))
    if args.write_results:
        start_mark, end_mark = markers("bench_training")
        section = [
            start_mark,
            "## Three training stages: a small spiking LM on real text",
            "",
            *lines,
            *footer,
        ]
        write_section(args.write_results, "bench_training", "\n".join([*section, end_mark]) + "\n")
        print(f"\nwrote section to {args.write_results}")
    if not all(math.isfinite(v) for v in results.values() if isinstance(v, float)):
        raise SystemExit("a perplexity was not finite")
    return results


if __name__ == "__main__":
    main()
