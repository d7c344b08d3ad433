"""The snnTorch face: calling conventions, equality with the SpikingJelly nodes, resets."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from hypothesis import given
from hypothesis import strategies as st
from snntorch import surrogate as snn_surrogate
from snntorch import utils as snn_utils
from strategies import inputs, rates
from torch import nn

from bt_neurons import CustomNeuronNode, EIIFNode
from bt_neurons.snntorch import EIIF, CustomNeuron, detach_hidden, reset


@given(data=st.data(), T=st.integers(1, 10), r=rates, soft=st.booleans(), alpha=st.floats(0, 2))
def test_eiif_wrapper_bit_identical_to_spikingjelly_node(data, T, r, soft, alpha):
    x = data.draw(inputs((T, 3, 4), scale=6.0, specials=[0.5, 1.5]))
    wrapper = EIIF(alpha=alpha, r=r, reset_mechanism="subtract" if soft else "none")
    mem = wrapper.init_eiif()
    spikes = []
    for t in range(T):
        spk, mem = wrapper(x[t], mem)
        spikes.append(spk)
    node = EIIFNode(alpha=alpha, r=r, soft_reset=soft, step_mode="m")
    assert torch.equal(torch.stack(spikes), node(x))
    assert torch.equal(mem, node.v)


@given(data=st.data(), T=st.integers(1, 10), beta=st.floats(0, 1), reset=st.booleans())
def test_custom_neuron_wrapper_bit_identical_to_spikingjelly_node(data, T, beta, reset):
    x = data.draw(inputs((T, 2, 5), scale=4.0))
    kw = dict(alpha=0.25, amp_pos=0.7, amp_neg=1.3)
    wrapper = CustomNeuron(beta=beta, reset_mechanism="subtract" if reset else "none", **kw)
    mem = wrapper.init_custom()
    outs = []
    for t in range(T):
        out, mem = wrapper(x[t], mem)
        outs.append(out)
    node = CustomNeuronNode(decay=beta, reset=reset, step_mode="m", **kw)
    assert torch.equal(torch.stack(outs), node(x))


def test_fires_on_equality_unlike_snntorch_default():
    wrapper = EIIF()
    spk, _ = wrapper(torch.tensor([0.5, -0.5, 0.4999]), wrapper.init_eiif())
    assert spk.tolist() == [1.0, -1.0, 0.0]


def test_init_hidden_output_and_reset_hidden():
    x = torch.full((2, 3), 1.6)
    neuron = EIIF(init_hidden=True)
    assert neuron(x).tolist() == [[1.0] * 3] * 2  # t=0: 1.6 >= 0.5
    assert neuron(x).tolist() == [[1.0] * 3] * 2  # t=1: 1.6 >= 1.5
    assert neuron(x).tolist() == [[0.0] * 3] * 2  # t=2: 1.6 < 2.5
    neuron.reset_hidden()
    assert neuron.step == 0 and neuron.mem.numel() == 0
    assert neuron(x).tolist() == [[1.0] * 3] * 2
    with pytest.raises(TypeError, match="mem"):
        neuron(x, torch.zeros(2, 3))
    both = EIIF(init_hidden=True, output=True)
    spk, mem = both(x)
    assert spk.shape == mem.shape == x.shape


def test_explicit_state_restarts_with_init_and_shape_change():
    neuron = EIIF()
    x = torch.full((4,), 1.6)
    mem = neuron.init_eiif()
    for _ in range(3):
        spk, mem = neuron(x, mem)
    assert neuron.step == 3 and spk.tolist() == [0.0] * 4
    spk, mem = neuron(x, neuron.init_eiif())
    assert spk.tolist() == [1.0] * 4
    with pytest.raises(ValueError, match=r"mem must have the shape of input_ \(2, 2\), got \(4,\)"):
        neuron(torch.full((2, 2), 1.6), mem)  # a mem of another shape is a mistake, not a restart
    spk, _ = neuron(torch.full((2, 2), 1.6), neuron.init_eiif())  # new shape: a new sequence
    assert neuron.step == 1 and spk.tolist() == [[1.0, 1.0]] * 2
    hidden = EIIF(init_hidden=True)
    hidden(torch.full((4,), 1.6))
    assert hidden(torch.full((2, 2), 1.6)).tolist() == [[1.0, 1.0]] * 2  # hidden state: a new shape restarts
    assert hidden.step == 1


def test_detach_hidden_keeps_value_and_cuts_graph():
    neuron = EIIF(r=0.5, init_hidden=True)
    x = torch.randn(3, requires_grad=True)
    neuron(x)
    assert neuron.mem.requires_grad
    before = neuron.mem.clone()
    detach_hidden(nn.Sequential(neuron))
    assert not neuron.mem.requires_grad and torch.equal(neuron.mem, before)


def make_mixed_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 12),
        EIIF(init_hidden=True, r=0.5, spike_grad=snn_surrogate.fast_sigmoid()),
        nn.Linear(12, 8),
        CustomNeuron(init_hidden=True, beta=0.9),
        nn.Linear(8, 4),
        snn.Leaky(beta=0.9, init_hidden=True),
    )


def run(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    reset(net)
    return torch.stack([net(x[t]) for t in range(x.shape[0])])


def test_usual_training_loop_with_leaky_resets_and_trains():
    torch.manual_seed(1)
    net = make_mixed_net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(5, 8, 6) * 2
    target = torch.randint(0, 4, (8,))
    first = run(net, x).detach()
    # a second pass after reset() is identical: every neuron restarted
    assert torch.equal(run(net, x).detach(), first)
    out = run(net, x)
    loss = nn.functional.cross_entropy(out.sum(0), target)
    opt.zero_grad()
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads[:2])  # the first layer learns through EIIF
    opt.step()


def test_snntorch_utils_reset_alone_restarts_bt_neurons():
    # bt's neurons are snntorch.Leaky subclasses: snnTorch's own reset knows them
    net = make_mixed_net()
    x = torch.randn(3, 8, 6) * 2

    def steps() -> torch.Tensor:
        return torch.stack([net(x[t]) for t in range(x.shape[0])])

    with torch.no_grad():
        snn_utils.reset(net)
        first = steps()
        assert net[1].step == 3 and net[3].step == 3
        snn_utils.reset(net)
        assert net[1].step == 0 and net[3].step == 0
        assert torch.equal(steps(), first)  # the same batch again: every neuron restarted
        steps()  # without a reset the thresholds go on rising: other spikes
        assert net[1].step == 6
    reset(net)  # bt's reset stays, for the approximators' faces
    assert net[1].step == 0


def test_parameters_are_visible_to_optimisers_and_properties():
    neuron = EIIF(learn_threshold=True, learn_alpha=True, learn_r=True)
    assert {n for n, _ in neuron.named_parameters()} == {"node.theta_0", "node.alpha", "node.r"}
    assert neuron.threshold.item() == 0.5 and neuron.alpha.item() == 1.0 and neuron.r.item() == 1.0
    cn = CustomNeuron(beta=0.8)
    assert cn.beta.item() == pytest.approx(0.8) and cn.threshold.item() == 1.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_wrapper_dtypes(dtype):
    neuron = EIIF(r=0.5)
    spk, mem = neuron(torch.randn(4, 3).to(dtype) * 3, neuron.init_eiif())
    assert spk.dtype == dtype and mem.dtype == torch.float32
