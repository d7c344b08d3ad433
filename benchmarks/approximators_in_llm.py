"""The fully spiking SmolLM2 with binary-coded approximators against the level-coded ones, side by side.

SmolLM2-135M-Instruct is converted once (``convert(ann, T, calibration)``, the text, windows and
calibration tokens of `bench_llm.py`) and evaluated with every operator spiking
(``operators="spiking"``: Exp, Reciprocal, Square, RSqrt and SiLU approximators) twice:

- with the shipped approximators (binary coding, about 3.5 spikes per evaluation);
- with level-coded approximators fitted here with the settings bt-neurons shipped before binary
  coding (`LEVEL_SETTINGS`: 64 / 40 / 24 / 16 / 128 neurons x 16 steps, staircase neurons),
  swapped in with `bt_neurons.models._shipped.shipped_overrides`.

For each: perplexity on ``--windows`` windows (ratio to the ANN), and the approximators' spikes per
token from `track_spikes` (rows ``SNNSoftmax``, ``SNNRMSNorm`` and ``SiLU``) on the first window.

    python benchmarks/approximators_in_llm.py --write-results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm import DEFAULT_TEXT, evaluation_arguments, smollm2_and_text  # noqa: E402
from bt_neurons.approximators import fit_approximator  # noqa: E402
from bt_neurons.models._shipped import shipped_overrides  # noqa: E402
from bt_neurons.models.braintransformers.conversion import convert  # noqa: E402
from bt_neurons.models.braintransformers.evaluation import perplexity  # noqa: E402
from results_file import report  # noqa: E402

from bt_neurons import track_spikes  # noqa: E402

THREADS = 2
OPERATORS = ("SNNSoftmax", "SNNRMSNorm", "SiLU")
# what bt-neurons shipped before binary coding: (neurons, partition, metric), 16 steps, level coding
LEVEL_SETTINGS = {
    "exp": (64, "linear", "abs"),
    "reciprocal": (128, "log", "rel"),
    "square": (16, "linear", "abs"),
    "rsqrt": (128, "log", "rel"),
    "silu": (64, "linear", "abs"),
}


def level_coded() -> dict[str, torch.nn.Module]:
    """The level-coded approximators of `LEVEL_SETTINGS`, fitted as bt-fit fitted them (300 descent steps)."""
    out = {}
    for name, (P, partition, metric) in LEVEL_SETTINGS.items():
        fit = fit_approximator(
            name, neurons=P, timesteps=16, partition=partition, metric=metric, coding="level"
        )
        out[name] = fit.approximator.requires_grad_(False)
    return out


def spikes_per_token(model, ids: torch.Tensor) -> dict[str, float]:
    """Spikes per token of each approximator-backed operator, one forward pass of ``ids`` ``[1, L]``."""
    with torch.no_grad(), track_spikes() as stats:
        model(ids)
    return {name: stats.by_operator.get(name, [0.0])[0] / ids.numel() for name in OPERATORS}


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(THREADS)
    ann, _, calib, rest = smollm2_and_text(DEFAULT_TEXT, args.calibration_tokens)
    W = args.window
    ppl_ann = perplexity(ann, rest, W, max_windows=args.windows)
    snn = convert(ann, args.timesteps, calib).set_spiking(operators="spiking")
    first = rest[:, :W]
    rows = []
    for label, overrides in (("binary coding (shipped)", {}), ("level coding (before)", level_coded())):
        t0 = time.perf_counter()
        with shipped_overrides(overrides):
            ppl = perplexity(snn, rest, W, max_windows=args.windows)
            spikes = spikes_per_token(snn, first)
        rows.append((label, ppl, spikes))
        print(f"{label}: perplexity {ppl:.3f} ({ppl / ppl_ann:.3f}x), spikes/token {spikes}", flush=True)
        print(f"  {time.perf_counter() - t0:.0f} s", flush=True)
    lines = [
        f"SmolLM2-135M-Instruct converted with `convert(ann, {args.timesteps}, calibration)`, every operator "
        f"spiking; {args.windows} windows x {W} tokens of the Vim manual chapters 1-8 after "
        f"{calib.shape[1]} calibration tokens; ANN perplexity {ppl_ann:.3f}. Spikes per token from "
        f"`track_spikes` on the first window ({W} tokens).",
        "",
        "| approximators | perplexity | ratio to ANN | "
        + " | ".join(f"{o} spikes/token" for o in OPERATORS)
        + " | total |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in OPERATORS) + " | ---: |",
    ]
    for label, ppl, spikes in rows:
        cells = " | ".join(f"{spikes[o]:,.0f}" for o in OPERATORS)
        lines.append(
            f"| {label} | {ppl:.3f} | {ppl / ppl_ann:.3f}x | {cells} | {sum(spikes.values()):,.0f} |"
        )
    (_, p_new, s_new), (_, p_old, s_old) = rows
    lines += [
        "",
        f"Binary / level: perplexity {p_new / p_old:.3f}x, approximator spikes per token "
        f"{sum(s_new.values()) / sum(s_old.values()):.3f}x.",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--timesteps", type=int, default=15)
    evaluation_arguments(p)
    args = p.parse_args(argv)
    start = time.perf_counter()
    report(
        "approximators_in_llm",
        "The fully spiking LLM with binary-coded approximators (SmolLM2, T = 15)",
        run(args),
        script="benchmarks/approximators_in_llm.py",
        argv=argv,
        start=start,
        threads=THREADS,
        packages=("bt-neurons", "transformers"),
        results=args.write_results,
    )


if __name__ == "__main__":
    main()
