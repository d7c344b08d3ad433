"""Benchmark bt_neurons.EIIFNode against SpikingJelly and snnTorch neurons on CPU.

What is measured (CPU, float32, ``torch.set_num_threads(--threads)``, default input
``[T, N, D] = [16, 64, 4096]``):

* ``EIIFNode spike``: ``bt_neurons.EIIFNode(step_mode="m")`` (defaults ``theta_0=0.5,
  alpha=1, r=1``) on ``x_seq``, the constant input ``x`` repeated over ``T``
  (``x.expand(T, N, D).contiguous()``).
* ``EIIFNode count``: ``bt_neurons.EIIFNode(T=T, path="count")`` on ``x`` itself (``[N, D]``);
  it returns the spike counts over the ``T`` steps directly, which is the same
  information as the constant ``[T, N, D]`` sequence.
* ``SJ TernaryIFNode``: ``spikingjelly.activation_based.neuron.TernaryIFNode(step_mode="m")``.
* ``SJ IFNode``: ``neuron.IFNode(step_mode="m")``.
* ``snnTorch Leaky``: ``snntorch.Leaky(beta=1.0)`` stepped over ``T`` in a Python loop.
* ``EIIFNode spike (ternary cfg)`` (informational, not part of the goals):
  ``EIIFNode(theta_0=1, alpha=0, r=0, soft_reset=True)``, the configuration whose
  dynamics equal ``TernaryIFNode(v_threshold=1.0, v_reset=None)``.

Each contender is timed forward only (under ``torch.no_grad()``) and forward+backward
(input with ``requires_grad``, ``loss = output.sum()``, ``loss.backward()``). State is
reset (``functional.reset_net`` / a fresh snnTorch membrane) before every repetition,
outside the timed region. After a warm-up the contenders are interleaved round-robin
(the starting contender rotates every round) and the median of the rounds is reported.
Peak memory of forward+backward is measured per contender in a fresh subprocess: the
rise of the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``)
over the resident size just before the run, with ``MALLOC_MMAP_THRESHOLD_`` pinned so
that freed tensors go back to the OS and RSS tracks live tensor memory.

Correctness is checked before timing (not timed): the EIIFNode spike path summed over
time equals the count path for the constant input, and EIIFNode in the ternary
configuration fires exactly like ``TernaryIFNode(v_threshold=1.0, v_reset=None)``
(a true equivalence: both compute ``h = v + x``, ``s = H(h - 1) - H(-h - 1)``,
``v = h - 1 * s``; EIIFNode additionally multiplies by ``keep = 1 - r = 1``, which is exact).

Run from the repository root::

    .venv/bin/python benchmarks/bench_neurons.py --write-results benchmarks/RESULTS.md

``--rounds``, ``--T``, ``--N``, ``--D``, ``--warmup`` and ``--threads`` change the setup;
``--profile KEY`` prints ``torch.profiler`` tables of one forward and one forward+backward of a
contender (keys: eiif_spike, eiif_count, sj_ternary, sj_if, snntorch_leaky, eiif_spike_ternary_cfg).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import snntorch
import torch
from results_file import machine_info, markers, write_section
from spikingjelly.activation_based import functional, neuron
from torch import Tensor

from bt_neurons import EIIFNode

MARK_START, MARK_END = markers("bench_neurons")
SECTION_TITLE = "## Neurons: EIIFNode vs SpikingJelly and snnTorch"
MEMORY_METHOD = (
    "peak RSS rise during one forward+backward in a fresh subprocess per contender "
    "(VmHWM after the run minus VmRSS before it, high-water mark reset via /proc/self/clear_refs, "
    "MALLOC_MMAP_THRESHOLD_=65536); excludes the input tensor, includes output, saved "
    "activations and the input gradient"
)
MEMORY_PROBE_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}

# Keys of the contenders the goals refer to.
EIIF_SPIKE = "eiif_spike"
EIIF_COUNT = "eiif_count"
SJ_TERNARY = "sj_ternary"
SJ_IF = "sj_if"
SNN_LEAKY = "snntorch_leaky"
EIIF_TERNARY_CFG = "eiif_spike_ternary_cfg"


# ----------------------------------------------------------------------------- contenders
@dataclass
class Contender:
    """One neuron under test: ``forward`` maps its input to spikes (or counts)."""

    key: str
    label: str
    takes_constant: bool  # input is the constant ``x`` [N, D] instead of ``x_seq`` [T, N, D]
    forward: Callable[[Tensor], Tensor]
    reset: Callable[[], None]


def _sj_contender(key: str, label: str, node: torch.nn.Module, takes_constant: bool = False) -> Contender:
    return Contender(key, label, takes_constant, node, lambda: functional.reset_net(node))


def _snntorch_contender(T: int) -> Contender:
    lif = snntorch.Leaky(beta=1.0)

    def forward(x_seq: Tensor) -> Tensor:
        mem = lif.init_leaky()
        spikes = []
        for t in range(T):
            spk, mem = lif(x_seq[t], mem)
            spikes.append(spk)
        return torch.stack(spikes)

    return Contender(SNN_LEAKY, "snnTorch Leaky(beta=1), Python loop", False, forward, lambda: None)


def make_contenders(T: int) -> list[Contender]:
    """All contenders, in table order; the last one is informational."""
    return [
        _sj_contender(EIIF_SPIKE, "bt EIIFNode spike path", EIIFNode(step_mode="m")),
        _sj_contender(EIIF_COUNT, "bt EIIFNode count path", EIIFNode(T=T, path="count"), takes_constant=True),
        _sj_contender(SJ_TERNARY, "SJ TernaryIFNode", neuron.TernaryIFNode(step_mode="m")),
        _sj_contender(SJ_IF, "SJ IFNode", neuron.IFNode(step_mode="m")),
        _snntorch_contender(T),
        _sj_contender(
            EIIF_TERNARY_CFG,
            "bt EIIFNode spike, ternary cfg (info)",
            EIIFNode(theta_0=1.0, alpha=0.0, r=0.0, soft_reset=True, step_mode="m"),
        ),
    ]


def make_inputs(T: int, N: int, D: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The constant input ``x`` [N, D] and ``x_seq`` = x repeated over T, both leaves needing grad.

    ``x`` ~ 2 * N(0, 1): for T = 16 the EIIF counts spread over about -6 .. 6 and the
    threshold-1 IF neurons fire at a range of rates.
    """
    gen = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(N, D, generator=gen, dtype=torch.float32)
    x_seq = x.expand(T, N, D).contiguous()
    return x.requires_grad_(True), x_seq.requires_grad_(True)


