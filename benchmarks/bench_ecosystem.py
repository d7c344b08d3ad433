"""bt-neurons beside the host libraries' own neurons: snnTorch 1.0 and SpikingJelly 2.0, one interleaved run.

Three tables, ratios bt / host (or compiled / eager) being what matters:

1. **Digits, same network, same training budget.** scikit-learn's ``load_digits``
   (1,797 images of 8x8 pixels, shipped inside the scikit-learn wheel; pixels / 16),
   fixed split: the first 1,438 images (80%) train, the last 359 (20%) test, in the
   order the data set lists them. Network 64-128-10: ``Linear(64, 128)`` -> hidden
   spiking neurons -> ``Linear(128, 10)``, ``T = 8`` steps, the image fed as a constant
   current at every step; the logits are the readout layer's output averaged over the
   ``T`` steps (the membrane of a non-leaky, non-firing readout divided by ``T``), the
   same rule for every contender, so only the hidden neuron differs. Cross-entropy,
   Adam, the same initial weights, batch order, epochs, batch size and learning rate
   for every contender. Contenders, in two pairs:

   * snnTorch face (Python loop over ``T``, ``init_hidden=True``, reset by
     ``snntorch.utils.reset(net)`` before every batch, snnTorch's default ATan
     surrogate): host ``snn.Leaky(beta=0.9)`` (threshold 1, reset by subtraction,
     fires on ``>``) vs bt ``bt_neurons.snntorch.EIIF(beta=0.9, threshold=1.0, alpha=0.0,
     reset_mechanism="subtract")``, the same leak, threshold and reset, with signed
     spikes and ``>=`` firing.
   * SpikingJelly face (multi-step ``layer.Linear`` / nodes, ``functional.reset_net``
     before every batch, SpikingJelly's default Sigmoid surrogate): host
     ``neuron.IFNode(step_mode="m")`` (threshold 1, hard reset to 0) vs bt
     ``bt_neurons.EIIFNode(theta_0=1.0, alpha=0.0, r=0.0, soft_reset=True,
     step_mode="m")`` (no leak, threshold 1, reset by subtraction, signed spikes).

   Reported: test accuracy after the last epoch, median train time per epoch (the
   epochs of all contenders alternate round-robin, the starting contender rotating),
   median time of one forward pass over the whole test set (359 images in one batch,
   ``torch.no_grad``, reset included), and the peak resident-memory rise of that
   forward pass.

2. **Per-neuron step cost.** One layer of ``N = 4,096`` neurons, batch 64, ``T = 8``,
   input a random current ``x_seq ~ N(0, 1)`` of shape ``[T, 64, 4096]``: inference
   (``torch.no_grad``) and training forward+backward (``loss = spikes.sum()``, input
   requiring grad), per sequence. Faces: snnTorch (``EIIF`` vs ``snn.Leaky``, Python
   loop over ``x_seq.unbind(0)``, ``init_hidden=True``), SpikingJelly multi-step
   (``EIIFNode`` vs ``IFNode``, ``step_mode="m"``) and single-step (``step_mode="s"``, the
   same Python loop), with
   the neuron configurations of table 1. Extra bt rows: ``check_finite=False`` (by
   default bt neurons check every input for NaN / Inf, one ``aminmax`` pass per call,
   and raise a clear error) and the paper defaults (``theta_0 = 0.5, alpha = 1, r = 1``).
   State is reset before every repetition, untimed. Peak memory: the resident-memory
   rise of one forward+backward.

3. **torch.compile vs eager.** ``torch.compile(module, fullgraph=True)`` vs the eager
   module, ``torch.no_grad``, inputs ``[64, 256]`` (count path) or ``[15, 64, 256]``
   (spike path, ``T = 15``): ``EIIFNode(step_mode="m")`` (paper defaults),
   ``CustomNeuronNode(step_mode="m")``, ``EIIFNode(path="count", T=15)``,
   ``Synapsis(nn.Linear(256, 256), 15)`` (count path) and, as the host reference,
   SpikingJelly's ``IFNode(step_mode="m")``. The first compiled call (compilation) is
   timed apart; compiled outputs are checked against eager ones, and recompilations
   during the timed rounds are counted. Goal: compiled / eager <= 1.0.

Timing: CPU, float32, ``torch.set_num_threads(--threads)``; after a warm-up, the
contenders of a table alternate round-robin (the starting one rotating every round)
and medians are reported, with glibc's default allocator. Memory: one fresh child process
(``--memory-child``) started with ``results_file.MALLOC_ENV`` (and the same setting by
``mallopt``), so that freed tensors leave the resident set, runs
``results_file.peak_rss_rise_mib`` for each contender of tables 1 and 2 in turn (table 1:
the untrained network, whose tensors have the sizes of the trained one). Timing is not
done under that setting: every tensor of 64 KiB or more would then be a fresh ``mmap``
whose page faults (expensive in this VM) would be timed too.

Run from the repository root (needs the ``bench`` extra, ``pip install -c constraints.txt
-e '.[bench]'``; about 2.5 minutes on 2 cores, most of it ``torch.compile`` and table 2)::

    .venv/bin/python benchmarks/bench_ecosystem.py --write-results benchmarks/RESULTS.md

One thread by default (``--threads 1``): on a machine whose cores other jobs share, two
OpenMP threads wait for each other at every operator (a table-1 epoch took 25x longer with
``--threads 2`` than with 1 under a load average of 3), which swamps the neurons' own cost;
``--threads 2`` on an idle machine uses both cores.

Smoke run (about 30 s on a busy machine, a third of it imports; 1 epoch, 2 rounds, 512 neurons in table 2, and
``torch.compile(backend="eager")``, which traces with ``fullgraph=True`` but skips
Inductor's code generation, so its table 3 says nothing about speed)::

    .venv/bin/python benchmarks/bench_ecosystem.py --quick
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import snntorch as snn
import torch
import torch.nn.functional as F
from results_file import MALLOC_ENV, peak_rss_rise_mib, report
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional, layer, neuron
from torch import Tensor, nn

import bt_neurons
from bt_neurons import CustomNeuronNode, EIIFNode, Synapsis
from bt_neurons.snntorch import EIIF

SECTION = "ecosystem"
TITLE = "Ecosystem: bt-neurons beside snnTorch's and SpikingJelly's own neurons"
SCRIPT = "benchmarks/bench_ecosystem.py"
PACKAGES = ("bt-neurons", "snntorch", "spikingjelly", "scikit-learn")

#: The configurations of the contenders (table 1 and 2), stated once.
LEAKY_KW = {"beta": 0.9}  # snn.Leaky: threshold 1, reset_mechanism="subtract"
EIIF_SNNTORCH_KW = {"beta": 0.9, "threshold": 1.0, "alpha": 0.0, "reset_mechanism": "subtract"}
EIIF_SJ_KW = {"theta_0": 1.0, "alpha": 0.0, "r": 0.0, "soft_reset": True}


# ----------------------------------------------------------------------------- shared
def pin_malloc() -> None:
    """glibc: map blocks of 64 KiB and more (as ``results_file.MALLOC_ENV``), so RSS follows live tensors."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(-3, 65536)  # M_MMAP_THRESHOLD
    except OSError:  # not glibc: the memory column is then only indicative
        pass


