"""How a rotated SmolLM2-135M meets its tied embeddings: perplexity and weights of each `convert(head=...)`.

T = 15, hybrid, count path, calibrated on the first 256 tokens of the Vim manual and evaluated on the
next 8 windows of 256 tokens (the ANN on the same windows). ``factored`` (the default) keeps the
untied head's weight as two factors, so its logits equal ``untied``'s up to float rounding.
Run: ``python benchmarks/llm_heads.py --write-results benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_llm import DEFAULT_TEXT, THREADS, smollm2_and_text  # noqa: E402
from bt_neurons.models import convert, perplexity  # noqa: E402
from bt_neurons.models.braintransformers.conversion import HEADS  # noqa: E402
from results_file import machine_info, markers, write_section  # noqa: E402

MARK_START, MARK_END = markers("llm_heads")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=8)
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    ann, _, calib, rest = smollm2_and_text(DEFAULT_TEXT, 256)
    base = perplexity(ann, rest, 256, max_windows=args.windows)
    size = sum(t.numel() * t.element_size() for t in ann.parameters()) / 2**20
    info = machine_info(THREADS)
    lines = [
        MARK_START,
        "## Tied embeddings after the rotation: the head options (`benchmarks/llm_heads.py`)",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/llm_heads.py --write-results "
        "benchmarks/RESULTS.md` on " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"SmolLM2-135M-Instruct, T = 15, hybrid; {args.windows} windows of 256 tokens of the Vim manual after "
        f"the 256 calibration tokens; ANN perplexity {base:.3f}, weights {size:.0f} MiB.",
        "",
        "| `head=` | perplexity / ANN | weights / ANN |",
        "|---|---|---|",
    ]
    for head in HEADS:
        snn = convert(ann, 15, calib, head=head)
        ratio = perplexity(snn, rest, 256, max_windows=args.windows) / base
        weights = sum(t.numel() * t.element_size() for t in snn.parameters()) / 2**20
        lines.append(
            f"| `{head}`{' (default)' if head == 'factored' else ''} | {ratio:.4f}x | {weights / size:.2f}x |"
        )
        print(lines[-1], flush=True)
    lines += ["", MARK_END]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        write_section(args.write_results, "llm_heads", text)


if __name__ == "__main__":
    main()