def input_for(c: Contender, x: Tensor, x_seq: Tensor) -> Tensor:
    return x if c.takes_constant else x_seq


# ----------------------------------------------------------------------------- timing
def run_once(c: Contender, inp: Tensor, backward: bool) -> float:
    """One repetition (state reset first, untimed); returns milliseconds."""
    c.reset()
    inp.grad = None
    if backward:
        t0 = time.perf_counter()
        out = c.forward(inp)
        out.sum().backward()
        t1 = time.perf_counter()
    else:
        with torch.no_grad():
            t0 = time.perf_counter()
            out = c.forward(inp)
            t1 = time.perf_counter()
    del out
    return (t1 - t0) * 1e3


@dataclass
class Timing:
    fwd_ms: list[float]
    fwdbwd_ms: list[float]

    @property
    def fwd(self) -> float:
        return statistics.median(self.fwd_ms)

    @property
    def fwdbwd(self) -> float:
        return statistics.median(self.fwdbwd_ms)


def benchmark(
    contenders: list[Contender], x: Tensor, x_seq: Tensor, rounds: int, warmup: int
) -> dict[str, Timing]:
    """Warm up every contender, then interleave them round-robin for ``rounds`` rounds."""
    for c in contenders:
        for _ in range(warmup):
            run_once(c, input_for(c, x, x_seq), backward=False)
            run_once(c, input_for(c, x, x_seq), backward=True)
    timings = {c.key: Timing([], []) for c in contenders}
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for c in order:
            inp = input_for(c, x, x_seq)
            timings[c.key].fwd_ms.append(run_once(c, inp, backward=False))
            timings[c.key].fwdbwd_ms.append(run_once(c, inp, backward=True))
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return timings


