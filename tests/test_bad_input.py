"""Every mistake a user can make gets a clear exception that names the argument."""

from __future__ import annotations

import pytest
import torch

from bt_neurons import CustomNeuronNode, EIIFNode
from bt_neurons.functional import constant_input_staircase
from bt_neurons.snntorch import EIIF, CustomNeuron


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (dict(theta_0=0.0), ValueError, "theta_0 must be finite and > 0"),
        (dict(theta_0=-1.0), ValueError, "theta_0"),
        (dict(theta_0=float("nan")), ValueError, "theta_0"),
        (dict(alpha=-0.1), ValueError, "alpha must be finite and >= 0"),
        (dict(r=1.5), ValueError, r"r must lie in \[0, 1\]"),
        (dict(r=-0.1), ValueError, "r must lie"),
        (dict(T=0), ValueError, "T must be a positive int"),
        (dict(T=-3), ValueError, "T must be a positive int"),
        (dict(T=2.5), TypeError, "T must be a positive int"),
        (dict(path="counts"), ValueError, "path must be one of"),
        (dict(path="count"), ValueError, "T must be given"),
        (dict(step_mode="x"), ValueError, "step_mode must be one of"),
        (dict(learnable=("theta",)), ValueError, "learnable must name parameters"),
    ],
)
def test_eiif_constructor(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        EIIFNode(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        (dict(theta_base=0.0), ValueError, "theta_base"),
        (dict(decay=-0.5), ValueError, "decay must be finite and >= 0"),
        (dict(amp_pos=float("inf")), ValueError, "amp_pos must be finite"),
        (dict(T=0), ValueError, "T must be a positive int"),
        (dict(per_step=True), ValueError, "T must be given for per_step"),
        (dict(path="count"), ValueError, "T must be given for path='count'"),
    ],
)
def test_custom_neuron_constructor(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        CustomNeuronNode(**kwargs)


@pytest.mark.parametrize("make", [lambda: EIIFNode(), lambda: CustomNeuronNode()])
def test_rank_zero_single_step_is_one_neuron(make):
    # SpikingJelly's and snnTorch's neurons accept a 0-d input in single-step mode: so do ours
    assert torch.equal(make()(torch.tensor(1.3)), make()(torch.tensor([1.3]))[0])


@pytest.mark.parametrize("make", [lambda: EIIFNode(step_mode="m"), lambda: CustomNeuronNode(step_mode="m")])
def test_wrong_rank_multi_step(make):
    with pytest.raises(ValueError, match=r"x must have shape \[T, N, \*\] or \[T\]"):
        make()(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"x must have at least one time step"):
        make()(torch.ones(0, 4))
    assert torch.equal(make()(torch.full((4,), 0.6)), make()(torch.full((4, 1), 0.6))[:, 0])


@pytest.mark.parametrize(
    "make",
    [
        lambda: EIIFNode(),
        lambda: EIIFNode(T=3, path="count"),
        lambda: CustomNeuronNode(),
        lambda: CustomNeuronNode(T=3, path="count"),
    ],
)
@pytest.mark.parametrize("bad", [torch.ones(2, 3, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool)])
def test_non_floating_dtype(make, bad):
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        make()(bad)


def test_non_tensor_input():
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        EIIFNode()([1.0, 2.0])


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(
    "make",
    [lambda: EIIFNode(), lambda: EIIFNode(T=3, path="count"), lambda: CustomNeuronNode(T=3, path="count")],
)
def test_non_finite_input(make, value):
    x = torch.tensor([1.0, value])
    with pytest.raises(ValueError, match="x must be finite"):
        make()(x)


def test_count_bad_T():
    with pytest.raises(ValueError, match="T must be a positive int"):
        EIIFNode().count(torch.ones(2), T=0)
    with pytest.raises(ValueError, match="T must be given"):
        EIIFNode().count(torch.ones(2))
    with pytest.raises(ValueError, match="T must be <= 3"):
        CustomNeuronNode(T=3, per_step=True).count(torch.ones(2), T=4)


def test_learnable_parameter_drifting_out_of_range_is_caught():
    node = EIIFNode(learnable=True)
    with torch.no_grad():
        node.theta_0.fill_(-0.1)
    with pytest.raises(ValueError, match="theta_0"):
        node(torch.ones(2))
    node = EIIFNode(learnable=True)
    with torch.no_grad():
        node.r.fill_(1.2)
    with pytest.raises(ValueError, match="r must lie"):
        node(torch.ones(2))


def test_custom_neuron_thresholds_must_stay_positive():
    node = CustomNeuronNode(theta_base=1.0, alpha=-0.4, step_mode="m")
    with pytest.raises(ValueError, match="thresholds theta_t"):
        node(torch.ones(4, 2))  # theta_3 = -0.2


def test_snntorch_wrappers_bad_input():
    with pytest.raises(ValueError, match="reset_mechanism must be one of"):
        EIIF(reset_mechanism="hard")
    with pytest.raises(ValueError, match="reset_mechanism must be one of"):
        CustomNeuron(reset_mechanism="soft")
    with pytest.raises(TypeError, match="graded_spikes_factor"):
        EIIF(graded_spikes_factor="2")
    with pytest.raises(TypeError, match="surrogate_disable must be True or False"):
        CustomNeuron(surrogate_disable=1)
    with pytest.raises(ValueError, match="theta_0"):
        EIIF(threshold=0.0)
    with pytest.raises(ValueError, match="input_ must be finite"):
        EIIF()(torch.tensor([float("nan")]))
    with pytest.raises(TypeError, match="input_ must have a floating-point dtype"):
        EIIF()(torch.tensor([1]))
    assert torch.equal(EIIF()(torch.tensor(1.0))[0], torch.tensor(1.0))  # 0-d: one neuron, as in snnTorch
    with pytest.raises(TypeError, match="mem must have a floating-point dtype"):
        EIIF()(torch.ones(2), torch.ones(2, dtype=torch.int32))


def test_staircase_bad_arguments():
    with pytest.raises(ValueError, match="float32 or float64"):
        constant_input_staircase(torch.ones(1, 3, dtype=torch.float16), torch.ones(1), reset=True)
    with pytest.raises(ValueError, match=r"\[P, T\]"):
        constant_input_staircase(torch.ones(3), torch.ones(1), reset=True)
    with pytest.raises(ValueError, match="must be > 0"):
        constant_input_staircase(torch.tensor([[1.0, 0.0]]), torch.ones(1), reset=True)
    with pytest.raises(ValueError, match="lambda must be >= 0"):
        constant_input_staircase(torch.tensor([[1.0, 2.0]]), -torch.ones(1), reset=True)
