"""Spike-train synapses inside a user's own network, beside the host libraries' own synapses, on digits.

bt's spike-train faces (`SynapsisNode`, `SNNMatmulNode` for SpikingJelly;
`bt_neurons.snntorch.Synapsis` for snnTorch) against the same networks built
the host's usual way (``layer.Linear`` / ``nn.Linear`` synapses between spiking
neurons), trained with the same budget in one run.

Data: scikit-learn's ``load_digits`` (1,797 images of 8x8 pixels, shipped in the
scikit-learn wheel; pixels / 16), the first 80% train, the last 20% test, in the
order the data set lists them (as ``bench_ecosystem.py``). Every network gets the
image as spike trains: an ``EIIFNode`` (paper defaults) driven by ``x / s_in`` with
``s_in = 1 / T`` for ``T = 8`` steps fires ``round(8 x)`` spikes per pixel.

Networks:

* **MLP 64-64-10.** bt: ``SynapsisNode(Linear(64, 64), activation=frozen_silu())``
  (postsynaptic EI_IF neurons encode SiLU of the window's result) ->
  ``SynapsisNode(Linear(64, 10), post=False)``; logits: the sum of the readout's
  currents. Host SpikingJelly: ``layer.Linear(64, 64)`` -> ``IFNode`` ->
  ``layer.Linear(64, 10)``; logits: the readout averaged over ``T``. snnTorch: the
  bt MLP with ``bt_neurons.snntorch.Synapsis`` stepped in a time loop (``2T`` steps:
  the hidden layer fires in the second window) vs ``nn.Linear`` -> ``snn.Leaky(beta=0.9)``
  -> ``nn.Linear`` stepped ``T`` times; the attention likewise (``4T`` steps, V's spikes
  replayed one window late) vs the Spikformer form with ``snn.Leaky`` neurons.
* **Attention** over the 8 rows of the image (tokens of 8 pixels and a one-hot row
  position). bt: ``SynapsisNode`` for Q, K, V (16 wide), ``SNNMatmulNode`` for
  $Q K^\\top$ and for (scores) $V$, without softmax (as Spikformer's spiking
  self-attention), a ``SynapsisNode(Linear(128, 10), post=False)`` readout on the
  flattened tokens. Host SpikingJelly: the same with ``layer.Linear`` + ``IFNode``
  for Q, K, V, the products of the binary spikes of every step times 1/8 into an
  ``IFNode``, and a ``layer.Linear(128, 10)`` readout averaged over ``T``.

Training: Adam (lr 3e-3), batch 32, the same epochs and batch order for both sides;
``functional.reset_net`` / ``snntorch.utils.reset`` before every batch. Reported per
network, mean and spread over the seeds: test accuracy after the last epoch, spikes
per test image (every spike of every neuron, the input encoder's included),
synaptic additions per image (a spike reaching a synapse adds a weight: bt's from
``track_spikes``, the host's from ``bt_neurons.SignedSynOpCounter`` plus one
addition per output and step for the bias of a ``layer.Linear`` / ``nn.Linear``),
the energy estimate at 0.9 pJ per addition (45 nm; neuron updates are not counted on
either side), and train seconds per epoch.

Run from the repository root (about 6 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_spike_trains.py --write-results benchmarks/RESULTS.md

Smoke run (a few seconds): ``--quick`` (1 epoch, 1 seed, nothing written).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import snntorch as snn
import torch
from bt_neurons.approximators import SiLUApproximator
from results_file import report
from snntorch import utils as snn_utils
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from torch import Tensor, nn

import bt_neurons.snntorch as bsnn
from bt_neurons import EIIFNode, SignedSynOpCounter, SNNMatmulNode, SynapsisNode, track_spikes
from bt_neurons.accounting import ADD_PJ

T = 8
S_IN = 1.0 / T  # what one input spike stands for: pixels / 16 in [0, 1] fire up to T spikes


def frozen_silu() -> SiLUApproximator:
    """The shipped SiLU approximator, kept as fitted (trained along, its amplitudes drift from SiLU)."""
    return SiLUApproximator().requires_grad_(False)


def load_digits_split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Digits, pixels / 16: the first 80% train, the last 20% test (as bench_ecosystem.py)."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32) / 16.0
    y = torch.as_tensor(y, dtype=torch.long)
    n_test = round(0.2 * len(y))
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


def as_tokens(x: Tensor) -> Tensor:
    """``[N, 64]`` -> ``[N, 8, 16]``: the 8 rows of the image, each with a one-hot row position."""
    rows = x.reshape(-1, 8, 8)
    return torch.cat([rows, torch.eye(8).expand(len(x), 8, 8)], -1)


class Encoded(nn.Module):
    """An ``EIIFNode`` encoding the input, then ``body``; a child, so ``reset_net`` resets it too."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.encoder = EIIFNode(step_mode="m")
        self.body = body

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.encoder((x / S_IN).expand(T, *x.shape)))