def interleaved(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    prepare: dict[str, Callable[[], object]] | None = None,
) -> dict[str, list[float]]:
    """Milliseconds of every call of each function over ``rounds`` round-robin rounds.

    ``prepare[key]`` (untimed) runs before each call of ``fns[key]``; the starting
    function rotates every round.
    """
    prepare = prepare or {}
    keys = list(fns)
    for _ in range(warmup):
        for k in keys:
            prepare.get(k, _nothing)()
            fns[k]()
    samples: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            prepare.get(k, _nothing)()
            t0 = time.perf_counter()
            fns[k]()
            samples[k].append((time.perf_counter() - t0) * 1e3)
    return samples


def _nothing() -> None:
    return None


def mib(memory: dict[str, float], key: str) -> str:
    return f"{memory[key]:.1f}" if key in memory else "n/a"


def med(values: list[float]) -> float:
    return statistics.median(values)


def md_table(head: list[str], rows: list[list[str]], align: str) -> list[str]:
    """A Markdown table; ``align`` has one letter per column, ``l`` or ``r``."""
    sep = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(r) + " |" for r in [head, sep, *rows]]


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


# ----------------------------------------------------------------------------- table 1: digits
def load_digits_split(test_fraction: float = 0.2) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """scikit-learn's digits, pixels / 16 as float32: (x_train, y_train, x_test, y_test), the last 20% test."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32) / 16.0
    y = torch.as_tensor(y, dtype=torch.long)
    n_test = round(test_fraction * len(y))
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


class SnnTorchDigitsNet(nn.Module):
    """``fc1 -> neuron -> fc2`` stepped ``T`` times (snnTorch style); logits: the mean of ``fc2`` over T.

    The neuron is a direct child, which is where ``snntorch.utils.reset(net)`` looks.
    """

    def __init__(self, hidden_neuron: nn.Module, T: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.neuron = hidden_neuron
        self.fc2 = nn.Linear(128, 10)
        self.T = T

    def forward(self, x: Tensor) -> Tensor:
        out = 0.0
        for _ in range(self.T):
            out = out + self.fc2(self.neuron(self.fc1(x)))
        return out / self.T


class SpikingJellyDigitsNet(nn.Module):
    """Multi-step ``layer.Linear -> node -> layer.Linear`` on ``x`` repeated ``T`` times; logits: the mean over T."""

    def __init__(self, hidden_node: nn.Module, T: int) -> None:
        super().__init__()
        self.fc1 = layer.Linear(64, 128, step_mode="m")
        self.neuron = hidden_node
        self.fc2 = layer.Linear(128, 10, step_mode="m")
        self.T = T

    def forward(self, x: Tensor) -> Tensor:
        x_seq = x.unsqueeze(0).expand(self.T, *x.shape)
        return self.fc2(self.neuron(self.fc1(x_seq))).mean(0)


@dataclass
class DigitsContender:
    key: str
    face: str
    label: str
    net: nn.Module
    reset: Callable[[], None]
    optimizer: torch.optim.Optimizer = field(init=False)
    epoch_ms: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    accuracy: float = float("nan")


def digits_contenders(T: int, lr: float, seed: int) -> list[DigitsContender]:
    """The four contenders (host first in each face), all starting from the same weights."""
    torch.manual_seed(seed)
    init = (nn.Linear(64, 128).state_dict(), nn.Linear(128, 10).state_dict())
    out = []
    for key, face, label, net in (
        ("snn_leaky", "snnTorch", "snnTorch `snn.Leaky(beta=0.9)` (host)", SnnTorchDigitsNet(snn.Leaky(init_hidden=True, **LEAKY_KW), T)),
        ("bt_eiif", "snnTorch", "bt `snntorch.EIIF(beta=0.9, threshold=1, alpha=0, subtract)`", SnnTorchDigitsNet(EIIF(init_hidden=True, **EIIF_SNNTORCH_KW), T)),
        ("sj_if", "SpikingJelly", "SJ `IFNode` (host)", SpikingJellyDigitsNet(neuron.IFNode(step_mode="m"), T)),
        ("bt_eiifnode", "SpikingJelly", "bt `EIIFNode(theta_0=1, alpha=0, r=0, soft_reset)`", SpikingJellyDigitsNet(EIIFNode(step_mode="m", **EIIF_SJ_KW), T)),
    ):  # fmt: skip
        net.fc1.load_state_dict(init[0])
        net.fc2.load_state_dict(init[1])
        if face == "snnTorch":
            reset = (lambda n: lambda: snn_utils.reset(n))(net)
        else:
            reset = (lambda n: lambda: functional.reset_net(n))(net)
        c = DigitsContender(key, face, label, net, reset)
        c.optimizer = torch.optim.Adam(net.parameters(), lr=lr)
        out.append(c)
    return out


def train_epoch(c: DigitsContender, x: Tensor, y: Tensor, order: Tensor, batch: int) -> float:
    """One epoch of ``c`` over the batches in ``order``; returns the mean training loss."""
    c.net.train()
    total = 0.0
    for i in range(0, len(order), batch):
        idx = order[i : i + batch]
        c.reset()
        loss = F.cross_entropy(c.net(x[idx]), y[idx])
        c.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c.optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(order)


def predict(c: DigitsContender, x: Tensor) -> Tensor:
    c.net.eval()
    c.reset()
    with torch.no_grad():
        return c.net(x)


def run_digits(args: argparse.Namespace, memory: dict[str, float]) -> list[str]:
    x_tr, y_tr, x_te, y_te = load_digits_split()
    contenders = digits_contenders(args.T, args.lr, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        order = torch.randperm(len(y_tr), generator=gen)  # the same batch order for every contender
        rot = epoch % len(contenders)
        for c in contenders[rot:] + contenders[:rot]:
            t0 = time.perf_counter()
            c.losses.append(train_epoch(c, x_tr, y_tr, order, args.batch))
            c.epoch_ms.append((time.perf_counter() - t0) * 1e3)
        print(
            f"  digits epoch {epoch + 1}/{args.epochs}: "
            + ", ".join(f"{c.key} loss {c.losses[-1]:.3f}" for c in contenders),
            file=sys.stderr,
            flush=True,
        )
    for c in contenders:
        c.accuracy = float((predict(c, x_te).argmax(1) == y_te).float().mean())
    infer = interleaved({c.key: (lambda c=c: predict(c, x_te)) for c in contenders}, args.rounds)

    by_key = {c.key: c for c in contenders}
    head = ["face", "contender", "test acc", "final train loss", "train ms / epoch", "test-set inference ms"]
    head += ["peak RSS rise, inference (MiB)", "train time bt / host", "inference bt / host"]
    rows = []
    for c in contenders:
        host = by_key["snn_leaky" if c.face == "snnTorch" else "sj_if"]
        is_host = c is host
        rows.append(
            [
                c.face,
                c.label,
                f"{100 * c.accuracy:.1f}%",
                f"{c.losses[-1]:.3f}",
                f"{med(c.epoch_ms):.0f}",
                f"{med(infer[c.key]):.2f}",
                mib(memory, "digits:" + c.key),
                "1 (ref)" if is_host else ratio(med(c.epoch_ms), med(host.epoch_ms)),
                "1 (ref)" if is_host else ratio(med(infer[c.key]), med(infer[host.key])),
            ]
        )
    lines = [
        f"### 1. Digits (scikit-learn `load_digits`), 64-128-10, T = {args.T}, same training budget",
        "",
        f"Train: the first {len(y_tr)} images, test: the last {len(y_te)} (pixels / 16). The image is a "
        f"constant current at each of the {args.T} steps; logits = the readout `Linear(128, 10)` averaged "
        f"over the steps (the same rule for all). Cross-entropy, Adam (lr {args.lr:g}), batch {args.batch}, "
        f"{args.epochs} epochs, seed {args.seed}: the same initial weights and batch order for every "
        "contender. Epochs of the four contenders alternate round-robin; train ms / epoch is the median "
        f"epoch (state reset and optimizer step included); inference: median of {args.rounds} interleaved "
        f"forward passes over the {len(y_te)} test images in one batch (`torch.no_grad`, reset included).",
        "",
        *md_table(head, rows, "llrrrrrrr"),
        "",
    ]
    return lines


# ----------------------------------------------------------------------------- table 2: step cost
@dataclass
class StepContender:
    key: str
    group: str
    label: str
    host_key: str
    run: Callable[[Tensor], Tensor]  # x_seq [T, B, N] -> spikes [T, B, N]
    reset: Callable[[], None]


def _snntorch_step(key: str, label: str, host_key: str, module: nn.Module) -> StepContender:
    holder = nn.Sequential(module)  # snntorch.utils.reset looks at a network's direct children

    def run(x_seq: Tensor) -> Tensor:
        return torch.stack([module(x_t) for x_t in x_seq.unbind(0)])

    return StepContender(key, "snnTorch, Python loop", label, host_key, run, lambda: snn_utils.reset(holder))


def _sj_multi(key: str, label: str, host_key: str, node: nn.Module) -> StepContender:
    return StepContender(key, "SJ multi-step", label, host_key, node, lambda: functional.reset_net(node))


def _sj_single(key: str, label: str, host_key: str, node: nn.Module) -> StepContender:
    def run(x_seq: Tensor) -> Tensor:
        return torch.stack([node(x_t) for x_t in x_seq.unbind(0)])

    return StepContender(key, "SJ single-step", label, host_key, run, lambda: functional.reset_net(node))


def step_contenders() -> list[StepContender]:
    cfg = "beta=0.9, threshold=1, alpha=0, subtract"
    sj_cfg = "theta_0=1, alpha=0, r=0, soft_reset"
    out = [
        _snntorch_step("st_leaky", "`snn.Leaky(beta=0.9)` (host)", "st_leaky", snn.Leaky(init_hidden=True, **LEAKY_KW)),
        _snntorch_step("st_eiif", f"bt `EIIF({cfg})`", "st_leaky", EIIF(init_hidden=True, **EIIF_SNNTORCH_KW)),
        _snntorch_step("st_eiif_nocheck", "bt idem, `check_finite=False`", "st_leaky", EIIF(init_hidden=True, check_finite=False, **EIIF_SNNTORCH_KW)),
        _snntorch_step("st_eiif_paper", "bt `EIIF()` paper defaults (info)", "st_leaky", EIIF(init_hidden=True)),
    ]  # fmt: skip
    for mode, make, prefix in (("m", _sj_multi, "sjm"), ("s", _sj_single, "sjs")):
        host = f"{prefix}_if"
        out += [
            make(host, "`IFNode` (host)", host, neuron.IFNode(step_mode=mode)),
            make(f"{prefix}_eiif", f"bt `EIIFNode({sj_cfg})`", host, EIIFNode(step_mode=mode, **EIIF_SJ_KW)),
            make(f"{prefix}_eiif_nocheck", "bt idem, `check_finite=False`", host, EIIFNode(step_mode=mode, check_finite=False, **EIIF_SJ_KW)),
            make(f"{prefix}_eiif_paper", "bt `EIIFNode()` paper defaults (info)", host, EIIFNode(step_mode=mode)),
        ]  # fmt: skip
    return out


STEP_BATCH = 64


def step_inputs(args: argparse.Namespace) -> tuple[Tensor, Tensor]:
    """``x_seq ~ N(0, 1)`` of shape ``[T, 64, N]``, and a copy that requires grad."""
    gen = torch.Generator().manual_seed(args.seed)
    x_seq = torch.randn(args.T, STEP_BATCH, args.neurons, generator=gen)
    return x_seq, x_seq.clone().requires_grad_(True)


def step_infer(c: StepContender, x_seq: Tensor) -> None:
    with torch.no_grad():
        c.run(x_seq)


def step_train(c: StepContender, x_grad: Tensor) -> None:
    x_grad.grad = None
    c.run(x_grad).sum().backward()


def run_step_cost(args: argparse.Namespace, memory: dict[str, float]) -> list[str]:
    T, B, N = args.T, STEP_BATCH, args.neurons
    x_seq, x_grad = step_inputs(args)
    contenders = step_contenders()
    fns, prep = {}, {}
    for c in contenders:
        fns[c.key + ":infer"], prep[c.key + ":infer"] = (lambda c=c: step_infer(c, x_seq)), c.reset
        fns[c.key + ":train"], prep[c.key + ":train"] = (lambda c=c: step_train(c, x_grad)), c.reset
    samples = interleaved(fns, args.rounds, warmup=2, prepare=prep)

    head = ["face", "contender", "inference ms", "inference bt / host", "train fwd+bwd ms"]
    head += ["train bt / host", "peak RSS rise fwd+bwd (MiB)"]
    rows = []
    for c in contenders:
        inf, tr = med(samples[c.key + ":infer"]), med(samples[c.key + ":train"])
        h_inf, h_tr = med(samples[c.host_key + ":infer"]), med(samples[c.host_key + ":train"])
        is_host = c.key == c.host_key
        rows.append(
            [
                c.group,
                c.label,
                f"{inf:.2f}",
                "1 (ref)" if is_host else ratio(inf, h_inf),
                f"{tr:.2f}",
                "1 (ref)" if is_host else ratio(tr, h_tr),
                mib(memory, "step:" + c.key),
            ]
        )
    lines = [
        f"### 2. Per-neuron step cost: one layer of {N} neurons, batch {B}, T = {T}",
        "",
        f"Input `x_seq ~ N(0, 1)`, shape `[{T}, {B}, {N}]`; time per sequence, medians of {args.rounds} "
        "interleaved rounds (all rows alternate) after 2 warm-ups; state reset before every call, untimed. "
        "Inference under `torch.no_grad()`; train = forward + `spikes.sum().backward()` with the input "
        "requiring grad. snnTorch rows use `init_hidden=True` and snnTorch's reset; they and SJ single-step "
        "(`step_mode='s'` nodes) loop in Python over `x_seq.unbind(0)` (one backward pass for all steps; "
        "`x_seq[t]` would zero-fill a full-size gradient per step). `check_finite=False` rows: the same neuron without "
        "bt's NaN / Inf input check (on by default: one `aminmax` pass over every input, raising a clear "
        "error that names the argument). Paper-default rows (`theta_0 = 0.5, alpha = 1, r = 1`, "
        "inclusive threshold, membrane emptied after every step) are not the host's dynamics: information only.",
        "",
        *md_table(head, rows, "llrrrrr"),
        "",
    ]
    return lines


# ----------------------------------------------------------------------------- table 3: torch.compile
@dataclass
class CompileContender:
    key: str
    label: str
    module: nn.Module
    x: Tensor


def compile_contenders(seed: int) -> list[CompileContender]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 256, generator=gen)
    x_seq = torch.randn(15, 64, 256, generator=gen)
    torch.manual_seed(seed)
    lin = nn.Linear(256, 256)
    return [
        CompileContender("eiif_spike", "bt `EIIFNode(step_mode='m')` spike path", EIIFNode(step_mode="m"), x_seq),
        CompileContender("custom_spike", "bt `CustomNeuronNode(step_mode='m')` spike path", CustomNeuronNode(step_mode="m"), x_seq),
        CompileContender("eiif_count", "bt `EIIFNode(path='count', T=15)`", EIIFNode(path="count", T=15), x),
        CompileContender("synapsis", "bt `Synapsis(nn.Linear(256, 256), 15)` count path", Synapsis(lin, 15), x),
        CompileContender("sj_if", "SJ `IFNode(step_mode='m')` (host reference)", neuron.IFNode(step_mode="m"), x_seq),
    ]  # fmt: skip


def _compiled_graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def run_compile(args: argparse.Namespace) -> list[str]:
    import torch._dynamo
    import torch._inductor.config

    torch._dynamo.reset()
    # compile for real every run: "first compiled call" is then the cold compilation time
    torch._inductor.config.force_disable_caches = True
    contenders = compile_contenders(args.seed)
    fns, compile_s, checks, inner = {}, {}, {}, {}
    failures: dict[str, str] = {}
    for c in contenders:

        def call(m: nn.Module, c: CompileContender = c) -> Tensor:
            functional.reset_net(c.module)  # the compiled module shares the eager module's state
            return m(c.x)

        with torch.no_grad():
            eager_out = call(c.module)
            compiled = torch.compile(c.module, fullgraph=True, backend=args.compile_backend)
            t0 = time.perf_counter()
            try:
                compiled_out = call(compiled)
            except torch._dynamo.exc.Unsupported as exc:  # report it, and time the graph-broken compile
                failures[c.key] = str(exc).strip().splitlines()[0]
                print(f"  {c.key}: fullgraph=True fails: {failures[c.key]}", file=sys.stderr)
                compiled = torch.compile(c.module, backend=args.compile_backend)
                t0 = time.perf_counter()
                compiled_out = call(compiled)
            compile_s[c.key] = time.perf_counter() - t0
            checks[c.key] = float((compiled_out - eager_out).abs().max())
            call(compiled)  # a second call: no new graph may be needed for the timed rounds
            t0 = time.perf_counter()
            call(c.module)
            one = time.perf_counter() - t0
        # several calls per sample, the same number for eager and compiled: samples of >= ~5 ms
        k = inner[c.key] = max(1, math.ceil(0.005 / max(one, 1e-6)))

        def many(m: nn.Module, call=call, k=k) -> None:
            with torch.no_grad():
                for _ in range(k):
                    call(m)

        fns[c.key + ":eager"] = lambda many=many, c=c: many(c.module)
        fns[c.key + ":compiled"] = lambda many=many, compiled=compiled: many(compiled)
        print(f"  compiled {c.key} in {compile_s[c.key]:.1f} s", file=sys.stderr, flush=True)
    graphs_before = _compiled_graphs()
    samples = interleaved(fns, args.rounds, warmup=2)
    recompiles = _compiled_graphs() - graphs_before

    head = ["module", "input", "eager µs / call", "compiled µs / call", "compiled / eager"]
    head += ["first compiled call (s)", "max abs diff vs eager"]
    rows = []
    for c in contenders:
        e = med(samples[c.key + ":eager"]) * 1e3 / inner[c.key]
        m = med(samples[c.key + ":compiled"]) * 1e3 / inner[c.key]
        label = c.label
        if c.key in failures:
            label += f" **fullgraph=True fails** (`{failures[c.key]}`); timed: `fullgraph=False`"
        rows.append(
            [
                label,
                "`[" + ", ".join(map(str, c.x.shape)) + "]`",
                f"{e:.0f}",
                f"{m:.0f}",
                ratio(m, e),
                f"{compile_s[c.key]:.1f}",
                f"{checks[c.key]:.3g}",
            ]
        )
    backend = args.compile_backend
    lines = [
        f'### 3. `torch.compile(module, fullgraph=True, backend="{backend}")` vs eager',
        "",
        f"`torch.no_grad()`, state reset before every call (in both). Medians of {args.rounds} interleaved "
        "rounds after 2 warm-ups, each sample a fixed number of calls (>= ~5 ms), reported per call. "
        "The compiled module was called twice before timing; the first call (tracing and compilation, "
        "Inductor's caches disabled: `force_disable_caches`) is timed apart. "
        f"Graphs compiled during the timed rounds: {recompiles} (0: no recompilation).",
        "",
        *md_table(head, rows, "llrrrrr"),
        "",
    ]
    if backend != "inductor":
        lines += [f'(backend "{backend}": a smoke run, the compiled times say nothing about Inductor.)', ""]
    return lines


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--quick", action="store_true", help="smoke run (seconds): 1 epoch, 2 rounds, eager backend"
    )
    p.add_argument("--epochs", type=int, default=None, help="digits training epochs (default 20; --quick: 1)")
    p.add_argument(
        "--rounds", type=int, default=None, help="interleaved timing rounds (default 15; --quick: 2)"
    )
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1: see above)")
    p.add_argument("--T", type=int, default=8, help="time steps of tables 1 and 2 (default 8)")
    p.add_argument("--batch", type=int, default=64, help="digits batch size (default 64)")
    p.add_argument("--lr", type=float, default=5e-3, help="Adam learning rate (default 5e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--neurons", type=int, default=None, help="neurons of the table-2 layer (default 4096; --quick: 512)"
    )
    p.add_argument(
        "--compile-backend", default=None, help='torch.compile backend (default "inductor"; --quick: "eager")'
    )
    p.add_argument("--write-results", type=Path, metavar="PATH", help="update the section in this RESULTS.md")
    p.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 20
    if args.rounds is None:
        args.rounds = 2 if args.quick else 15
    if args.neurons is None:
        args.neurons = 512 if args.quick else 4096
    if args.compile_backend is None:
        args.compile_backend = "eager" if args.quick else "inductor"
    return args


def set_threads(n: int) -> None:
    """``n`` threads for torch and for numba (bt's fused Synapsis kernel).

    numba's OpenMP threading layer shares torch's libgomp: its first parallel launch
    sets the OpenMP thread count to numba's own (the number of CPUs), which is also
    torch's from then on, unless numba was told ``n`` too.
    """
    torch.set_num_threads(n)
    try:
        import numba
    except ImportError:  # pragma: no cover - numba is a dependency of bt-neurons
        return
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


def memory_child(args: argparse.Namespace) -> None:
    """In a fresh process started with ``MALLOC_ENV``: the peak RSS rises of tables 1 and 2, one JSON line."""
    pin_malloc()
    set_threads(args.threads)
    out: dict[str, float] = {}
    x_te = load_digits_split()[2]
    for c in digits_contenders(args.T, args.lr, args.seed):
        predict(c, x_te)  # warm-up
        out["digits:" + c.key] = peak_rss_rise_mib(lambda c=c: predict(c, x_te))
    x_grad = step_inputs(args)[1]
    for c in step_contenders():
        c.reset()
        step_train(c, x_grad)  # warm-up
        c.reset()
        out["step:" + c.key] = peak_rss_rise_mib(lambda c=c: step_train(c, x_grad))
    print(json.dumps(out))


def measure_memory(args: argparse.Namespace) -> dict[str, float]:
    """Run `memory_child` in a fresh process; {} (columns n/a) if it fails."""
    cmd = [sys.executable, __file__, "--memory-child", "--threads", str(args.threads), "--T", str(args.T)]
    cmd += ["--neurons", str(args.neurons), "--seed", str(args.seed)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **MALLOC_ENV}, check=False)
    if proc.returncode != 0:
        print(f"memory child failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def timed_section(name: str, fn: Callable[[], list[str]], args: argparse.Namespace) -> list[str]:
    """Run one table; afterwards check (and restore) the thread count, noting any change."""
    t0 = time.perf_counter()
    lines = fn()
    print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if torch.get_num_threads() != args.threads:
        note = f"**torch.get_num_threads() was {torch.get_num_threads()} after {name}, not {args.threads}.**"
        print(note, file=sys.stderr)
        lines += [note, ""]
        set_threads(args.threads)
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args)
        return
    start = time.perf_counter()
    set_threads(args.threads)
    load_start = os.getloadavg()

    memory = measure_memory(args)
    lines1 = timed_section("table 1 (digits)", lambda: run_digits(args, memory), args)
    lines2 = timed_section("table 2 (step cost)", lambda: run_step_cost(args, memory), args)
    lines3 = timed_section("table 3 (torch.compile)", lambda: run_compile(args), args)
    load_end = os.getloadavg()

    lines = [
        "CPU, float32; the three tables come from one run of the script. Ratios below 1 mean bt is faster "
        "(tables 1-2) or compiled is faster (table 3); bt / host compares bt's neuron with the host "
        "library's own in the same network or layer. bt neurons fire on `>=` (SpikingJelly's convention; "
        f"snnTorch's own fire on `>`) and emit signed spikes. bt-neurons {bt_neurons.__version__}.",
        "",
        *lines1,
        *lines2,
        *lines3,
        f"Load average (1 / 5 / 15 min) at start {' / '.join(f'{v:.2f}' for v in load_start)}, at end "
        f"{' / '.join(f'{v:.2f}' for v in load_end)} (other jobs share these cores: absolute times are noisy, "
        "the interleaving keeps the ratios fair).  ",
        "Peak RSS rise: `results_file.peak_rss_rise_mib`, every contender in turn in one fresh child "
        "process started with `MALLOC_ENV` (glibc's mmap threshold pinned to 64 KiB, so freed tensors leave "
        "the resident set; table 1: the untrained network, same tensor sizes); timings use the default "
        "allocator.",
        "",
    ]
    argv_used = argv if argv is not None else sys.argv[1:]
    report(
        SECTION,
        TITLE,
        lines,
        script=SCRIPT,
        argv=argv_used,
        start=start,
        threads=args.threads,
        packages=PACKAGES,
        results=args.write_results,
    )


if __name__ == "__main__":
    main()
