"""Hypothesis strategies for neuron parameters and inputs."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

shapes = st.lists(st.integers(1, 6), min_size=1, max_size=3).map(tuple)
timesteps = st.integers(1, 24)
theta0s = st.floats(0.05, 4.0, allow_nan=False, allow_infinity=False)
alphas = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 3.0, allow_nan=False))
rates = st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 1.0, allow_nan=False))


@st.composite
def inputs(draw, shape: tuple[int, ...], scale: float = 20.0, specials: list[float] | None = None):
    """A float32 tensor of ``shape`` mixing random values and 'nice' boundary values."""
    n = 1
    for s in shape:
        n *= s
    scale = float(torch.tensor(scale, dtype=torch.float32))
    pool = st.floats(-scale, scale, allow_nan=False, allow_infinity=False, width=32)
    if specials:
        pool = st.one_of(pool, st.sampled_from(specials), st.sampled_from([-v for v in specials]))
    values = draw(st.lists(pool, min_size=n, max_size=n))
    return torch.tensor(values, dtype=torch.float32).reshape(shape)
