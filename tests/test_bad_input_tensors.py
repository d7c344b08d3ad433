"""Bad inputs to layers 1 and 2 (neurons, operators, the snnTorch face, approximators).

Every row of the table is one distinct mistake: a callable that makes it, the
exception it must raise and a pattern the message must match, which names
the argument. Property tests place NaN / Inf anywhere in an input of any
shape and dtype; equivalence tests check that the legal edge cases (an empty
batch, rank 0 where the peer neuron accepts it, half precision, an all-zero
token) give the right result on both paths.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pytest
import torch
from bt_neurons.approximators import (
    NeuronArrayApproximator,
    RSqrtApproximator,
    SiLUApproximator,
    SnnTorchApproximator,
    SquareApproximator,
    fit_approximator,
    load_pretrained,
    make_edges,
    spiking_rmsnorm,
    spiking_softmax,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from spikingjelly.activation_based import functional
from torch import nn

from bt_neurons import (
    CustomNeuronNode,
    EIIFEncoder,
    EIIFNode,
    QSynapsis,
    Quantizer,
    SNNMatmul,
    SNNMatmulNode,
    SNNMultiply,
    SNNMultiplyNode,
    SNNRMSNorm,
    SNNSoftmax,
    SpikeTrainOperator,
    Synapsis,
    SynapsisNode,
)
from bt_neurons.functional import eiif_count, eiif_spikes_from_counts
from bt_neurons.snntorch import EIIF, CustomNeuron
from bt_neurons.snntorch import Synapsis as SnnTorchSynapsis

NAN, INF = float("nan"), float("inf")
META = torch.device("meta")


# ------------------------------------------------------------------ helpers
@functools.cache
def silu() -> SiLUApproximator:
    return SiLUApproximator()


@functools.cache
def square_rsqrt() -> tuple[SquareApproximator, RSqrtApproximator]:
    return SquareApproximator(), RSqrtApproximator()


def spiking_norm(**kwargs) -> SNNRMSNorm:
    square, rsqrt = square_rsqrt()
    return SNNRMSNorm(8, mode="spiking", square=square, rsqrt=rsqrt, **kwargs)


def calibrated(granularity: str, data: torch.Tensor | None = None) -> Quantizer:
    q = Quantizer(granularity=granularity, dynamic=False)
    with q.calibrating():
        q(torch.randn(4, 4) if data is None else data)
    return q


def linear(n_in: int = 4, n_out: int = 3) -> nn.Linear:
    return nn.Linear(n_in, n_out)


def step_past(neuron, steps: int, *, explicit: bool):
    mem = neuron.init_mem() if explicit else None
    for _ in range(steps):
        out = neuron(torch.ones(2), mem) if explicit else neuron(torch.ones(2))
        mem = out[1] if explicit else None


def step_approx_past(face: SnnTorchApproximator, steps: int):
    step = None if face.init_hidden else face.init_approximator()
    for _ in range(steps):
        out = face(torch.ones(2)) if face.init_hidden else face(torch.ones(2), step)
        step = None if face.init_hidden else out[1]


def drift_clip() -> torch.Tensor:
    q = Quantizer(qmax=7)
    q.clip_ratio.requires_grad_()
    with torch.no_grad():
        q.clip_ratio.fill_(-0.5)
    return q(torch.randn(2, 4))


X = torch.ones(2, 3)

# (id, callable, exception, pattern naming the argument)
CASES = [
    # ---------------------------------------------------------- EIIFNode constructor
    (
        "eiif-theta-str",
        lambda: EIIFNode(theta_0="0.5"),
        TypeError,
        r"theta_0 must be a real number.*str '0\.5'",
    ),
    ("eiif-theta-none", lambda: EIIFNode(theta_0=None), TypeError, "theta_0 must be a real number"),
    ("eiif-theta-bool", lambda: EIIFNode(theta_0=True), TypeError, "theta_0 must be a real number.*bool"),
    (
        "eiif-theta-vector",
        lambda: EIIFNode(theta_0=torch.ones(3)),
        ValueError,
        r"theta_0 must be a single number",
    ),
    ("eiif-alpha-str", lambda: EIIFNode(alpha="1"), TypeError, "alpha must be a real number"),
    ("eiif-alpha-inf", lambda: EIIFNode(alpha=INF), ValueError, "alpha must be finite"),
    ("eiif-r-bool-tensor", lambda: EIIFNode(r=torch.tensor(True)), TypeError, "r must hold real numbers"),
    ("eiif-r-complex", lambda: EIIFNode(r=0.5 + 0j), TypeError, "r must be a real number"),
    ("eiif-T-bool", lambda: EIIFNode(T=True, path="count"), TypeError, "T must be a positive int"),
    ("eiif-T-str", lambda: EIIFNode(T="4", path="count"), TypeError, "T must be a positive int.*str"),
    ("eiif-T-float", lambda: EIIFNode(T=4.0, path="count"), TypeError, "T must be a positive int.*float"),
    ("eiif-soft-reset-str", lambda: EIIFNode(soft_reset="no"), TypeError, "soft_reset must be True or False"),
    ("eiif-detach-int", lambda: EIIFNode(detach_reset=1), TypeError, "detach_reset must be True or False"),
    (
        "eiif-check-finite-str",
        lambda: EIIFNode(check_finite="yes"),
        TypeError,
        "check_finite must be True or",
    ),
    ("eiif-store-none", lambda: EIIFNode(store_v_seq=None), TypeError, "store_v_seq must be True or False"),
    (
        "eiif-learnable-int",
        lambda: EIIFNode(learnable=5),
        TypeError,
        "learnable must be True, False or names",
    ),
    (
        "eiif-surrogate-int",
        lambda: EIIFNode(surrogate_function=3),
        TypeError,
        "surrogate_function must be callable",
    ),
    ("eiif-path-none", lambda: EIIFNode(path=None), ValueError, "path must be one of"),
    ("eiif-step-mode-upper", lambda: EIIFNode(step_mode="M"), ValueError, "step_mode must be one of"),
    # ---------------------------------------------------------- CustomNeuronNode constructor
    ("cn-theta-str", lambda: CustomNeuronNode(theta_base="1"), TypeError, "theta_base must be a real number"),
    ("cn-alpha-none", lambda: CustomNeuronNode(alpha=None), TypeError, "alpha must be a real number"),
    ("cn-alpha-str-number", lambda: CustomNeuronNode(alpha="0.1"), TypeError, "alpha must be a real number"),
    ("cn-amp-neg-nan", lambda: CustomNeuronNode(amp_neg=NAN), ValueError, "amp_neg must be finite"),
    ("cn-decay-str", lambda: CustomNeuronNode(decay="0.5"), TypeError, "decay must be a real number"),
    ("cn-T-float", lambda: CustomNeuronNode(T=2.0, path="count"), TypeError, "T must be a positive int"),
    ("cn-per-step-str", lambda: CustomNeuronNode(T=2, per_step="yes"), TypeError, "per_step must be True or"),
    ("cn-reset-none", lambda: CustomNeuronNode(reset=None), TypeError, "reset must be True or False"),
    ("cn-learnable-str", lambda: CustomNeuronNode(learnable="theta"), TypeError, "learnable must be True or"),
    # ---------------------------------------------------------- neuron inputs
    (
        "eiif-m-rank0",
        lambda: EIIFNode(step_mode="m")(torch.tensor(1.0)),
        ValueError,
        r"x must have shape \[T, N",
    ),
    (
        "eiif-m-no-steps",
        lambda: EIIFNode(step_mode="m")(torch.zeros(0, 3)),
        ValueError,
        "x must have at least one",
    ),
    (
        "cn-m-no-steps",
        lambda: CustomNeuronNode(step_mode="m")(torch.zeros(0, 3)),
        ValueError,
        "x must have at le",
    ),
    ("eiif-numpy", lambda: EIIFNode()(np.ones(3)), TypeError, "x must be a torch.Tensor, got ndarray"),
    (
        "eiif-complex",
        lambda: EIIFNode()(torch.ones(2, dtype=torch.complex64)),
        TypeError,
        "x must have a floating",
    ),
    ("eiif-count-T-float", lambda: EIIFNode().count(X, T=3.0), TypeError, "T must be a positive int"),
    ("eiif-count-T-bool", lambda: EIIFNode().count(X, T=True), TypeError, "T must be a positive int"),
    (
        "cn-per-step-past-T-spikingjelly",
        lambda: CustomNeuronNode(T=2, per_step=True, step_mode="m")(torch.ones(3, 2)),
        ValueError,
        r"per-step parameters for T=2 steps.*functional\.reset_net",
    ),
    # ---------------------------------------------------------- snnTorch face
    (
        "snn-mem-shape",
        lambda: EIIF()(X, torch.ones(5)),
        ValueError,
        r"mem must have the shape of input_ \(2, 3\)",
    ),
    ("snn-mem-nan", lambda: EIIF()(X, torch.full((2, 3), NAN)), ValueError, "mem must be finite.*NaN"),
    (
        "snn-mem-inf",
        lambda: CustomNeuron()(X, torch.full((2, 3), -INF)),
        ValueError,
        "mem must be finite.*Inf",
    ),
    ("snn-mem-list", lambda: EIIF()(X, [0.0]), TypeError, "mem must be a torch.Tensor"),
    ("snn-mem-device", lambda: EIIF()(X, torch.zeros(2, 3, device=META)), ValueError, "mem is on meta"),
    (
        "snn-cn-past-T-hidden",
        lambda: step_past(CustomNeuron(T=2, per_step=True, init_hidden=True), 3, explicit=False),
        ValueError,
        r"T=2 steps.*neuron\.reset_hidden\(\).*snntorch\.utils\.reset\(net\)",
    ),
    (
        "snn-cn-past-T-explicit",
        lambda: step_past(CustomNeuron(T=2, per_step=True), 3, explicit=True),
        ValueError,
        r"T=2 steps.*mem = neuron\.init_custom\(\)",
    ),
    (
        "snn-learn-str",
        lambda: EIIF(learn_threshold="yes"),
        TypeError,
        "learn_threshold must be True or False",
    ),
    ("snn-init-hidden-str", lambda: EIIF(init_hidden="no"), TypeError, "init_hidden must be True or False"),
    ("snn-output-int", lambda: CustomNeuron(output=1), TypeError, "output must be True or False"),
    ("snn-spike-grad-str", lambda: EIIF(spike_grad="atan"), TypeError, "spike_grad must be callable"),
    ("snn-beta-str", lambda: CustomNeuron(beta="0.9"), TypeError, "decay must be a real number"),
    # ---------------------------------------------------------- Quantizer
    ("q-eps-zero", lambda: Quantizer(eps=0.0), ValueError, "eps must be finite and > 0"),
    ("q-eps-negative", lambda: Quantizer(eps=-1e-8), ValueError, "eps must be finite and > 0"),
    ("q-eps-inf", lambda: Quantizer(eps=INF), ValueError, "eps must be finite and > 0"),
    ("q-eps-str", lambda: Quantizer(eps="1e-8"), TypeError, "eps must be a real number"),
    ("q-bits-float", lambda: Quantizer(bits=2.5), TypeError, "bits must be an int >= 2"),
    ("q-bits-bool", lambda: Quantizer(bits=True), TypeError, "bits must be an int >= 2"),
    ("q-clip-str", lambda: Quantizer(clip="1"), TypeError, r"clip must be a float in \(0, 1\]"),
    ("q-clip-nan", lambda: Quantizer(clip=NAN), ValueError, r"clip must be a float in \(0, 1\]"),
    ("q-clip-negative", lambda: Quantizer(clip=-0.5), ValueError, r"clip must be a float in \(0, 1\]"),
    ("q-qmax-zero", lambda: Quantizer(qmax=0), ValueError, "qmax must be a positive int"),
    ("q-qmax-float", lambda: Quantizer(qmax=7.0), TypeError, "qmax must be a positive int"),
    ("q-group-negative", lambda: Quantizer(group_size=-2), ValueError, "group_size must be a positive int"),
    ("q-group-bool", lambda: Quantizer(group_size=True), TypeError, "group_size must be a positive int"),
    ("q-symmetric-str", lambda: Quantizer(symmetric="no"), TypeError, "symmetric must be True or False"),
    ("q-dynamic-int", lambda: Quantizer(dynamic=1), TypeError, "dynamic must be True or False"),
    (
        "q-rank0-forward",
        lambda: Quantizer()(torch.tensor(1.0)),
        ValueError,
        r"x must have shape \[\.\.\., C\]",
    ),
    ("q-rank0-quantize", lambda: Quantizer().quantize(torch.tensor(1.0)), ValueError, r"x must have shape"),
    (
        "q-rank0-in-place",
        lambda: Quantizer().fake_quantize_(torch.tensor(1.0)),
        ValueError,
        r"x must have shape",
    ),
    ("q-rank0-grouped", lambda: Quantizer(group_size=2)(torch.tensor(1.0)), ValueError, r"x must have shape"),
    (
        "q-channels-fewer",
        lambda: calibrated("channel")(torch.ones(2, 3)),
        ValueError,
        "x must have 4 channels",
    ),
    ("q-channels-one", lambda: calibrated("channel")(torch.ones(2, 1)), ValueError, "x must have 4 channels"),
    (
        "q-static-nan",
        lambda: calibrated("tensor")(torch.tensor([[NAN, 1.0]])),
        ValueError,
        "x must be finite.*NaN",
    ),
    (
        "q-static-inf",
        lambda: calibrated("tensor")(torch.tensor([INF, 1.0])),
        ValueError,
        "x must be finite.*Inf",
    ),
    (
        "q-static-channel-nan",
        lambda: calibrated("channel").quantize(torch.tensor([[1.0, 2.0, NAN, 0.0]])),
        ValueError,
        "x must be finite",
    ),
    ("q-static-device", lambda: calibrated("tensor")(torch.ones(2, device=META)), ValueError, "x is on meta"),
    ("q-list", lambda: Quantizer()([1.0, 2.0]), TypeError, "x must be a torch.Tensor, got list"),
    (
        "q-int",
        lambda: Quantizer()(torch.ones(2, 2, dtype=torch.int32)),
        TypeError,
        "x must have a floating-point",
    ),
    ("q-clip-learned-negative", drift_clip, ValueError, "clip_ratio must be finite and > 0"),
    # ---------------------------------------------------------- Synapsis / QSynapsis
    (
        "syn-rank0",
        lambda: Synapsis(linear())(torch.tensor(1.0)),
        ValueError,
        r"x must have shape \[\.\.\., 4\]",
    ),
    (
        "syn-rank0-spike",
        lambda: Synapsis(linear(), path="spike")(torch.tensor(1.0)),
        ValueError,
        r"x must have shape \[\.\.\., 4\]",
    ),
    (
        "syn-rank0-spikes",
        lambda: Synapsis(linear()).spikes(torch.tensor(1.0)),
        ValueError,
        r"x must have shape",
    ),
    (
        "syn-bf16-f32-count",
        lambda: Synapsis(linear())(torch.ones(2, 4, dtype=torch.bfloat16)),
        TypeError,
        r"x has dtype torch\.bfloat16 but the layer's weight is torch\.float32",
    ),
    (
        "syn-bf16-f32-spike",
        lambda: Synapsis(linear(), path="spike")(torch.ones(2, 4, dtype=torch.bfloat16)),
        TypeError,
        r"x has dtype torch\.bfloat16 but the layer's weight is torch\.float32",
    ),
    (
        "syn-f64-f32",
        lambda: Synapsis(linear())(torch.ones(2, 4, dtype=torch.float64)),
        TypeError,
        r"x has dtype torch\.float64 but the layer's weight",
    ),
    (
        "qsyn-bf16-f32",
        lambda: QSynapsis.from_linear(linear())(torch.ones(2, 4, dtype=torch.bfloat16)),
        TypeError,
        "x has dtype torch.bfloat16",
    ),
    (
        "syn-device",
        lambda: Synapsis(linear())(torch.ones(2, 4, device=META)),
        ValueError,
        "x is on meta but the",
    ),
    (
        "syn-in-features-spike",
        lambda: Synapsis(linear(), path="spike")(X),
        ValueError,
        "x must have 4 features",
    ),
    (
        "emb-id-too-large",
        lambda: Synapsis(nn.Embedding(5, 3))(torch.tensor([7])),
        ValueError,
        r"x must lie in \[0, 4\]",
    ),
    (
        "emb-id-negative",
        lambda: Synapsis(nn.Embedding(5, 3))(torch.tensor([[-1, 0]])),
        ValueError,
        "x must lie in",
    ),
    (
        "emb-id-float",
        lambda: Synapsis(nn.Embedding(5, 3))(torch.tensor([1.0])),
        TypeError,
        "x must be an integer",
    ),
    (
        "emb-id-bool",
        lambda: Synapsis(nn.Embedding(5, 3))(torch.tensor([True])),
        TypeError,
        "x must be an integer",
    ),
    ("emb-id-list", lambda: Synapsis(nn.Embedding(5, 3))([1, 2]), TypeError, "x must be a torch.Tensor"),
    (
        "qsyn-emb-id-too-large",
        lambda: QSynapsis.from_embedding(nn.Embedding(5, 3))(torch.tensor([5])),
        ValueError,
        r"x must lie in \[0, 4\]",
    ),
    (
        "syn-pre-str",
        lambda: Synapsis(linear(), pre_quantizer="q"),
        TypeError,
        "pre_quantizer must be a bt_neurons",
    ),
    (
        "syn-post-int",
        lambda: Synapsis(linear(), post_quantizer=5),
        TypeError,
        "post_quantizer must be a bt_neuro",
    ),
    ("syn-post-str", lambda: Synapsis(linear(), post="yes"), TypeError, "post must be True or False"),
    (
        "qsyn-pre-int",
        lambda: QSynapsis(linear(), pre=3, post=None),
        TypeError,
        "pre must be a bt_neurons.Quantizer",
    ),
    (
        "qsyn-post-flag",
        lambda: QSynapsis.from_linear(linear(), post="no"),
        TypeError,
        "post must be True or False",
    ),
    (
        "syn-T-float",
        lambda: Synapsis(linear(), timesteps=15.0),
        TypeError,
        "timesteps must be a positive int",
    ),
    (
        "syn-post-T-zero",
        lambda: Synapsis(linear(), post_timesteps=0),
        ValueError,
        "post_timesteps must be a pos",
    ),
    # ---------------------------------------------------------- SNNMatmul
    (
        "mm-heads",
        lambda: SNNMatmul()(torch.randn(2, 3, 4, 5), torch.randn(2, 2, 4, 5)),
        ValueError,
        r"leading \(batch, head\) axes of x and y.*do not broadcast: x \(2, 3\), y \(2, 2\)",
    ),
    (
        "mm-batch",
        lambda: SNNMatmul(transpose_y=False)(torch.randn(3, 4, 5), torch.randn(2, 5, 4)),
        ValueError,
        r"x @ y .*do not broadcast: x \(3,\), y \(2,\)",
    ),
    (
        "mm-groups",
        lambda: SNNMatmul()(torch.randn(2, 4, 4, 5), torch.randn(2, 3, 4, 5), groups=2),
        ValueError,
        r"groups=2 times\) do not broadcast: x \(2, 4\), y \(2, 6\)",
    ),
    ("mm-groups-float", lambda: SNNMatmul()(X, X, groups=2.0), TypeError, "groups must be a positive int"),
    ("mm-groups-bool", lambda: SNNMatmul()(X, X, groups=True), TypeError, "groups must be a positive int"),
    ("mm-groups-2d", lambda: SNNMatmul()(X, X, groups=2), ValueError, "groups > 1 needs y with a heads axis"),
    (
        "mm-device",
        lambda: SNNMatmul()(X, torch.ones(2, 3, device=META)),
        ValueError,
        "y is on meta but x is on",
    ),
    ("mm-transpose-str", lambda: SNNMatmul(transpose_y="no"), TypeError, "transpose_y must be True or False"),
    ("mm-T-str", lambda: SNNMatmul(timesteps="15"), TypeError, "timesteps must be a positive int"),
    (
        "mm-rank1",
        lambda: SNNMatmul()(torch.ones(3), X),
        ValueError,
        r"x must have shape \[\.\.\., rows, cols\]",
    ),
    # ---------------------------------------------------------- SNNMultiply
    ("mul-y-nan", lambda: SNNMultiply()(X, torch.full((2, 3), NAN)), ValueError, "y must be finite"),
    ("mul-y-device", lambda: SNNMultiply()(X, torch.ones(2, 3, device=META)), ValueError, "y is on meta"),
    ("mul-channels-zero", lambda: SNNMultiply(channels=0), ValueError, "channels must be a positive int"),
    ("mul-group-zero", lambda: SNNMultiply(group_size=0), ValueError, "group_size must be a positive int"),
    (
        "mul-rank0",
        lambda: SNNMultiply()(torch.tensor(1.0), torch.tensor(1.0)),
        ValueError,
        r"x must have shape",
    ),
    # ---------------------------------------------------------- SNNSoftmax
    (
        "sm-float-nan",
        lambda: SNNSoftmax()(torch.tensor([[1.0, NAN]])),
        ValueError,
        "scores must be finite.*NaN",
    ),
    (
        "sm-float-minus-inf",
        lambda: SNNSoftmax()(torch.tensor([1.0, -INF])),
        ValueError,
        "scores must be finite",
    ),
    (
        "sm-mask-shape",
        lambda: SNNSoftmax()(torch.zeros(2, 3), torch.ones(4, dtype=torch.bool)),
        ValueError,
        r"mask and scores do not broadcast: mask \(4,\), scores \(2, 3\)",
    ),
    (
        "sm-mask-larger",
        lambda: SNNSoftmax()(torch.zeros(2, 3), torch.ones(2, 2, 3, dtype=torch.bool)),
        ValueError,
        r"mask must broadcast to the shape of scores \(2, 3\)",
    ),
    (
        "sm-mask-list",
        lambda: SNNSoftmax()(torch.zeros(2, 3), [True]),
        TypeError,
        "mask must be a torch.Tensor",
    ),
    (
        "sm-mask-device",
        lambda: SNNSoftmax()(torch.zeros(2, 3), torch.ones(3, dtype=torch.bool, device=META)),
        ValueError,
        "mask is on meta",
    ),
    ("sm-causal-str", lambda: SNNSoftmax(causal="yes"), TypeError, "causal must be True or False"),
    ("sm-exp-int", lambda: SNNSoftmax("spiking", exp=5, reciprocal=abs), TypeError, "exp must be callable"),
    (
        "sm-int-scores",
        lambda: SNNSoftmax()(torch.ones(2, 3, dtype=torch.int64)),
        TypeError,
        "scores must have a",
    ),
    # ---------------------------------------------------------- SNNRMSNorm
    (
        "rms-range-zero",
        lambda: spiking_norm(square_range=0.0),
        ValueError,
        "square_range must be finite and > 0",
    ),
    (
        "rms-range-above",
        lambda: spiking_norm(square_range=17.0),
        ValueError,
        r"square_range must lie in \[2, 16\]",
    ),
    (
        "rms-range-below",
        lambda: spiking_norm(square_range=1.0),
        ValueError,
        r"square_range must lie in \[2, 16\]",
    ),
    (
        "rms-range-str",
        lambda: spiking_norm(square_range="16"),
        TypeError,
        "square_range must be a real number",
    ),
    ("rms-range-nan", lambda: SNNRMSNorm(8, square_range=NAN), ValueError, "square_range must be finite"),
    ("rms-float-nan", lambda: SNNRMSNorm(2)(torch.tensor([[1.0, NAN]])), ValueError, "x must be finite.*NaN"),
    ("rms-spiking-inf", lambda: spiking_norm()(torch.full((1, 8), INF)), ValueError, "x must be finite.*Inf"),
    ("rms-rank0", lambda: SNNRMSNorm(1)(torch.tensor(1.0)), ValueError, r"x must have shape \[\.\.\., 1\]"),
    (
        "rms-device",
        lambda: SNNRMSNorm(3)(torch.ones(2, 3, device=META)),
        ValueError,
        "x is on meta but the norm",
    ),
    ("rms-eps-str", lambda: SNNRMSNorm(3, eps="1e-6"), TypeError, "eps must be a real number"),
    ("rms-hidden-float", lambda: SNNRMSNorm(8.0), TypeError, "hidden_size must be a positive int"),
    (
        "rms-square-int",
        lambda: SNNRMSNorm(8, mode="spiking", square=5, rsqrt=abs),
        TypeError,
        "square must be call",
    ),
    (
        "rms-rsqrt-max-low",
        lambda: spiking_norm(rsqrt_max=100.0),
        ValueError,
        r"rsqrt_max must be finite and exceed",
    ),
    (
        "rms-hidden-too-large-for-rsqrt",
        lambda: SNNRMSNorm(
            5_000_000, mode="spiking", square=square_rsqrt()[0], rsqrt=square_rsqrt()[1], square_range=2
        ),
        ValueError,
        r"square_range\*\*2 / hidden_size",
    ),
    # ---------------------------------------------------------- EIIFEncoder
    ("enc-path", lambda: EIIFEncoder(Quantizer(), path="Spike"), ValueError, "path must be one of"),
    (
        "enc-asymmetric",
        lambda: EIIFEncoder(Quantizer(4, symmetric=False)),
        ValueError,
        "quantizer must be symmetric",
    ),
    (
        "enc-rank0",
        lambda: EIIFEncoder(Quantizer(qmax=7), path="spike")(torch.tensor(1.0)),
        ValueError,
        "x must hav",
    ),
    # ---------------------------------------------------------- approximators
    (
        "approx-left-tail-nan",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 4, left_tail=(NAN, 0.0)),
        ValueError,
        "left_tail must be finite",
    ),
    (
        "approx-right-tail-three",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 4, right_tail=(1.0, 2.0, 3.0)),
        ValueError,
        r"right_tail must be a pair \(slope, intercept\)",
    ),
    (
        "approx-right-tail-str",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 4, right_tail="ab"),
        ValueError,
        "right_tail must be a pair",
    ),
    (
        "approx-edges-str",
        lambda: NeuronArrayApproximator(["a", "b"], 4),
        TypeError,
        "edges must be a tensor or",
    ),
    (
        "approx-thresholds-str",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 2, thresholds=[["a", "b"]]),
        TypeError,
        "thresholds must be a tensor or a sequence of numbers",
    ),
    (
        "approx-name-int",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 2, name=5),
        TypeError,
        "name must",
    ),
    (
        "approx-check-finite-str",
        lambda: NeuronArrayApproximator(torch.tensor([0.0, 1.0]), 2, check_finite="no"),
        TypeError,
        "check_finite must be True or False",
    ),
    (
        "approx-device",
        lambda: silu()(torch.ones(2, device=META)),
        ValueError,
        "x is on meta but the approximator",
    ),
    (
        "approx-spike-no-steps",
        lambda: SiLUApproximator(path="spike")(torch.zeros(0, 2)),
        ValueError,
        "x must have at least one time step",
    ),
    (
        "approx-spike-rank0",
        lambda: SiLUApproximator(path="spike")(torch.tensor(1.0)),
        ValueError,
        r"\[T, N, \*\]",
    ),
    (
        "snn-approx-nan",
        lambda: SnnTorchApproximator(silu())(torch.tensor([NAN])),
        ValueError,
        "input_ must be finite",
    ),
    (
        "snn-approx-step-negative",
        lambda: SnnTorchApproximator(silu())(X, -1),
        ValueError,
        "step must be an int >= 0",
    ),
    ("snn-approx-step-str", lambda: SnnTorchApproximator(silu())(X, "1"), TypeError, "step must be an int"),
    (
        "snn-approx-past-T-explicit",
        lambda: step_approx_past(SnnTorchApproximator(silu()), 17),
        ValueError,
        r"T=7 steps.*init_approximator\(\)",
    ),
    (
        "snn-approx-past-T-hidden",
        lambda: step_approx_past(SnnTorchApproximator(silu(), init_hidden=True), 17),
        ValueError,
        r"T=7 steps.*reset_hidden\(\).*snntorch\.reset\(net\)",
    ),
    (
        "snn-approx-not-approx",
        lambda: SnnTorchApproximator(nn.Identity()),
        TypeError,
        "approximator must be a",
    ),
    (
        "snn-approx-hidden-str",
        lambda: SnnTorchApproximator(silu(), init_hidden="y"),
        TypeError,
        "init_hidden must",
    ),
    ("pretrained-int", lambda: load_pretrained(5), TypeError, "name must be a str"),
    # ---------------------------------------------------------- fitting and partitions
    ("fit-domain-str", lambda: fit_approximator(torch.sin, domain="ab"), TypeError, r"domain must be a pair"),
    (
        "fit-domain-three",
        lambda: fit_approximator("silu", domain=(1, 2, 3)),
        TypeError,
        r"domain must be a pair",
    ),
    (
        "fit-domain-nan",
        lambda: fit_approximator("silu", domain=(0, NAN)),
        ValueError,
        "domain must be finite",
    ),
    (
        "fit-domain-empty",
        lambda: fit_approximator("silu", domain=(1.0, 1.0)),
        ValueError,
        "domain must satisfy",
    ),
    ("fit-T-float", lambda: fit_approximator("silu", timesteps=2.5), TypeError, "timesteps must be an int"),
    (
        "fit-T-large",
        lambda: fit_approximator("silu", timesteps=100),
        ValueError,
        r"timesteps must be an int in \[",
    ),
    (
        "fit-T-one",
        lambda: fit_approximator("silu", timesteps=1, coding="level", partition="linear"),
        ValueError,
        r"timesteps must be an int in \[2, 64",
    ),
    (
        "fit-neurons-float",
        lambda: fit_approximator("silu", neurons=2.0),
        TypeError,
        "neurons must be a positive",
    ),
    (
        "fit-symmetry",
        lambda: fit_approximator("silu", symmetry="mirror"),
        ValueError,
        "symmetry must be one of",
    ),
    (
        "fit-samples-zero",
        lambda: fit_approximator("silu", samples_per_cell=0),
        ValueError,
        "samples_per_cell must",
    ),
    ("fit-lr-negative", lambda: fit_approximator("silu", lr=-1.0), ValueError, "lr must be finite and > 0"),
    ("fit-lr-str", lambda: fit_approximator("silu", lr="fast"), TypeError, "lr must be a real number"),
    ("fit-seed-str", lambda: fit_approximator("silu", seed="a"), TypeError, "seed must be an int"),
    (
        "fit-device",
        lambda: fit_approximator("silu", device="tpu", steps=0),
        ValueError,
        "device must name a torch",
    ),
    (
        "fit-progress-str",
        lambda: fit_approximator("silu", progress="yes"),
        TypeError,
        "progress must be True or",
    ),
    ("fit-name-int", lambda: fit_approximator("silu", name=5), TypeError, "name must be a str or None"),
    ("edges-domain-str", lambda: make_edges("ab", 4), TypeError, "domain must be a pair"),
    (
        "edges-power",
        lambda: make_edges((0, 1), 4, "power", power=-1.0),
        ValueError,
        "power must be finite and > 0",
    ),
    (
        "edges-breakpoints-str",
        lambda: make_edges((0, 1), 4, ["a", "b"]),
        TypeError,
        "partition must be a name or",
    ),
    ("edges-neurons-float", lambda: make_edges((0, 1), 2.0), TypeError, "neurons must be a positive int"),
    # ------------------------------------------------------- spike-train faces
    (
        "stn-timesteps-zero",
        lambda: SynapsisNode(nn.Linear(2, 2), 0),
        ValueError,
        "timesteps must be a positive",
    ),
    ("stn-layer-conv", lambda: SynapsisNode(nn.Conv1d(2, 2, 1), 3), TypeError, "layer must be an nn.Linear"),
    ("stn-post-str", lambda: SynapsisNode(nn.Linear(2, 2), 3, post="no"), TypeError, "post must be"),
    ("stn-path", lambda: SynapsisNode(nn.Linear(2, 2), 3, path="counts"), ValueError, "path must be one of"),
    (
        "stn-step-mode",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, step_mode="x"),
        ValueError,
        "step_mode must be",
    ),
    ("stn-scale-str", lambda: SynapsisNode(nn.Linear(2, 2), 3, scale="1"), TypeError, "scale must be a real"),
    (
        "stn-scale-nan",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=NAN),
        ValueError,
        "scale must be finite",
    ),
    (
        "stn-scale-neg",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=-1.0),
        ValueError,
        "scale must be finite and > 0",
    ),
    (
        "stn-scale-module",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=nn.ReLU()),
        TypeError,
        "scale as a module must be a layer that fires",
    ),
    (
        "stn-post-quantizer-type",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, post_quantizer=object()),
        TypeError,
        "post_quantizer must be a bt_neurons.Quantizer",
    ),
    (
        "stn-post-quantizer-asym",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, post_quantizer=Quantizer(symmetric=False)),
        ValueError,
        "post_quantizer must be symmetric",
    ),
    (
        "stn-surrogate",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, surrogate_function=1),
        TypeError,
        "surrogate_function must be callable",
    ),
    (
        "stn-activation",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, activation=1),
        TypeError,
        "activation must be callable",
    ),
    (
        "stn-not-spikes",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=1.0)(torch.full((3, 1, 2), 0.5)),
        ValueError,
        "spikes must hold spikes",
    ),
    (
        "stn-nan-spikes",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=1.0)(torch.full((3, 1, 2), NAN)),
        ValueError,
        "spikes must hold spikes",
    ),
    (
        "stn-rank",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=1.0)(torch.zeros(2)),
        ValueError,
        r"spikes must have shape \[T, N, ..., 2\]",
    ),
    (
        "stn-scale-call-str",
        lambda: SynapsisNode(nn.Linear(2, 2), 3)(torch.zeros(3, 1, 2), scale="big"),
        TypeError,
        "scale must be a real",
    ),
    (
        "stn-scale-call-inf",
        lambda: SynapsisNode(nn.Linear(2, 2), 3)(torch.zeros(3, 1, 2), scale=torch.tensor(INF)),
        ValueError,
        "scale must be finite",
    ),
    (
        "stn-meta-spikes",
        lambda: SynapsisNode(nn.Linear(2, 2), 3, scale=1.0)(torch.zeros(3, 1, 2, device=META)),
        ValueError,
        "spikes .*meta.*the layer's weight",
    ),
    ("stm-groups-zero", lambda: SNNMatmulNode(3, groups=0), ValueError, "groups must be a positive"),
    ("stm-transpose-str", lambda: SNNMatmulNode(3, transpose_y="yes"), TypeError, "transpose_y must be"),
    (
        "stm-groups-no-heads",
        lambda: SNNMatmulNode(3, groups=2, x_scale=1.0, y_scale=1.0)(
            torch.zeros(3, 2, 4), torch.zeros(3, 2, 4)
        ),
        ValueError,
        "groups > 1 needs y with a heads axis",
    ),
    (
        "stm-x-rank",
        lambda: SNNMatmulNode(3, x_scale=1.0, y_scale=1.0)(torch.zeros(3, 4), torch.zeros(3, 2, 4)),
        ValueError,
        "x must have shape .*at least 2 dimensions",
    ),
    (
        "stm-x-scale-missing",
        lambda: SNNMatmulNode(3, y_scale=1.0)(torch.zeros(3, 2, 4), torch.zeros(3, 2, 4)),
        ValueError,
        "x_scale is missing",
    ),
    (
        "stmul-one-input",
        lambda: SNNMultiplyNode(3, x_scale=1.0, y_scale=1.0)(torch.zeros(3, 2, 4)),
        TypeError,
        "takes two spike trains",
    ),
    (
        "sto-wrong-T",
        lambda: SpikeTrainOperator(nn.Softmax(-1), 3, scale=1.0)(torch.zeros(4, 2, 4)),
        ValueError,
        "spikes must have T=3 steps",
    ),
    (
        "snt-syn-mem-int",
        lambda: SnnTorchSynapsis(nn.Linear(2, 2), 3, scale=1.0)(
            torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long)
        ),
        TypeError,
        "mem must have a floating",
    ),
    (
        "snt-syn-hidden-mem",
        lambda: SnnTorchSynapsis(nn.Linear(2, 2), 3, scale=1.0, init_hidden=True)(
            torch.zeros(1, 2), torch.zeros(1, 2)
        ),
        TypeError,
        "`mem` should not be passed",
    ),
    (
        "snt-syn-step-mode",
        lambda: SnnTorchSynapsis(nn.Linear(2, 2), 3, step_mode="m"),
        TypeError,
        "takes no step_mode",
    ),
    (
        "snt-syn-init-hidden-str",
        lambda: SnnTorchSynapsis(nn.Linear(2, 2), 3, init_hidden="yes"),
        TypeError,
        "init_hidden must be",
    ),
    # ---------------------------------------------------------- pure functions
    ("count-T-zero", lambda: eiif_count(X, 0), ValueError, "T must be a positive int"),
    (
        "count-int-x",
        lambda: eiif_count(torch.ones(2, dtype=torch.int64), 3),
        TypeError,
        "x must have a floating",
    ),
    ("spikes-T-float", lambda: eiif_spikes_from_counts(X, 2.0), TypeError, "T must be a positive int"),
]


@pytest.mark.parametrize(("make", "exc", "pattern"), [pytest.param(m, e, p, id=i) for i, m, e, p in CASES])
def test_bad_input_is_refused_naming_the_argument(make, exc, pattern):
    with pytest.raises(exc, match=pattern):
        make()


def test_the_table_has_distinct_cases():
    ids = [row[0] for row in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 90


# ------------------------------------------------------------------ loader of approximator files
def _bad_file(tmp_path, tensors=None, meta=None):
    """A copy of the shipped SiLU approximator with some tensors / fields replaced; its stem."""
    from bt_neurons.approximators.builtin import PRETRAINED_DIR

    t = load_file(str(PRETRAINED_DIR / "silu.safetensors"))
    m = json.loads((PRETRAINED_DIR / "silu.json").read_text())
    t.update(tensors or {})
    m.update(meta or {})
    save_file({k: v.contiguous() for k, v in t.items()}, str(tmp_path / "bad.safetensors"))
    (tmp_path / "bad.json").write_text(json.dumps(m))
    return tmp_path / "bad"


def _silu_tensor(name):
    from bt_neurons.approximators.builtin import PRETRAINED_DIR

    return load_file(str(PRETRAINED_DIR / "silu.safetensors"))[name].clone()


def _with(name, index, value):
    t = _silu_tensor(name)
    t.view(-1)[index] = value
    return t


FILE_CASES = [
    (
        "nan-tail",
        {"right_tail": _with("right_tail", 1, NAN)},
        None,
        r"'right_tail' must be finite, but it contains NaN",
    ),
    (
        "inf-amplitude",
        {"amplitudes": _with("amplitudes", -1, INF)},
        None,
        r"'amplitudes' must be finite.*Inf",
    ),
    ("nan-threshold", {"thresholds": _with("thresholds", 5, NAN)}, None, r"'thresholds' must be finite"),
    ("nan-edge", {"edges": _with("edges", 3, NAN)}, None, r"'edges' must be finite"),
    (
        "threshold-shape",
        {"thresholds": _silu_tensor("thresholds")[:, :4]},
        None,
        r"'thresholds' must have shape \[16, 7",
    ),
    ("tail-shape", {"left_tail": torch.zeros(3)}, None, r"'left_tail' must have shape \[2\]"),
    ("edges-order", {"edges": _silu_tensor("edges").flip(0)}, None, r"'edges' must be strictly increasing"),
    (
        "edges-2d",
        {"edges": _silu_tensor("edges").reshape(1, 17)},
        None,
        r"'edges' must be strictly increasing and 1-D",
    ),
    (
        "int-dtype",
        {"amplitudes": torch.zeros(16, 7, dtype=torch.int32)},
        None,
        r"'amplitudes' must be floating",
    ),
    (
        "timesteps-str",
        None,
        {"timesteps": "sixteen"},
        r'"timesteps" must be an int in \[1, 64\], got .sixteen.',
    ),
    ("timesteps-zero", None, {"timesteps": 0}, r'"timesteps" must be an int'),
    ("timesteps-other", None, {"timesteps": 8}, r"'thresholds' must have shape \[16, 8\]"),
    ("symmetry", None, {"symmetry": "mirror"}, r'"symmetry" must be one of'),
    ("target", None, {"target": 5}, r'"target" must be a string'),
    ("neurons", None, {"neurons": 32}, r'"neurons" is 32 but .* has edges for 16 neurons'),
    ("bias-shape", {"bias": torch.zeros(5)}, None, r"'bias' must have shape \[16\]"),
    ("nan-bias", {"bias": _with("bias", 2, NAN)}, None, r"'bias' must be finite"),
    ("coding", None, {"coding": "unary"}, r'"coding" must be one of'),
]


@pytest.mark.parametrize(
    ("tensors", "meta", "pattern"), [pytest.param(t, m, p, id=i) for i, t, m, p in FILE_CASES]
)
def test_a_broken_approximator_file_is_refused_before_anything_is_built(tmp_path, tensors, meta, pattern):
    stem = _bad_file(tmp_path, tensors, meta)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=pattern):
        NeuronArrayApproximator.load(stem)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # loading changes no file


# ------------------------------------------------------------------ NaN / Inf anywhere, every entry point
@st.composite
def poisoned(draw, min_rank: int = 1, max_rank: int = 3, last: int | None = None, dtypes=None):
    """``(x, bad)``: a random float tensor of a random shape with one NaN / +Inf / -Inf at a random place."""
    rank = draw(st.integers(min_rank, max_rank))
    shape = [draw(st.integers(1, 4)) for _ in range(rank)]
    if last is not None:
        shape[-1] = last
    dtype = draw(st.sampled_from(dtypes or [torch.float32, torch.float64, torch.bfloat16, torch.float16]))
    x = torch.randn(shape).to(dtype)
    bad = draw(st.sampled_from(["NaN", "Inf", "-Inf"]))
    x.view(-1)[draw(st.integers(0, x.numel() - 1))] = {"NaN": NAN, "Inf": INF, "-Inf": -INF}[bad]
    return x, bad.lstrip("-")


ONE_INPUT = {
    "eiif-spike-s": (lambda: EIIFNode(), {}),
    "eiif-spike-m": (lambda: EIIFNode(step_mode="m"), {}),
    "eiif-count": (lambda: EIIFNode(T=4, path="count"), {}),
    "eiif-r-count": (lambda: EIIFNode(r=0.5, T=4, path="count"), {}),
    "cn-spike-m": (lambda: CustomNeuronNode(step_mode="m"), {}),
    "cn-count": (lambda: CustomNeuronNode(T=4, path="count"), {}),
    "quantizer-token": (lambda: Quantizer(qmax=7), {}),
    "quantizer-group": (lambda: Quantizer(qmax=7, group_size=2), {"last": 4}),
    "quantizer-asymmetric": (lambda: Quantizer(4, symmetric=False), {}),
    "quantizer-static-tensor": (lambda: calibrated("tensor"), {}),
    "quantizer-static-channel": (lambda: calibrated("channel"), {"last": 4}),
    "encoder-count": (lambda: EIIFEncoder(Quantizer(qmax=7)), {}),
    "encoder-spike": (lambda: EIIFEncoder(Quantizer(qmax=7), path="spike"), {}),
    "rmsnorm-float": (lambda: SNNRMSNorm(3), {"last": 3}),
    "rmsnorm-spiking": (lambda: spiking_rmsnorm(3), {"last": 3}),
    "approx-count": (silu, {}),
    "approx-spike": (lambda: SiLUApproximator(path="spike"), {}),
    "snntorch-eiif": (lambda: EIIF(), {}),
    "snntorch-custom": (lambda: CustomNeuron(), {}),
    "snntorch-approx": (lambda: SnnTorchApproximator(silu()), {}),
}


@pytest.mark.parametrize("target", list(ONE_INPUT))
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_nan_or_inf_anywhere_in_x_is_refused_on_every_path(target, data):
    make, kw = ONE_INPUT[target]
    min_rank = 2 if target in ("eiif-spike-m", "cn-spike-m", "approx-spike") else 1
    x, bad = data.draw(poisoned(min_rank=min_rank, **kw))
    module = make()
    name = "input_" if target.startswith("snntorch") else "x"
    with pytest.raises(ValueError, match=rf"{name} must be finite, but it contains .*{bad}"):
        module(x)
    if hasattr(module, "reset"):
        functional.reset_net(module)


@pytest.mark.parametrize("path", ["count", "spike"])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_nan_or_inf_in_either_operand_names_it(path, data):
    which = data.draw(st.sampled_from(["x", "y"]))
    op = data.draw(st.sampled_from(["multiply", "matmul", "synapsis", "softmax"]))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64]))
    poison, bad = data.draw(poisoned(min_rank=2, last=4, dtypes=[dtype]))
    clean = torch.randn(poison.shape, dtype=dtype)
    x, y = (poison, clean) if which == "x" else (clean, poison)
    if op == "multiply":
        call = lambda: SNNMultiply(7, path=path)(x, y)  # noqa: E731
    elif op == "matmul":
        call = lambda: SNNMatmul(7, path=path)(x, y)  # noqa: E731
    elif op == "synapsis":
        which = "x"
        call = lambda: Synapsis(linear(4, 3).to(dtype), 7, path=path)(poison)  # noqa: E731
    else:  # softmax: the float mode and the spiking mode refuse alike
        which = "scores"
        softmax = SNNSoftmax() if path == "count" else spiking_softmax()
        call = lambda: softmax(poison)  # noqa: E731
    with pytest.raises(ValueError, match=rf"{which} must be finite, but it contains .*{bad}"):
        call()


# ------------------------------------------------------------------ legal edge cases: the right result
EMPTY_BATCHES = [(0, 4), (2, 0, 4), (0,)]


@pytest.mark.parametrize("shape", EMPTY_BATCHES[:2])
def test_an_empty_batch_gives_an_empty_result_on_both_synapsis_paths(shape):
    lin = linear()
    for pre in (None, Quantizer(qmax=15, group_size=2)):
        outs = [Synapsis(lin, path=p, pre_quantizer=pre)(torch.zeros(shape)) for p in ("count", "spike")]
        assert all(o.shape == (*shape[:-1], 3) for o in outs)
        assert torch.equal(outs[0], outs[1])
    spikes = Synapsis(lin, path="spike").spikes(torch.zeros(shape))
    assert spikes.shape == (15, *shape[:-1], 3)


@pytest.mark.parametrize(
    ("make", "y", "reference"),
    [
        (lambda p: SNNMultiply(7, path=p), torch.zeros(0, 4), lambda x, y: x * y),
        (lambda p: SNNMatmul(7, path=p), torch.zeros(5, 4), lambda x, y: x @ y.T),
        (lambda p: SNNMatmul(7, path=p, transpose_y=False), torch.zeros(4, 5), lambda x, y: x @ y),
    ],
    ids=["multiply", "matmul", "matmul-pv"],
)
def test_an_empty_batch_gives_an_empty_result_on_both_operator_paths(make, y, reference):
    x = torch.zeros(0, 4)
    outs = [make(p)(x, y) for p in ("count", "spike")]
    assert outs[0].shape == outs[1].shape == reference(x, y).shape
    assert outs[0].numel() == 0 and torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("shape", EMPTY_BATCHES)
def test_an_empty_batch_gives_an_empty_result_for_every_neuron_and_norm(shape):
    x = torch.zeros(shape)
    seq = torch.zeros(3, *shape)
    results = [
        (EIIFNode(step_mode="m")(seq).sum(0), EIIFNode(T=3, path="count")(x)),
        (CustomNeuronNode(step_mode="m")(seq).sum(0), CustomNeuronNode(T=3, path="count")(x)),
        (SiLUApproximator(path="spike")(torch.zeros(SILU_T, *shape)).sum(0), silu()(x)),
        (EIIFEncoder(Quantizer(qmax=7), path="spike")(x), EIIFEncoder(Quantizer(qmax=7))(x)),
        (spiking_softmax()(x), SNNSoftmax()(x)) if shape[-1] else (x, x),
        (spiking_rmsnorm(shape[-1])(x), SNNRMSNorm(shape[-1])(x)) if shape[-1] else (x, x),
        (EIIF()(x)[0], x),
    ]
    for spike, count in results:
        assert spike.shape == count.shape == x.shape and torch.equal(spike.detach(), count.detach())


SILU_T = 7  # steps per neuron of the shipped SiLU


def test_rank_zero_is_one_neuron_on_both_paths_as_in_spikingjelly():
    assert SiLUApproximator().T == SILU_T
    for v in (-2.3, -0.4, 0.0, 0.7, 3.6):
        x = torch.tensor(v)
        assert torch.equal(EIIFNode()(x), EIIFNode()(x.reshape(1))[0])
        assert torch.equal(EIIFNode(step_mode="m")(x.expand(5)).sum(0), EIIFNode(T=5, path="count")(x))
        cn = CustomNeuronNode(amp_pos=0.5, step_mode="m")
        assert torch.equal(cn(x.expand(4)).sum(0), CustomNeuronNode(amp_pos=0.5, T=4, path="count")(x))
        # (the spike path sums in float32, the count path in float64: equal up to rounding)
        assert torch.allclose(SiLUApproximator(path="spike")(x.expand(SILU_T)).sum(0), silu()(x), atol=1e-6)
        face = SnnTorchApproximator(silu())
        step, total = face.init_approximator(), torch.tensor(0.0)
        for _ in range(SILU_T):
            spk, step = face(x, step)
            total = total + spk
        assert torch.allclose(total, silu()(x), atol=1e-6)
        wrapper = EIIF()
        mem, total = wrapper.init_eiif(), torch.tensor(0.0)
        for _ in range(5):
            spk, mem = wrapper(x, mem)
            total = total + spk
        assert torch.equal(total, EIIFNode(T=5, path="count")(x))
        q = calibrated("tensor")
        assert torch.equal(q(x), q(x.reshape(1))[0])  # per-tensor scales: any rank, as quantize_per_tensor


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_synapsis_matches_float32_on_both_paths(dtype):
    torch.manual_seed(1)
    lin = linear(16, 8)
    x = torch.randn(5, 16)
    reference = Synapsis(lin, 15)(x)
    half = nn.Linear(16, 8).to(dtype)
    half.load_state_dict(lin.to(dtype).state_dict())
    lin.float()
    outs = [Synapsis(half, 15, path=p)(x.to(dtype)) for p in ("count", "spike")]
    for out in outs:
        assert out.dtype == dtype
        step = Quantizer(qmax=15).scales(reference)[0]  # one level of the output
        assert ((out.float() - reference).abs() <= 2 * step + 0.02 * reference.abs()).all()
    assert torch.allclose(outs[0].float(), outs[1].float(), rtol=0.02, atol=float(2 * step.max()))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_an_all_zero_token_quantizes_to_zero_in_every_dtype(dtype):
    x = torch.zeros(2, 3, dtype=dtype)
    for q in (
        Quantizer(),
        Quantizer(qmax=7, group_size=3),
        Quantizer(4, symmetric=False),
        Quantizer(eps=1e-300),
    ):
        assert torch.equal(q(x), x), q
        assert torch.equal(q.fake_quantize_(x.clone()), x)
    lin = linear(3, 3).to(dtype)
    for path in ("count", "spike"):
        out = Synapsis(lin, 7, path=path)(x)
        assert torch.isfinite(out).all()


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_an_empty_channel_axis_quantizes_to_an_empty_result():
    assert Quantizer()(torch.zeros(2, 0)).shape == (2, 0)
    lin = linear(0, 3)
    assert torch.equal(
        Synapsis(lin, path="count")(torch.zeros(2, 0)), Synapsis(lin, path="spike")(torch.zeros(2, 0))
    )


@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-8, 1e-5, 1e-4, 1e-3, 1.0, 1e3])
def test_spiking_rmsnorm_of_tiny_or_zero_tokens_equals_rmsnorm(scale):
    # before, a zero token raised 'x must be finite' (eps / 0) and a token of 1e-5 was 16x too large
    x = torch.randn(4, 64) * scale
    spiking, exact = spiking_rmsnorm(64)(x), SNNRMSNorm(64)(x)
    assert torch.isfinite(spiking).all()
    assert torch.allclose(spiking, exact, rtol=0.02, atol=1e-6 * float(exact.detach().abs().max()) + 1e-30)


def test_square_range_inside_the_supported_interval_keeps_the_error_small():
    x = torch.randn(16, 64)
    exact = SNNRMSNorm(64)(x)
    for r in (2.0, 4.0, 16.0):
        square, rsqrt = square_rsqrt()
        y = SNNRMSNorm(64, mode="spiking", square=square, rsqrt=rsqrt, square_range=r)(x)
        assert float((y - exact).detach().norm() / exact.detach().norm()) < 0.01


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), bad=st.sampled_from(["NaN", "Inf"]))
def test_the_snntorch_face_refuses_a_mem_that_does_not_fit(shape, bad):
    x = torch.randn(shape)
    wrong = torch.zeros([s + 1 for s in shape])
    with pytest.raises(ValueError, match=r"mem must have the shape of input_"):
        EIIF()(x, wrong)
    poisoned_mem = torch.zeros(shape)
    poisoned_mem.view(-1)[-1] = NAN if bad == "NaN" else INF
    with pytest.raises(ValueError, match=rf"mem must be finite, but it contains {bad}"):
        CustomNeuron()(x, poisoned_mem)
    spk, mem = EIIF()(x, EIIF().init_eiif())  # an empty mem: a new sequence, never an error
    assert spk.shape == mem.shape == x.shape


def test_numeric_arguments_of_any_real_type_are_accepted():
    # NumPy scalars and one-element tensors are numbers; only strings, bools and None are not
    node = EIIFNode(theta_0=np.float32(0.5), alpha=torch.tensor([1.0]), T=np.int64(3), path="count")
    assert node.T == 3 and isinstance(node.T, int)
    assert torch.equal(node(torch.tensor([2.3, -0.7])), torch.tensor([2.0, -1.0]))
    assert Quantizer(bits=np.int32(4), eps=np.float64(1e-6)).qmax == 7
    assert math.isclose(SNNRMSNorm(np.int64(4), eps=np.float32(1e-5)).eps, 1e-5, rel_tol=1e-6)


def test_a_new_sequence_after_reset_net_may_have_any_shape():
    node = EIIFNode(step_mode="m")
    first = node(torch.full((3, 2), 1.6))
    functional.reset_net(node)
    second = node(torch.full((3, 5), 1.6))
    assert torch.equal(first[:, :1].expand(3, 5), second)


def test_outside_their_domain_approximators_follow_their_documented_tails():
    # documented in each class: SiLU 0 below -8 and x above 8; Exp 1 + x above 0, 0 below -16;
    # Reciprocal and RSqrt held at their edge values; no error, no NaN
    x = torch.tensor([-20.0, 20.0])
    assert torch.equal(silu()(x), torch.tensor([0.0, 20.0]))
    exp = load_pretrained("exp")
    assert torch.allclose(exp(torch.tensor([-40.0, 0.5])), torch.tensor([0.0, 1.5]))
    reciprocal = load_pretrained("reciprocal")
    assert torch.allclose(reciprocal(torch.tensor([1e-6, 1e7])), torch.tensor([1e3, 1e-5]))
    rsqrt = load_pretrained("rsqrt")
    assert torch.allclose(rsqrt(torch.tensor([1e-9, 1e6])), torch.tensor([1e3, 1e-2]))
