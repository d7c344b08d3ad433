"""``bt-demo``: encode a few values with an EI_IF neuron and show what it did.

Run ``bt-demo`` (or ``python -m bt_neurons.demo``), optionally with values and
``--timesteps``. It prints each value's spike train, the spike count from the
spike path (simulated step by step) and from the count path (closed form), and
checks that they agree.
"""

from __future__ import annotations

import argparse
import sys

import torch
from spikingjelly.activation_based import functional

from .eiif_node import EIIFNode

__all__ = ["main", "encode_and_describe"]

_GLYPH = {1: "+", -1: "-", 0: "."}

# What `bt-demo --help` shows: plain text (the module docstring is markup).
_DESCRIPTION = (
    "Encode a few values with an EI_IF neuron and show what it did: each value's spike train, "
    "its spike count from the spike path (simulated step by step) and from the count path "
    "(closed form), and whether the two agree."
)


def encode_and_describe(values: list[float], T: int, theta_0: float = 0.5, alpha: float = 1.0) -> str:
    """Encode ``values`` with EI_IF neurons over ``T`` steps; return a printable report."""
    x = torch.tensor(values, dtype=torch.float32)
    spiking = EIIFNode(theta_0=theta_0, alpha=alpha, step_mode="m")
    spikes = spiking(x.expand(T, *x.shape))
    functional.reset_net(spiking)
    counts = EIIFNode(theta_0=theta_0, alpha=alpha, T=T, path="count")(x)
    lines = [
        f"EI_IF neuron: theta_0={theta_0:g}, alpha={alpha:g}, r=1, T={T} "
        f"(thresholds {theta_0:g}, {theta_0 + alpha:g}, {theta_0 + 2 * alpha:g}, ...)",
        f"{'input':>10}  {'spike train':<{max(T, 11)}}  {'spike path':>10}  {'count path':>10}",
    ]
    for i, v in enumerate(values):
        train = "".join(_GLYPH[int(s)] for s in spikes[:, i].tolist())
        lines.append(
            f"{v:>10.3f}  {train:<{max(T, 11)}}  {int(spikes[:, i].sum()):>10d}  {int(counts[i]):>10d}"
        )
    same = torch.equal(spikes.sum(0), counts)
    lines.append(
        f"spike path == count path: {same}  "
        f"(+ positive spike, - negative spike, . silent; counts = round half away from zero, clipped to ±{T})"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``bt-demo``."""
    parser = argparse.ArgumentParser(
        prog="bt-demo", description=_DESCRIPTION, epilog="example: bt-demo 0.4 1.49 -2.5 --timesteps 4"
    )
    parser.add_argument(
        "values",
        nargs="*",
        type=float,
        default=[-9.0, -2.5, -0.6, 0.0, 0.4, 0.5, 1.49, 3.7, 12.0],
        help="values to encode (default: a few examples)",
    )
    parser.add_argument("--timesteps", "-T", type=int, default=8, help="time steps T (default: 8)")
    args = parser.parse_args(argv)
    if args.timesteps <= 0:
        parser.error(f"--timesteps must be a positive integer, got {args.timesteps}")
    if not all(abs(v) < float("inf") for v in args.values):
        parser.error("values must be finite numbers")
    print(encode_and_describe(args.values, args.timesteps))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