# ---------------------------------------------------------------- SpikingJelly
class BtMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = SynapsisNode(nn.Linear(64, 64), T, scale=S_IN, activation=frozen_silu())
        self.readout = SynapsisNode(nn.Linear(64, 10), T, scale=self.hidden, post=False)

    def forward(self, spikes: Tensor) -> Tensor:
        return self.readout(self.hidden(spikes)).sum(0)  # the currents add up to W2 h + b2


class HostMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            layer.Linear(64, 64, step_mode="m"),
            neuron.IFNode(step_mode="m", surrogate_function=surrogate.ATan()),
            layer.Linear(64, 10, step_mode="m"),
        )

    def forward(self, spikes: Tensor) -> Tensor:
        return self.net(spikes).mean(0)


class BtAttention(nn.Module):
    """Q, K, V synapses, two spiking products (no softmax), a readout on the flattened tokens."""

    def __init__(self, dim: int = 16, gain: float = 0.02) -> None:
        super().__init__()
        self.q, self.k, self.v = (SynapsisNode(nn.Linear(16, dim), T, scale=S_IN) for _ in range(3))
        self.scores = SNNMatmulNode(T, x_scale=self.q, y_scale=self.k)  # Q K^T
        self.mix = SNNMatmulNode(T, transpose_y=False, x_scale=self.scores, y_scale=self.v)  # (Q K^T) V
        self.readout = SynapsisNode(nn.Linear(8 * dim, 10), T, post=False)
        self.gain = gain  # without softmax the products are large: read them at 1/50 of their size

    def forward(self, spikes: Tensor) -> Tensor:
        h = self.mix(self.scores(self.q(spikes), self.k(spikes)), self.v(spikes))  # [T, N, 8, dim]
        scale = self.mix.output_scale.expand(h.shape[1:]).flatten(1)  # per token -> per flat feature
        return self.readout(h.flatten(2), scale=scale * self.gain).sum(0)


