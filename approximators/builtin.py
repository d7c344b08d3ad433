"""The built-in approximators, loaded with the fitted parameters that ship with bt-neurons.

Each class is a `NeuronArrayApproximator` whose parameters come from
``approximators/pretrained/<target>.safetensors`` (with ``<target>.json``
recording the settings, errors, seed and library version of the fit).
``bt-fit <target> --out approximators/pretrained`` regenerates them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from spikingjelly.activation_based import surrogate

from .neuron_array import NeuronArrayApproximator

__all__ = [
    "PRETRAINED_DIR",
    "PretrainedApproximator",
    "SquareApproximator",
    "SqrtApproximator",
    "SiLUApproximator",
    "ExpApproximator",
    "ReciprocalApproximator",
    "RSqrtApproximator",
    "SigmoidApproximator",
    "TanhApproximator",
    "GELUApproximator",
    "BUILTIN_APPROXIMATORS",
    "load_pretrained",
]

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


class PretrainedApproximator(NeuronArrayApproximator):
    """A built-in approximator with its shipped, fitted parameters.

    Args:
        path: ``"count"`` (default) or ``"spike"``.
        step_mode: ``"m"`` (default) or ``"s"`` for the spike path.
        surrogate_function: surrogate of the spike path (default ``surrogate.ATan()``).
        check_finite: raise on NaN / Inf inputs.

    Attributes:
        metadata: the JSON record of the fit (settings, errors, seed, version).
    """

    target: ClassVar[str]

    def __init__(
        self,
        *,
        path: str = "count",
        step_mode: str = "m",
        surrogate_function: surrogate.SurrogateFunctionBase | None = None,
        check_finite: bool = True,
    ) -> None:
        args, meta = self.arguments_from_files(PRETRAINED_DIR / self.target)
        super().__init__(
            **args,
            path=path,
            step_mode=step_mode,
            surrogate_function=surrogate_function,
            check_finite=check_finite,
        )
        self.metadata = meta

    @classmethod
    def pretrained(cls, **kwargs) -> PretrainedApproximator:
        """The approximator with its shipped parameters (same as calling the class)."""
        return cls(**kwargs)


class SquareApproximator(PretrainedApproximator):
    r"""$x^2$ (paper eq. 6), even: 64 power-law cells on $|x| \in [0, 16]$, 7 binary steps; tangent beyond."""

    target = "square"


class SqrtApproximator(PretrainedApproximator):
    r"""$\sqrt{x}$ (paper eq. 7): 128 neurons on a log partition of $[10^{-6}, 10^4]$, 7 binary steps each."""

    target = "sqrt"


class SiLUApproximator(PretrainedApproximator):
    r"""$x\,\sigma(x)$ (paper 2.8): 16 curvature cells on $[-8, 8]$, 7 binary steps; 0 below, $x$ above."""

    target = "silu"


class ExpApproximator(PretrainedApproximator):
    r"""$e^x$ on softmax's range $[-16, 0]$: 128 neurons x 7 binary steps; 0 below, $1 + x$ above."""

    target = "exp"


class ReciprocalApproximator(PretrainedApproximator):
    r"""$1/x$ on $[10^{-3}, 10^5]$ (256 log cells, 7 binary steps); edge values outside."""

    target = "reciprocal"


class RSqrtApproximator(PretrainedApproximator):
    r"""$1/\sqrt{x}$ on $[10^{-6}, 10^4]$ (128 log cells, 7 binary steps); edge values outside."""

    target = "rsqrt"


class SigmoidApproximator(PretrainedApproximator):
    r"""$\sigma(x)$: 16 neurons (curvature cells) on $[-10, 10]$, 7 binary steps; 0 below, 1 above."""

    target = "sigmoid"


class TanhApproximator(PretrainedApproximator):
    r"""$\tanh(x)$, odd: 12 neurons (curvature cells) on $|x| \in [0, 6]$, 7 binary steps; $\pm 1$ beyond."""

    target = "tanh"


class GELUApproximator(PretrainedApproximator):
    r"""GELU (exact erf form): 16 curvature cells on $[-8, 8]$, 7 binary steps; 0 below, $x$ above."""

    target = "gelu"


BUILTIN_APPROXIMATORS: dict[str, type[PretrainedApproximator]] = {
    cls.target: cls
    for cls in (
        SquareApproximator,
        SqrtApproximator,
        SiLUApproximator,
        ExpApproximator,
        ReciprocalApproximator,
        RSqrtApproximator,
        SigmoidApproximator,
        TanhApproximator,
        GELUApproximator,
    )
}


def load_pretrained(name: str, **kwargs) -> PretrainedApproximator:
    """The built-in approximator ``name`` (``"silu"``, ``"exp"``, ...) with its shipped parameters."""
    from .targets import get_target

    get_target(name)  # a clear KeyError with a did-you-mean for unknown names
    return BUILTIN_APPROXIMATORS[name.lower()](**kwargs)
