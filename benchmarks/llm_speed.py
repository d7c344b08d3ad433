"""The spiking SmolLM2-135M against its ANN: prefill and decode speed, batch throughput, memory, profile.

One interleaved run on this machine (2 threads), T = 15, hybrid operators, count path, the default
conversion (group scales, factored head), calibrated on the first 256 tokens of the Vim manual:

- prefill of 256 and 1,024 tokens (batch 1; the last position's logits, as ``generate()`` asks for),
- decode: 64 greedy tokens after a 256-token prompt with the KV cache (the steps alone),
- in float32 and in bfloat16 (ANN and spiking model cast to the same dtype),
- decode throughput at batch 1, 4 and 16 (16 tokens after 64-token prompts, float32),
- weights and the peak memory of a prefill (fresh processes, as ``bench_llm.py`` measures them),
- where a decoding step's time goes (``torch.profiler``: ATen operators per token, the share of the
  matrix products).

Each figure is the median of interleaved rounds (ANN, spiking, ANN, ...). Speed goals live here and in
RESULTS.md, never in the tests. Run: ``python benchmarks/llm_speed.py --write-results benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from datetime import date
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bt_neurons.models  # noqa: E402,F401  (registers the spiking model with transformers)
from bench_llm import DEFAULT_TEXT, THREADS, measure_memory, smollm2_and_text  # noqa: E402
from bt_neurons.models import convert  # noqa: E402
from bt_neurons.models.braintransformers.evaluation import windows  # noqa: E402
from results_file import machine_info, markers, write_section  # noqa: E402

MARK_START, MARK_END = markers("llm_speed")
from transformers import DynamicCache  # noqa: E402  isort: skip


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def prefill_seconds(model, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, use_cache=False, logits_to_keep=1)
    return time.perf_counter() - start


def decode_seconds(model, prompt: torch.Tensor, tokens: int, _prepared: dict = {}) -> float:  # noqa: B006
    """Seconds of ``tokens`` greedy decoding steps after ``prompt`` (its prefill is done once and kept)."""
    key = (id(model), prompt.data_ptr(), tuple(prompt.shape), next(model.parameters()).dtype)
    if key not in _prepared:
        out = model(
            input_ids=prompt,
            past_key_values=DynamicCache(config=model.config),
            use_cache=True,
            logits_to_keep=1,
        )
        _prepared[key] = (out.past_key_values, out.logits[:, -1:].argmax(-1))
    cache, nxt = copy.deepcopy(_prepared[key])
    start = time.perf_counter()
    for _ in range(tokens):
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
    return time.perf_counter() - start


def interleaved(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Median seconds of each function, round-robin after one warm-up call each."""
    for fn in fns.values():
        fn()
    samples = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            samples[k].append(fn())
    return {k: _median(v) for k, v in samples.items()}