class HostAttention(nn.Module):
    """Spikformer-style spiking self-attention from ``layer.Linear`` and ``IFNode``."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()

        def branch() -> nn.Sequential:
            return nn.Sequential(
                layer.Linear(16, dim, step_mode="m"),
                neuron.IFNode(step_mode="m", surrogate_function=surrogate.ATan()),
            )

        self.q, self.k, self.v = branch(), branch(), branch()
        self.attn = neuron.IFNode(step_mode="m", surrogate_function=surrogate.ATan())
        self.readout = layer.Linear(8 * dim, 10, step_mode="m")

    def forward(self, spikes: Tensor) -> Tensor:
        q, k, v = self.q(spikes), self.k(spikes), self.v(spikes)
        h = self.attn(q @ k.transpose(-1, -2) @ v * 0.125)  # [T, N, 8, dim]
        return self.readout(h.flatten(2)).mean(0)


# --------------------------------------------------------------------- snnTorch
class BtSnnTorchMLP(nn.Module):
    """The bt MLP with snnTorch faces in a time loop of two windows.

    Every layer is stepped in the windows it works in: it integrates one, fires in the next
    (stepped on, it would fire its bias alone from a silent window). The encoder fires in
    window 0, the hidden layer integrates it and fires in window 1, when the readout's
    currents are the logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = bsnn.EIIF()  # the paper's EI_IF neuron, snnTorch face
        self.hidden = bsnn.Synapsis(nn.Linear(64, 64), T, scale=S_IN, activation=frozen_silu())
        self.readout = bsnn.Synapsis(nn.Linear(64, 10), T, scale=self.hidden, post=False)

    def forward(self, x: Tensor) -> Tensor:
        mem_in, mem1, mem2 = (
            self.encoder.init_eiif(),
            self.hidden.init_synapsis(),
            self.readout.init_synapsis(),
        )
        logits = 0
        for step in range(2 * T):
            spk_in = torch.zeros_like(x)
            if step < T:
                spk_in, mem_in = self.encoder(x / S_IN, mem_in)
            spk1, mem1 = self.hidden(spk_in, mem1)
            if step >= T:  # the window in which the hidden layer fires
                current, mem2 = self.readout(spk1, mem2)
                logits = logits + current
        return logits


class BtSnnTorchAttention(nn.Module):
    """`BtAttention` with snnTorch faces in a time loop of four windows.

    Window 0: Q, K, V integrate the image; 1: they fire and the scores integrate
    Q K^T; 2: the scores fire and the mix integrates them with V's spikes of
    window 1, replayed one window late (V is one product shallower); 3: the mix
    fires and the readout's currents are the logits. Every layer is stepped in
    its two windows only.
    """

    def __init__(self, dim: int = 16, gain: float = 0.02) -> None:
        super().__init__()
        self.encoder = bsnn.EIIF()
        self.q, self.k, self.v = (bsnn.Synapsis(nn.Linear(16, dim), T, scale=S_IN) for _ in range(3))
        self.scores = bsnn.SNNMatmul(T, x_scale=self.q, y_scale=self.k)
        self.mix = bsnn.SNNMatmul(T, transpose_y=False, x_scale=self.scores)
        self.readout = bsnn.Synapsis(nn.Linear(8 * dim, 10), T, post=False)
        self.gain = gain

    def forward(self, tokens: Tensor) -> Tensor:
        mods = (self.encoder, self.q, self.k, self.v, self.scores, self.mix, self.readout)
        mem = [m.init_eiif() if m is self.encoder else m.init_synapsis() for m in mods]
        silent = torch.zeros(*tokens.shape[:-1], self.q.node.layer.out_features)
        v_late, logits = [], 0
        for step in range(4 * T):
            window = step // T  # each layer is stepped in the two windows it works in
            if window < 2:
                s0 = torch.zeros_like(tokens)
                if window == 0:
                    s0, mem[0] = self.encoder(tokens / S_IN, mem[0])
                q, mem[1] = self.q(s0, mem[1])
                k, mem[2] = self.k(s0, mem[2])
                v, mem[3] = self.v(s0, mem[3])
                if window == 1:  # V fires: keep its spikes and scale for the mix, one window later
                    v_late.append(v)
                    v_scale = self.v.output_scale
            if 1 <= window <= 2:
                scores, mem[4] = self.scores(
                    q if window == 1 else silent, k if window == 1 else silent, mem[4]
                )
            if window >= 2:
                v_now = v_late[step - 2 * T] if window == 2 else torch.zeros_like(v_late[0])
                h, mem[5] = self.mix(
                    scores if window == 2 else torch.zeros_like(scores), v_now, mem[5], y_scale=v_scale
                )
            if window == 3:
                scale = self.mix.output_scale.expand(h.shape).flatten(1) * self.gain
                current, mem[6] = self.readout(h.flatten(1), mem[6], scale=scale)
                logits = logits + current
        return logits


