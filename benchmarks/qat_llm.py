"""Stage 1 on a real pretrained LLM: quantization-aware distillation of SmolLM2 at small T.

Post-training conversion of SmolLM2-135M-Instruct at T = 15 loses accuracy
(see `bench_llm.py`). This script tries the paper's stage 1 on it: the model
is converted (rotations, calibration), and `distill` turns its Synapses back
into their quantized twins, trains the weights for a few hundred
steps to match the float ANN's next-token distributions (KL divergence to the
teacher, the ANN itself; nothing is learned about the evaluation text). Then
`to_spiking` converts back exactly and the perplexity is measured on the same
text and windows as `bench_llm.py` (Vim manual chapters 1-8), while training
reads other chapters (9-12, 20-24) of the manual.

    python benchmarks/qat_llm.py --write-results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm import DEFAULT_TEXT, evaluation_arguments, smollm2_and_text, text_ids  # noqa: E402
from bt_neurons.models.braintransformers.conversion import convert  # noqa: E402
from bt_neurons.models.braintransformers.evaluation import perplexity  # noqa: E402
from bt_neurons.models.training import distill  # noqa: E402
from results_file import report  # noqa: E402

THREADS = 2
TRAIN_TEXT = [Path(f"/usr/share/vim/vim90/doc/usr_{i:02d}.txt") for i in (9, 10, 11, 12, 20, 21, 22, 23, 24)]


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    ann, tok, calib, rest = smollm2_and_text(DEFAULT_TEXT, args.calibration_tokens)
    train_ids = text_ids(tok, TRAIN_TEXT)[0]
    W = args.window
    ppl_ann = perplexity(ann, rest, W, max_windows=args.windows)
    lines = [
        f"SmolLM2-135M-Instruct, T = {args.timesteps}, hybrid operators. Evaluation: {args.windows} windows x {W} "
        f"tokens of the Vim manual chapters 1-8 after {calib.shape[1]} calibration tokens (as in the LLM "
        f"benchmark); ANN perplexity {ppl_ann:.3f}. Training: {args.steps} steps of {args.batch} x {args.seq} "
        f"tokens from chapters 9-12 and 20-24 ({train_ids.numel()} tokens), AdamW lr {args.lr:g} with cosine decay, loss KL(ANN || model) "
        "on the next-token distributions"
        + (", clip ratios learned too (LSQ, lr 1e-3)." if args.learn_clip else "."),
        "",
        "| model | perplexity | ratio to ANN |",
        "| --- | ---: | ---: |",
    ]
    t0 = time.perf_counter()
    snn = convert(ann, args.timesteps, calib)
    converted = perplexity(snn, rest, W, max_windows=args.windows)
    lines.append(f"| converted (post-training), count path | {converted:.3f} | {converted / ppl_ann:.3f}x |")
    print(lines[-1], f"{time.perf_counter() - t0:.0f} s", flush=True)

    t0 = time.perf_counter()
    losses = distill(
        snn,
        ann,
        train_ids,
        steps=args.steps,
        lr=args.lr,
        batch=args.batch,
        seq=args.seq,
        seed=1,
        learn_clip=args.learn_clip,
        progress=True,
    )
    train_s = time.perf_counter() - t0
    print(f"KL per token: {losses[0]:.4f} -> {losses[-1]:.4f}", flush=True)
    trained = perplexity(snn, rest, W, max_windows=args.windows)
    lines.append(
        f"| after stage 1 (quantization-aware distillation, {args.steps} steps), converted back | "
        f"{trained:.3f} | {trained / ppl_ann:.3f}x |"
    )
    snn.set_spiking(operators="spiking")
    full = perplexity(snn, rest, W, max_windows=args.windows)
    lines += [
        f"| the same, every operator spiking | {full:.3f} | {full / ppl_ann:.3f}x |",
        "",
        f"Training took {train_s:.0f} s ({train_s / max(args.steps, 1):.1f} s per step).",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--timesteps", type=int, default=15)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--learn-clip", action="store_true", help="also train the encoders' clip ratios (LSQ)")
    evaluation_arguments(p)
    args = p.parse_args(argv)
    start = time.perf_counter()
    report(
        "qat_llm",
        "Stage 1 on SmolLM2: quantization-aware distillation",
        run(args),
        script="benchmarks/qat_llm.py",
        argv=argv,
        start=start,
        threads=THREADS,
        packages=("bt-neurons", "transformers"),
        results=args.write_results,
    )


if __name__ == "__main__":
    main()
