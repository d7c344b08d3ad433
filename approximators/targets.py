"""The functions bt-neurons ships approximators for, with their default settings.

Each `TargetSpec` says what to approximate (a float64 torch function),
over which domain, how the domain is split among neurons, how the
approximator continues outside the domain, and under which input
distribution its relative error is measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["TargetSpec", "BUILTIN_TARGETS", "get_target", "named_distribution"]

Sampler = Callable[[int, torch.Generator], Tensor]


def _normal(n: int, g: torch.Generator) -> Tensor:
    return torch.randn(n, generator=g, dtype=torch.float64)


def _uniform(lo: float, hi: float) -> Sampler:
    return lambda n, g: lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)


def _log_uniform(lo: float, hi: float) -> Sampler:
    a, b = math.log(lo), math.log(hi)
    return lambda n, g: torch.exp(a + (b - a) * torch.rand(n, generator=g, dtype=torch.float64))


def named_distribution(text: str, domain: tuple[float, float]) -> tuple[str, Sampler]:
    """An input distribution by name, for ``bt-fit --distribution``: ``(name, sampler)``.

    ``"uniform"`` (over ``domain``), ``"normal"`` (N(0, 1)), ``"normal:S"``
    (N(0, S^2), ``S > 0``) or ``"log-uniform"`` (over ``domain``, which must be
    above 0).

    Raises:
        ValueError: an unknown name, a bad ``S``, or log-uniform on a domain reaching 0.
    """
    if not isinstance(text, str):
        raise TypeError(f"distribution must be a str, got {type(text).__name__}")
    lo, hi = domain
    if text == "uniform":
        return f"uniform on [{lo:g}, {hi:g}]", _uniform(lo, hi)
    if text == "log-uniform":
        if not lo > 0:
            raise ValueError(f"distribution 'log-uniform' needs a domain above 0, got [{lo:g}, {hi:g}]")
        return f"log-uniform on [{lo:g}, {hi:g}]", _log_uniform(lo, hi)
    if text == "normal":
        return "N(0, 1)", _normal
    if text.startswith("normal:"):
        try:
            sd = float(text.split(":", 1)[1])
        except ValueError:
            sd = float("nan")
        if not (math.isfinite(sd) and sd > 0):
            raise ValueError(f"distribution 'normal:S' needs a standard deviation S > 0, got {text!r}")
        return f"N(0, {sd:g}^2)", lambda n, g: sd * _normal(n, g)
    raise ValueError(f"distribution must be 'uniform', 'normal', 'normal:S' or 'log-uniform', got {text!r}")


@dataclass(frozen=True)
class TargetSpec:
    """A function to approximate and the default settings for it.

    Attributes:
        name: short name (``bt-fit NAME``).
        fn: the target, a float64 ``Tensor -> Tensor`` function.
        domain: ``(lo, hi)`` covered by neurons (of ``|x|`` for even / odd targets).
        neurons: default number of neurons ``P``.
        timesteps: default steps per neuron ``T``.
        partition: ``"linear"``, ``"log"``, ``"power"`` or ``"curvature"`` (binary coding).
        symmetry: ``"none"``, ``"even"`` or ``"odd"``.
        left_tail: ``(slope, intercept)`` below the domain.
        right_tail: ``(slope, intercept)`` above the domain.
        metric: ``"abs"`` (fit absolute error) or ``"rel"`` (fit relative error).
        coding: ``"level"`` (staircase neurons) or ``"binary"`` (resetting
            neurons whose spikes are a binary expansion; see `NeuronArrayApproximator`).
        distribution: input distribution of the relative-L2 figure, and its name.
        description: one line for ``bt-fit --list``.
    """

    name: str
    fn: Callable[[Tensor], Tensor]
    domain: tuple[float, float]
    neurons: int = 64
    timesteps: int = 16
    partition: str = "linear"
    symmetry: str = "none"
    left_tail: tuple[float, float] = (0.0, 0.0)
    right_tail: tuple[float, float] = (0.0, 0.0)
    metric: str = "abs"
    coding: str = "level"
    distribution: tuple[str, Sampler] = field(default=("uniform over the domain", None))  # type: ignore[assignment]
    description: str = ""

    def sampler(self) -> tuple[str, Sampler]:
        """The input distribution (name, sampler); uniform over the full domain by default."""
        name, fn = self.distribution
        if fn is not None:
            return name, fn
        lo, hi = self.full_domain
        return name, _uniform(lo, hi)

    @property
    def full_domain(self) -> tuple[float, float]:
        """The domain in ``x``: ``[-hi, hi]`` for symmetric targets."""
        lo, hi = self.domain
        return (-hi, hi) if self.symmetry != "none" else (lo, hi)


def _edge(fn: Callable[[Tensor], Tensor], x: float) -> tuple[float, float]:
    return (0.0, float(fn(torch.tensor(x, dtype=torch.float64))))


def _chord_through_zero(fn: Callable[[Tensor], Tensor], x: float) -> tuple[float, float]:
    return (float(fn(torch.tensor(x, dtype=torch.float64))) / x, 0.0)


def _tangent(fn: Callable[[Tensor], Tensor], x: float) -> tuple[float, float]:
    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    y = fn(t)
    (d,) = torch.autograd.grad(y, t)
    return (d.item(), y.item() - d.item() * x)


def _gelu(x: Tensor) -> Tensor:
    return torch.nn.functional.gelu(x)


def _silu(x: Tensor) -> Tensor:
    return torch.nn.functional.silu(x)


def _reciprocal(x: Tensor) -> Tensor:
    return 1.0 / x


def _square(x: Tensor) -> Tensor:
    return x * x


BUILTIN_TARGETS: dict[str, TargetSpec] = {
    spec.name: spec
    for spec in (
        TargetSpec(
            "silu",
            _silu,
            (-8.0, 8.0),
            neurons=16,
            partition="curvature",
            coding="binary",
            timesteps=7,
            right_tail=(1.0, 0.0),
            distribution=("N(0, 1)", _normal),
            description="x * sigmoid(x); 0 below the domain, x above (paper 2.7-2.8)",
        ),
        TargetSpec(
            "gelu",
            _gelu,
            (-8.0, 8.0),
            neurons=16,
            partition="curvature",
            coding="binary",
            timesteps=7,
            right_tail=(1.0, 0.0),
            distribution=("N(0, 1)", _normal),
            description="x * Phi(x) (exact erf form); 0 below the domain, x above",
        ),
        TargetSpec(
            "sigmoid",
            torch.sigmoid,
            (-10.0, 10.0),
            neurons=16,
            partition="curvature",
            coding="binary",
            timesteps=7,
            right_tail=(0.0, 1.0),
            distribution=("N(0, 1)", _normal),
            description="1 / (1 + exp(-x)); 0 below the domain, 1 above",
        ),
        TargetSpec(
            "tanh",
            torch.tanh,
            (0.0, 6.0),
            neurons=12,
            partition="curvature",
            coding="binary",
            timesteps=7,
            symmetry="odd",
            right_tail=(0.0, 1.0),
            distribution=("N(0, 1)", _normal),
            description="tanh(x), odd; +-1 beyond +-6",
        ),
        TargetSpec(
            "square",
            _square,
            (0.0, 16.0),
            neurons=64,
            partition="power",  # the paper's eq. 6: fine near 0, where RMSNorm's inputs fall
            coding="binary",
            timesteps=7,
            symmetry="even",
            right_tail=_tangent(_square, 16.0),
            distribution=("uniform on [-16, 16]", _uniform(-16.0, 16.0)),
            description="x ** 2, even (paper eq. 6); tangent line beyond +-16",
        ),
        TargetSpec(
            "sqrt",
            torch.sqrt,
            (1e-6, 1e4),
            neurons=128,
            partition="log",
            coding="binary",
            timesteps=7,
            left_tail=_chord_through_zero(torch.sqrt, 1e-6),
            right_tail=_tangent(torch.sqrt, 1e4),
            metric="rel",
            distribution=("log-uniform on [1e-6, 1e4]", _log_uniform(1e-6, 1e4)),
            description="sqrt(x) for x >= 0 (paper eq. 7); chord to 0 below, tangent above",
        ),
        TargetSpec(
            "rsqrt",
            torch.rsqrt,
            (1e-6, 1e4),
            neurons=128,
            partition="log",
            coding="binary",
            timesteps=7,
            left_tail=_edge(torch.rsqrt, 1e-6),
            right_tail=_edge(torch.rsqrt, 1e4),
            metric="rel",
            distribution=("log-uniform on [1e-6, 1e4]", _log_uniform(1e-6, 1e4)),
            description="1 / sqrt(x) for RMSNorm; held at its edge values outside",
        ),
        TargetSpec(
            "reciprocal",
            _reciprocal,
            (1e-3, 1e5),
            neurons=256,
            partition="log",
            coding="binary",
            timesteps=7,
            left_tail=_edge(_reciprocal, 1e-3),
            right_tail=_edge(_reciprocal, 1e5),
            metric="rel",
            distribution=("log-uniform on [1e-3, 1e5]", _log_uniform(1e-3, 1e5)),
            description="1 / x for softmax denominators and norms; held at its edge values outside",
        ),
        TargetSpec(
            "exp",
            torch.exp,
            (-16.0, 0.0),
            neurons=128,
            metric="rel",
            coding="binary",
            timesteps=7,
            right_tail=(1.0, 1.0),
            distribution=("uniform on [-16, 0]", _uniform(-16.0, 0.0)),
            description="exp(x) on softmax's range x <= 0; 0 below -16, 1 + x above 0",
        ),
    )
}


def get_target(name: str) -> TargetSpec:
    """The built-in target ``name``; ``KeyError`` with a did-you-mean otherwise."""
    import difflib

    if not isinstance(name, str):
        raise TypeError(f"name must be a str (a built-in target such as 'silu'), got {type(name).__name__}")
    key = name.lower()
    if key in BUILTIN_TARGETS:
        return BUILTIN_TARGETS[key]
    close = difflib.get_close_matches(key, list(BUILTIN_TARGETS), n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise KeyError(f"unknown target {name!r}.{hint} Built-in targets: {', '.join(BUILTIN_TARGETS)}")