class HostSnnTorchAttention(nn.Module):
    """Spikformer-style spiking self-attention from ``nn.Linear`` and ``snn.Leaky``, stepped ``T`` times."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.encoder = bsnn.EIIF()
        self.fq, self.fk, self.fv = nn.Linear(16, dim), nn.Linear(16, dim), nn.Linear(16, dim)
        self.lq, self.lk, self.lv, self.la = (snn.Leaky(beta=0.9) for _ in range(4))
        self.readout = nn.Linear(8 * dim, 10)

    def forward(self, tokens: Tensor) -> Tensor:
        mem0 = self.encoder.init_eiif()
        mq, mk, mv, ma = (lif.init_leaky() for lif in (self.lq, self.lk, self.lv, self.la))
        out = 0
        for _ in range(T):
            s, mem0 = self.encoder(tokens / S_IN, mem0)
            q, mq = self.lq(self.fq(s), mq)
            k, mk = self.lk(self.fk(s), mk)
            v, mv = self.lv(self.fv(s), mv)
            a, ma = self.la(q @ k.transpose(-1, -2) @ v * 0.125, ma)
            out = out + self.readout(a.flatten(1))
        return out / T


class HostSnnTorchMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = bsnn.EIIF()
        self.fc1, self.lif, self.fc2 = nn.Linear(64, 64), snn.Leaky(beta=0.9), nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        mem_in, mem = self.encoder.init_eiif(), self.lif.init_leaky()
        out = 0
        for _ in range(T):
            spk_in, mem_in = self.encoder(x / S_IN, mem_in)
            spk, mem = self.lif(self.fc1(spk_in), mem)
            out = out + self.fc2(spk)
        return out / T


# -------------------------------------------------------------------- measuring
def reset(net: nn.Module) -> None:
    functional.reset_net(net)
    snn_utils.reset(net)


def train(net: nn.Module, x: Tensor, y: Tensor, epochs: int, seed: int) -> float:
    """Adam, batch 32; returns the median seconds per epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for batch in torch.randperm(len(x), generator=g).split(32):
            reset(net)
            loss = nn.functional.cross_entropy(net(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


BT_SNNTORCH_FACES = (bsnn.Synapsis, bsnn.SNNMatmul, bsnn.SNNMultiply, bsnn.SpikeTrainOperator)


def spikes_of(net: nn.Module) -> Callable[[], float]:
    """Hooks that add up the spikes of every host neuron (and bt encoder) of ``net``; returns the reader."""
    total = [0.0]
    kinds = (neuron.BaseNode, snn.SpikingNeuron)

    def hook(module, inputs, output):
        spk = output[0] if isinstance(output, tuple) else output
        total[0] += float(spk.abs().sum())

    for m in net.modules():
        if isinstance(m, kinds) and not isinstance(m, BT_SNNTORCH_FACES):  # those report to track_spikes
            m.register_forward_hook(hook)
    return lambda: total[0]


def bias_additions(net: nn.Module, images: int) -> float:
    """A host linear layer adds its bias at every step: T x out_features per image and layer."""
    return sum(
        m.out_features * T * images for m in net.modules() if isinstance(m, nn.Linear) and m.bias is not None
    )


def evaluate(net: nn.Module, x: Tensor, y: Tensor, bt: bool) -> dict[str, float]:
    """Accuracy, spikes, additions and energy per image on the test set (one batch)."""
    from spikingjelly.activation_based.op_counter import DispatchCounterMode

    count = spikes_of(net)
    reset(net)
    counter = SignedSynOpCounter()
    with torch.no_grad(), track_spikes() as stats:
        if bt:
            logits = net(x)
        else:
            with DispatchCounterMode([counter]):
                logits = net(x)
    n = len(x)
    if bt:
        spikes, additions = count() + stats.spikes, stats.additions
    else:
        spikes, additions = count(), counter.get_total() + bias_additions(net, n)
    return {
        "accuracy": float((logits.argmax(-1) == y).float().mean()),
        "spikes": spikes / n,
        "additions": additions / n,
        "energy_nj": additions * ADD_PJ / n / 1e3,
    }


NETWORKS = {
    "SpikingJelly MLP": (
        lambda: Encoded(BtMLP()),
        lambda: Encoded(HostMLP()),
        "layer.Linear + IFNode",
        False,
    ),
    "SpikingJelly attention": (
        lambda: Encoded(BtAttention()),
        lambda: Encoded(HostAttention()),
        "layer.Linear + IFNode (Spikformer SSA)",
        True,
    ),
    "snnTorch MLP": (BtSnnTorchMLP, HostSnnTorchMLP, "nn.Linear + snn.Leaky", False),
    "snnTorch attention": (
        BtSnnTorchAttention,
        HostSnnTorchAttention,
        "nn.Linear + snn.Leaky (Spikformer SSA)",
        True,
    ),
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed, nothing written")
    p.add_argument("--write-results", type=Path, metavar="PATH", help="update the section in this RESULTS.md")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds, args.write_results = 1, 1, None
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    x_train, y_train, x_test, y_test = load_digits_split()
    rows = []
    for name, (make_bt, make_host, host_name, tokens) in NETWORKS.items():
        xs_train, xs_test = (as_tokens(x_train), as_tokens(x_test)) if tokens else (x_train, x_test)
        results: dict[str, list[dict[str, float]]] = {"bt": [], "host": []}
        for seed in range(args.seeds):
            for side, make in (("bt", make_bt), ("host", make_host)):
                torch.manual_seed(seed)
                net = make()
                epoch_s = train(net, xs_train, y_train, args.epochs, seed)
                r = evaluate(net, xs_test, y_test, bt=side == "bt")
                r["epoch_s"] = epoch_s
                results[side].append(r)
                print(name, side, seed, {k: round(v, 4) for k, v in r.items()}, flush=True)
        rows.append((name, host_name, results))
    lines = [
        f"Digits (sklearn, 1,437 train / 360 test), T = {T}, input spikes from an `EIIFNode`; "
        f"{args.epochs} epochs, {args.seeds} seeds (mean, and min-max in brackets). bt's spike-train "
        "synapses against the host's usual synapses in the same network. Spikes: every neuron's, the "
        "input encoder's included. Energy: synaptic additions x 0.9 pJ.",
        "",
        "| network | synapses | test accuracy | spikes / image | additions / image | energy / image (nJ) "
        "| train s / epoch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]

    def cell(values: list[float], fmt: str) -> str:
        mean = statistics.fmean(values)
        return (
            f"{mean:{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]" if len(values) > 1 else f"{mean:{fmt}}"
        )

    for name, host_name, results in rows:
        for side, label in (("bt", "bt spike-train faces"), ("host", host_name)):
            rs = results[side]
            lines.append(
                f"| {name} | {label} | {cell([r['accuracy'] * 100 for r in rs], '.1f')}% "
                f"| {cell([r['spikes'] for r in rs], '.0f')} | {cell([r['additions'] for r in rs], '.0f')} "
                f"| {cell([r['energy_nj'] for r in rs], '.2f')} | {cell([r['epoch_s'] for r in rs], '.2f')} |"
            )
        bt, host = results["bt"], results["host"]
        ratio = statistics.fmean(r["energy_nj"] for r in bt) / statistics.fmean(r["energy_nj"] for r in host)
        acc = statistics.fmean(r["accuracy"] for r in bt) - statistics.fmean(r["accuracy"] for r in host)
        lines.append(f"| {name} | bt / host | {acc * 100:+.1f} points | | | {ratio:.2f}x | |")
    lines.append("")
    report(
        "spike-trains",
        "Spike-train synapses in a user's network (digits)",
        lines,
        script="benchmarks/bench_spike_trains.py",
        argv=argv,
        start=start,
        threads=args.threads,
        packages=("bt-neurons", "spikingjelly", "snntorch"),
        results=args.write_results,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
