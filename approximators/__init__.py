"""Layer 2 of bt-neurons: arrays of CustomNeurons that approximate functions.

Installed as ``bt_neurons.approximators``; builds only on ``bt_neurons``.

- `NeuronArrayApproximator`: the array (partition, routing, spike
  and count paths, tails), SpikingJelly multi-step module;
- the built-ins with shipped fitted parameters: `SquareApproximator`,
  `SqrtApproximator`, `SiLUApproximator`, `ExpApproximator`,
  `ReciprocalApproximator`, `RSqrtApproximator`,
  `SigmoidApproximator`, `TanhApproximator`, `GELUApproximator`
  (or `load_pretrained("silu")`);
- `fit_approximator` and the ``bt-fit`` command (`binary_fit` for binary
  coding, `pareto` for the error / spikes / neurons sweep);
- `SnnTorchApproximator`, the snnTorch face.
"""

from .builtin import (
    BUILTIN_APPROXIMATORS,
    ExpApproximator,
    GELUApproximator,
    PretrainedApproximator,
    ReciprocalApproximator,
    RSqrtApproximator,
    SigmoidApproximator,
    SiLUApproximator,
    SqrtApproximator,
    SquareApproximator,
    TanhApproximator,
    load_pretrained,
)
from .fitting import FitResult, fit_approximator
from .metrics import ApproximationReport, evaluate
from .neuron_array import NeuronArrayApproximator
from .operators import spiking_rmsnorm, spiking_softmax
from .partition import make_edges
from .snntorch_face import SnnTorchApproximator
from .targets import BUILTIN_TARGETS, TargetSpec, get_target

__all__ = [
    "ApproximationReport",
    "BUILTIN_APPROXIMATORS",
    "BUILTIN_TARGETS",
    "ExpApproximator",
    "FitResult",
    "GELUApproximator",
    "NeuronArrayApproximator",
    "PretrainedApproximator",
    "RSqrtApproximator",
    "ReciprocalApproximator",
    "SiLUApproximator",
    "SigmoidApproximator",
    "SnnTorchApproximator",
    "SqrtApproximator",
    "SquareApproximator",
    "TanhApproximator",
    "TargetSpec",
    "evaluate",
    "fit_approximator",
    "get_target",
    "load_pretrained",
    "make_edges",
    "spiking_rmsnorm",
    "spiking_softmax",
]
