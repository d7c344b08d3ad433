"""What each conversion choice buys on SmolLM2-135M-Instruct at small T (post-training, no training).

Converts the same model several ways and measures the perplexity ratio to
the ANN on the text and windows of `bench_llm.py` (Vim manual chapters 1-8,
after the same 256 calibration tokens), hybrid and fully spiking, with the
weights' memory:

- per-token encoder scales, tied head with a ``hidden x hidden`` final mixer
  (what `convert` did before group scales);
- per-token scales, untied head;
- group scales of the head dimension (64), final mixer;
- group scales of 64, untied head (the default of `convert`);
- group scales of 32, untied head.

    python benchmarks/conversion_ablation.py --write-results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm import DEFAULT_TEXT, evaluation_arguments, smollm2_and_text  # noqa: E402
from bt_neurons.models.braintransformers.conversion import convert  # noqa: E402
from bt_neurons.models.braintransformers.evaluation import perplexity  # noqa: E402
from results_file import report  # noqa: E402

THREADS = 2
VARIANTS = [
    ("per-token scales, final mixer (tied head)", {"group_size": 0, "final_mixer": True}),
    ("per-token scales, untied head", {"group_size": 0}),
    ("groups of 64, final mixer (tied head)", {"final_mixer": True}),
    ("groups of 64, untied head (default)", {}),
    ("groups of 32, untied head", {"group_size": 32}),
]


def weight_mib(model: torch.nn.Module) -> float:
    """Bytes of the distinct parameters and buffers (a tied matrix counts once), in MiB."""
    seen = {t.data_ptr(): t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()]}
    return sum(seen.values()) / 2**20


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(THREADS)
    ann, _, calib, rest = smollm2_and_text(DEFAULT_TEXT, args.calibration_tokens)
    W = args.window
    ppl_ann = perplexity(ann, rest, W, max_windows=args.windows)
    lines = [
        f"SmolLM2-135M-Instruct converted with `convert(ann, {args.timesteps}, calibration)` and the options "
        f"below; {args.windows} windows x {W} tokens of the Vim manual chapters 1-8 after {calib.shape[1]} "
        f"calibration tokens; ANN perplexity {ppl_ann:.3f}, ANN weights {weight_mib(ann):.0f} MiB.",
        "",
        "| conversion | hybrid | fully spiking | weights |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, kwargs in VARIANTS:
        t0 = time.perf_counter()
        snn = convert(ann, args.timesteps, calib, **kwargs)
        hybrid = perplexity(snn, rest, W, max_windows=args.windows)
        full = perplexity(snn.set_spiking(operators="spiking"), rest, W, max_windows=args.windows)
        lines.append(
            f"| {label} | {hybrid / ppl_ann:.3f}x | {full / ppl_ann:.3f}x | "
            f"{weight_mib(snn):.0f} MiB ({weight_mib(snn) / weight_mib(ann):.2f}x) |"
        )
        print(lines[-1], f"{time.perf_counter() - t0:.0f} s", flush=True)
        del snn
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--timesteps", type=int, default=15)
    evaluation_arguments(p)
    args = p.parse_args(argv)
    start = time.perf_counter()
    report(
        "conversion_ablation",
        "What each conversion choice buys (SmolLM2, post-training)",
        run(args),
        script="benchmarks/conversion_ablation.py",
        argv=argv,
        start=start,
        threads=THREADS,
        packages=("bt-neurons", "transformers"),
        results=args.write_results,
    )


if __name__ == "__main__":
    main()