def profile_decode(model, prompt: torch.Tensor, tokens: int = 8) -> dict[str, float]:
    """ATen operators per decoded token, their self CPU time and the matrix products' share of it."""
    from torch.profiler import ProfilerActivity, profile

    decode_seconds(model, prompt, 1)  # prepared
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        decode_seconds(model, prompt, tokens)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    products = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::bmm", "aten::addmm"))
    ops = sum(e.count for e in events if e.key.startswith("aten::"))
    return {"ops": ops / tokens, "ms": total / 1e3 / tokens, "products": products / max(total, 1e-9)}


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(THREADS)
    torch.set_grad_enabled(False)
    ann, tok, calib, rest = smollm2_and_text(args.text, args.calibration_tokens)
    snn = convert(ann, 15, calib)
    long = windows(rest, 1024, 1)
    short = prompt = long[:, :256]
    R = args.rounds
    rows = []

    def speed_rows(a, s, name: str) -> None:
        for label, ids in (
            (f"prefill, {short.shape[1]} tokens", short),
            (f"prefill, {long.shape[1]} tokens", long),
        ):
            t = interleaved(
                {
                    "ann": lambda ids=ids: prefill_seconds(a, ids),
                    "snn": lambda ids=ids: prefill_seconds(s, ids),
                },
                R,
            )
            rows.append((name, label, ids.numel() / t["ann"], ids.numel() / t["snn"]))
        n = args.decode_tokens
        t = interleaved(
            {"ann": lambda: decode_seconds(a, prompt, n), "snn": lambda: decode_seconds(s, prompt, n)}, R
        )
        rows.append((name, f"decode, {n} tokens after {prompt.shape[1]}", n / t["ann"], n / t["snn"]))

    speed_rows(ann, snn, "float32")
    batch_rows = []
    for batch in args.batches:
        p = windows(rest, 64, batch)
        t = interleaved(
            {"ann": lambda p=p: decode_seconds(ann, p, 16), "snn": lambda p=p: decode_seconds(snn, p, 16)},
            max(1, R - 1),
        )
        batch_rows.append((batch, 16 * batch / t["ann"], 16 * batch / t["snn"]))
    profiles = {k: profile_decode(m, prompt) for k, m in (("ann", ann), ("snn", snn))}
    speed_rows(ann.to(torch.bfloat16), snn.to(torch.bfloat16), "bfloat16")  # last: the casts are in place
    memory = {
        k: measure_memory(
            k, argparse.Namespace(text=args.text, window=256, calibration_tokens=args.calibration_tokens)
        )
        for k in ("ann", "snn")
    }

    info = machine_info(THREADS, ("bt-neurons", "transformers"))
    lines = [
        MARK_START,
        "## The spiking LLM's speed and memory against its ANN (`benchmarks/llm_speed.py`)",
        "",
        f"Measured {date.today().isoformat()} with `python benchmarks/llm_speed.py --write-results "
        "benchmarks/RESULTS.md` on " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "SmolLM2-135M-Instruct, T = 15, hybrid operators, count path, the default conversion (group scales, "
        "factored head); medians of interleaved rounds. Prefill returns the last position's logits (as "
        "`generate()` asks for); decode times the greedy steps alone, with the KV cache.",
        "",
        "| dtype | | ANN tok/s | bt-neurons tok/s | ratio | goal |",
        "|---|---|---|---|---|---|",
    ]
    for name, label, a_s, s_s in rows:
        r = s_s / a_s
        lines.append(
            f"| {name} | {label} | {a_s:.1f} | {s_s:.1f} | {r:.2f}x | >= 0.9x: {'PASS' if r >= 0.9 else 'FAIL'} |"
        )
    lines += [
        "",
        "Decode throughput against the batch size (float32; 16 tokens after 64-token prompts; tokens of the "
        "whole batch per second):",
        "",
        "| batch | ANN tok/s | bt-neurons tok/s | ratio |",
        "|---|---|---|---|",
        *(f"| {b} | {a_s:.1f} | {s_s:.1f} | {s_s / a_s:.2f}x |" for b, a_s, s_s in batch_rows),
        "",
    ]
    w = {k: v["weights"] for k, v in memory.items()}
    tot = {k: v["weights"] + v["rise"] for k, v in memory.items()}
    lines += [
        "| memory (float32) | ANN | bt-neurons | ratio | goal |",
        "|---|---|---|---|---|",
        f"| weights | {w['ann']:.0f} MiB | {w['snn']:.0f} MiB | {w['snn'] / w['ann']:.2f}x | - |",
        f"| peak rise of a 256-token prefill | {memory['ann']['rise']:.0f} MiB | {memory['snn']['rise']:.0f} MiB | "
        f"{memory['snn']['rise'] / max(memory['ann']['rise'], 1e-9):.2f}x | - |",
        f"| weights + prefill peak | {tot['ann']:.0f} MiB | {tot['snn']:.0f} MiB | {tot['snn'] / tot['ann']:.2f}x | "
        f"<= 1.05x: {'PASS' if tot['snn'] / tot['ann'] <= 1.05 else 'FAIL'} |",
        "",
        "Where a decoding step's time goes (`torch.profiler`, 8 steps after the 256-token prompt, float32):",
        "",
        "| | ATen operators per token | self CPU ms per token | matrix products' share |",
        "|---|---|---|---|",
        *(
            f"| {k} | {p['ops']:.0f} | {p['ms']:.1f} | {p['products']:.0%} |"
            for k, p in (("ANN", profiles["ann"]), ("bt-neurons", profiles["snn"]))
        ),
        "",
        MARK_END,
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--text", type=Path, nargs="+", default=DEFAULT_TEXT, help="calibration and prompt text")
    p.add_argument("--calibration-tokens", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per figure (default 3)")
    p.add_argument("--decode-tokens", type=int, default=64)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md")
    args = p.parse_args(argv)
    lines = run(args)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write_results:
        write_section(args.write_results, "llm_speed", text)


if __name__ == "__main__":
    main()