# ----------------------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} not found in /proc/self/status")
    return int(match.group(1))


def memory_probe(key: str, T: int, N: int, D: int, threads: int) -> float:
    """Peak RSS rise (MiB) of one forward+backward of contender ``key``; run in a fresh process."""
    torch.set_num_threads(threads)
    contenders = {c.key: c for c in make_contenders(T)}
    c = contenders[key]
    # initialise lazily loaded kernels and thread pools on a tiny input first
    x_small, x_seq_small = make_inputs(T, 2, 8)
    run_once(c, input_for(c, x_small, x_seq_small), backward=True)
    x, x_seq = make_inputs(T, N, D)
    inp = input_for(c, x, x_seq)
    del x_small, x_seq_small
    gc.collect()
    c.reset()
    before = _proc_status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    run_once(c, inp, backward=True)
    peak = _proc_status_kib("VmHWM")
    return max(peak - before, 0) / 1024


def measure_memory(keys: list[str], args: argparse.Namespace) -> dict[str, float | None]:
    """Run :func:`memory_probe` for each contender in its own subprocess."""
    result: dict[str, float | None] = {}
    env = {**os.environ, **MEMORY_PROBE_ENV}
    for key in keys:
        cmd = [sys.executable, __file__, "--memory-probe", key, "--T", str(args.T), "--N", str(args.N)]
        cmd += ["--D", str(args.D), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            print(f"memory probe for {key} failed:\n{proc.stderr}", file=sys.stderr)
            result[key] = None
            continue
        result[key] = json.loads(proc.stdout.strip().splitlines()[-1])["peak_mib"]
    return result


# ----------------------------------------------------------------------------- correctness
def check_correctness(x: Tensor, x_seq: Tensor, T: int) -> list[str]:
    """Untimed checks; raises ``AssertionError`` on a mismatch, returns lines to report."""
    lines = []
    x, x_seq = x.detach(), x_seq.detach()

    spike_node = EIIFNode(step_mode="m")
    count_node = EIIFNode(T=T, path="count")
    with torch.no_grad():
        spike_sum = spike_node(x_seq).sum(0)
        counts = count_node(x)
    mismatches = int((spike_sum != counts).sum())
    assert mismatches == 0, f"EIIFNode spike path summed over T != count path at {mismatches} neurons"
    lines.append(
        f"EIIFNode spike path summed over T equals the count path for the constant input: "
        f"exact on all {x.numel()} neurons (counts in [{int(counts.min())}, {int(counts.max())}])."
    )

    # EIIFNode(theta_0=1, alpha=0, r=0, soft_reset=True) vs TernaryIFNode(v_threshold=1, v_reset=None):
    # identical equations (see the module docstring), so spikes must match exactly.
    gen = torch.Generator().manual_seed(1)
    random_seq = 1.5 * torch.randn(x_seq.shape, generator=gen)
    for name, seq in (("constant x_seq", x_seq), ("random x_seq", random_seq)):
        a_in, b_in = seq.clone().requires_grad_(True), seq.clone().requires_grad_(True)
        eiif = EIIFNode(theta_0=1.0, alpha=0.0, r=0.0, soft_reset=True, step_mode="m")
        tern = neuron.TernaryIFNode(v_threshold=1.0, v_reset=None, step_mode="m")
        s_eiif, s_tern = eiif(a_in), tern(b_in)
        s_eiif.sum().backward()
        s_tern.sum().backward()
        diff = int((s_eiif != s_tern).sum())
        assert diff == 0, f"EIIFNode (ternary cfg) and TernaryIFNode spikes differ at {diff} entries ({name})"
        grad_diff = float((a_in.grad - b_in.grad).abs().max())
        lines.append(
            f"EIIFNode(theta_0=1, alpha=0, r=0, soft_reset=True) spikes == TernaryIFNode(v_threshold=1.0, "
            f"v_reset=None) spikes on the {name}: exact ({int((s_tern != 0).sum())} non-zero spikes); "
            f"input-gradient max |diff| = {grad_diff:.3g}."
        )
    return lines


# ----------------------------------------------------------------------------- reporting


def _fmt_ratio(value: float) -> str:
    return f"{value:.2f}x"


def results_table(
    contenders: list[Contender], timings: dict[str, Timing], memory: dict[str, float | None], spread: bool
) -> str:
    ref_if = timings[SJ_IF].fwdbwd
    tern = timings[SJ_TERNARY]
    head = ["contender", "fwd ms", "fwd+bwd ms", "peak mem fwd+bwd (MiB)", "fwd+bwd / IFNode fwd+bwd"]
    head += ["vs TernaryIFNode (fwd / fwd+bwd)"]
    if spread:
        head += ["fwd min-max ms", "fwd+bwd min-max ms"]
    rows = [head, ["---"] + ["---:"] * (len(head) - 1)]
    for c in contenders:
        t = timings[c.key]
        mem = memory.get(c.key)
        row = [
            c.label,
            f"{t.fwd:.2f}",
            f"{t.fwdbwd:.2f}",
            "n/a" if mem is None else f"{mem:.1f}",
            _fmt_ratio(t.fwdbwd / ref_if),
            f"{_fmt_ratio(t.fwd / tern.fwd)} / {_fmt_ratio(t.fwdbwd / tern.fwdbwd)}",
        ]
        if spread:
            row += [
                f"{min(t.fwd_ms):.1f}-{max(t.fwd_ms):.1f}",
                f"{min(t.fwdbwd_ms):.1f}-{max(t.fwdbwd_ms):.1f}",
            ]
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def goal_verdicts(timings: dict[str, Timing]) -> list[str]:
    count, sj_if = timings[EIIF_COUNT], timings[SJ_IF]
    spike, tern = timings[EIIF_SPIKE], timings[SJ_TERNARY]
    speedup = sj_if.fwdbwd / count.fwdbwd
    a_ok = speedup >= 2.0
    fwd_ratio, fb_ratio = spike.fwd / tern.fwd, spike.fwdbwd / tern.fwdbwd
    b_ok = fwd_ratio <= 1.0 and fb_ratio <= 1.0
    verdict = {True: "**PASS**", False: "**FAIL**"}
    lines = [
        f"- (a) count path at least 2x faster than SJ IFNode, forward+backward: {verdict[a_ok]} "
        f"(IFNode {sj_if.fwdbwd:.2f} ms / count path {count.fwdbwd:.2f} ms = {speedup:.1f}x; "
        f"forward only: {sj_if.fwd / count.fwd:.1f}x).",
        f"- (b) EIIFNode spike path no slower than TernaryIFNode (forward and forward+backward): "
        f"{verdict[b_ok]} (time ratio EIIFNode / TernaryIFNode: forward {fwd_ratio:.2f}, "
        f"forward+backward {fb_ratio:.2f}; below 1 means EIIFNode is faster).",
    ]
    info = timings.get(EIIF_TERNARY_CFG)
    if info is not None:
        lines.append(
            f"- (info, no goal) EIIFNode in the TernaryIFNode-equivalent configuration vs TernaryIFNode: "
            f"forward {info.fwd / tern.fwd:.2f}, forward+backward {info.fwdbwd / tern.fwdbwd:.2f}."
        )
    return lines


def render_section(
    args: argparse.Namespace,
    contenders: list[Contender],
    timings: dict[str, Timing],
    memory: dict[str, float | None],
    checks: list[str],
    info: dict[str, str],
    command: str,
    date: str,
) -> str:
    T, N, D = args.T, args.N, args.D
    parts = [
        MARK_START,
        SECTION_TITLE,
        "",
        f"CPU, float32, input `[T, N, D] = [{T}, {N}, {D}]`; spike-path contenders get `x_seq` "
        f"(a constant `x` repeated over T, `x.expand(T, N, D).contiguous()`), the count path gets "
        f"`x` (`[N, D]`), which carries the same information. Medians of {args.rounds} interleaved "
        f"rounds after {args.warmup} warm-up repetitions; state reset before every repetition (untimed). "
        f"Forward runs under `torch.no_grad()`; forward+backward uses `loss = output.sum()`. "
        f"Ratios are time / reference time (below 1 = faster than the reference). The last row is "
        f"informational: EIIFNode configured to follow TernaryIFNode's equations exactly.",
        "",
        f"Peak memory: {MEMORY_METHOD}.",
        "",
        results_table(contenders, timings, memory, spread=False),
        "",
        "Goals:",
        "",
        *goal_verdicts(timings),
        "",
        "Correctness checks (untimed, asserted):",
        "",
        *(f"- {line}" for line in checks),
        "",
        f"Command: `{command}`  ",
        f"Date: {date}  ",
        "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()),
        MARK_END,
    ]
    return "\n".join(parts) + "\n"


# ----------------------------------------------------------------------------- profiling
def profile(key: str, args: argparse.Namespace) -> None:
    """Print torch.profiler tables of one forward and one forward+backward of contender ``key``."""
    contenders = {c.key: c for c in make_contenders(args.T)}
    c = contenders[key]
    x, x_seq = make_inputs(args.T, args.N, args.D)
    inp = input_for(c, x, x_seq)
    for backward in (False, True):
        for _ in range(args.warmup):
            run_once(c, inp, backward=backward)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            ms = run_once(c, inp, backward=backward)
        print(f"{c.label}: {'forward+backward' if backward else 'forward (no_grad)'}, {ms:.2f} ms profiled")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (default 15)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up repetitions per contender and mode")
    p.add_argument("--T", type=int, default=16, help="time steps (default 16)")
    p.add_argument("--N", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--D", type=int, default=4096, help="neurons per sample (default 4096)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument(
        "--write-results", type=Path, metavar="PATH", help="update the section in this markdown file"
    )
    p.add_argument("--skip-memory", action="store_true", help="do not run the memory subprocesses")
    p.add_argument("--profile", metavar="KEY", help="profile one fwd and one fwd+bwd of a contender, exit")
    p.add_argument("--memory-probe", metavar="KEY", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        print(json.dumps({"peak_mib": memory_probe(args.memory_probe, args.T, args.N, args.D, args.threads)}))
        return
    if args.profile:
        profile(args.profile, args)
        return

    command = shlex.join(sys.orig_argv)
    date = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine_info(args.threads, ("spikingjelly", "snntorch", "bt-neurons"))
    x, x_seq = make_inputs(args.T, args.N, args.D)

    checks = check_correctness(x, x_seq, args.T)
    for line in checks:
        print(f"check: {line}")

    contenders = make_contenders(args.T)
    timings = benchmark(contenders, x, x_seq, args.rounds, args.warmup)
    keys = [c.key for c in contenders]
    memory: dict[str, float | None] = dict.fromkeys(keys) if args.skip_memory else measure_memory(keys, args)

    print()
    print(f"{SECTION_TITLE[3:]}  [T, N, D] = [{args.T}, {args.N}, {args.D}], {args.rounds} rounds")
    print(results_table(contenders, timings, memory, spread=True))
    print()
    print("\n".join(goal_verdicts(timings)))
    print(f"\nPeak memory: {MEMORY_METHOD}.")
    print(f"Command: {command}\nDate: {date}")
    for k, v in info.items():
        print(f"{k}: {v}")

    if args.write_results is not None:
        section = render_section(args, contenders, timings, memory, checks, info, command, date)
        write_section(args.write_results, "bench_neurons", section)
        print(f"\nwrote section to {args.write_results}")


if __name__ == "__main__":
    main()
