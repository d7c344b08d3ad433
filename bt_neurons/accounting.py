r"""Spike and synaptic-operation accounting for energy estimates.

Inside ``with track_spikes() as stats:`` every bt-neurons operator that runs
adds what it did to ``stats``: spikes emitted, synaptic additions (a spike
arriving at a synapse adds or subtracts a weight: one addition), and the
multiply-accumulates (MACs) its ANN twin would have done. Counts are
computed from spike counts, on the count path as on the spike path.

Energy per operation at 45 nm (Horowitz, ISSCC 2014, 32-bit float): 0.9 pJ
per addition, 4.6 pJ per multiply-accumulate (3.7 pJ multiply + 0.9 pJ add).

SpikingJelly's ``op_counter`` counts synaptic operations by detecting binary
{0, 1} spike tensors in matrix products; bt-neurons' spikes are signed and its
count path has no spike tensors at all, so the operators report their own.

A model that also multiplies real-valued activations by weights (SpikeGPT's
mixers read layer-normalised, real inputs) reports those products as
``dense_macs``: they cost a full multiply-accumulate in the spiking model too,
and `SpikeStats.energy_pj` charges them at 4.6 pJ.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

__all__ = ["SpikeStats", "track_spikes", "record", "ADD_PJ", "MAC_PJ"]

ADD_PJ = 0.9
MAC_PJ = 4.6


@dataclass
class SpikeStats:
    """Totals of one tracked run.

    Attributes:
        spikes: spikes emitted (each +1 or -1 spike counts once).
        additions: synaptic additions triggered by those spikes.
        macs: multiply-accumulates of the equivalent ANN.
        dense_macs: multiply-accumulates the tracked model itself performs on
            real-valued (not spike) inputs; 0 for an all-spiking model.
        by_operator: ``[spikes, additions, macs, dense_macs]`` per operator name.
    """

    spikes: float = 0.0
    additions: float = 0.0
    macs: float = 0.0
    dense_macs: float = 0.0
    by_operator: dict[str, list[float]] = field(default_factory=dict)

    @property
    def energy_pj(self) -> float:
        """Estimated energy of the tracked run in pJ: additions x 0.9 pJ + dense MACs x 4.6 pJ."""
        return self.additions * ADD_PJ + self.dense_macs * MAC_PJ

    @property
    def ann_energy_pj(self) -> float:
        """Estimated energy of the ANN twin in pJ (MACs x 4.6 pJ)."""
        return self.macs * MAC_PJ

    def summary(self) -> str:
        ratio = self.ann_energy_pj / self.energy_pj if self.energy_pj else float("inf")
        dense = f", dense MACs {self.dense_macs:.4g}" if self.dense_macs else ""
        return (
            f"spikes {self.spikes:.4g}, "
            f"synaptic additions {self.additions:.4g}{dense} ({self.energy_pj / 1e6:.4g} uJ), "
            f"ANN MACs {self.macs:.4g} ({self.ann_energy_pj / 1e6:.4g} uJ): ANN / SNN energy {ratio:.3g}x"
        )


_ACTIVE: list[SpikeStats] = []


@contextmanager
def track_spikes():
    """Collect the spikes, additions and MACs of every bt-neurons operator run inside the block."""
    stats = SpikeStats()
    _ACTIVE.append(stats)
    try:
        yield stats
    finally:
        _ACTIVE.remove(stats)


def tracking() -> bool:
    """Whether a `track_spikes` block is open (operators skip the bookkeeping otherwise)."""
    return bool(_ACTIVE)


def record(
    name: str,
    spikes: torch.Tensor | float,
    additions: torch.Tensor | float,
    macs: float,
    dense_macs: float = 0.0,
) -> None:
    """Add one operator call to every open `track_spikes` block.

    Args:
        name: the operator's row in `SpikeStats.by_operator`.
        spikes: spikes it emitted.
        additions: synaptic (or other) additions it performed.
        macs: multiply-accumulates its ANN twin performs.
        dense_macs: multiply-accumulates it performs itself on real-valued inputs.
    """
    if not _ACTIVE:
        return
    s = float(spikes)
    a = float(additions)
    m = float(macs)
    d = float(dense_macs)
    for stats in _ACTIVE:
        stats.spikes += s
        stats.additions += a
        stats.macs += m
        stats.dense_macs += d
        row = stats.by_operator.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        row[0] += s
        row[1] += a
        row[2] += m
        row[3] += d
