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


# ------------------------------------------------------------- snnTorch's constructor arguments
def _steps(neuron, x: torch.Tensor) -> torch.Tensor:
    mem = neuron.reset_mem()
    out = []
    for t in range(x.shape[0]):
        spk, mem = neuron(x[t], mem)
        out.append(spk)
    return torch.stack(out)


@given(data=st.data(), T=st.integers(1, 8), beta=st.floats(0, 1), alpha=st.floats(0, 1))
def test_eiif_zero_reset_follows_its_equations(data, T, beta, alpha):
    x = data.draw(inputs((T, 2, 3), scale=4.0, specials=[0.5, 1.5])).double()
    got = _steps(EIIF(beta=beta, alpha=alpha, reset_mechanism="zero"), x)
    f32 = lambda value: float(torch.tensor(value, dtype=torch.float32))  # noqa: E731 - the stored parameters
    keep = 1 - f32(1 - beta)
    v, expected = torch.zeros_like(x[0]), []
    for t in range(T):  # H = V + X, S = [H >= th] - [H <= -th], V = (1 - r) H (1 - |S|)
        theta = 0.5 + f32(alpha) * t
        h = v + x[t]
        s = (h >= theta).double() - (h <= -theta).double()
        v = h * (1 - s.abs()) * keep
        expected.append(s)
    assert torch.equal(got, torch.stack(expected))


def test_custom_neuron_zero_reset_empties_the_membrane_of_a_neuron_that_fired():
    cn = CustomNeuron(beta=1.0, threshold=1.0, reset_mechanism="zero")
    x = torch.tensor([0.6, 0.6, 0.6, 0.6])
    mem = cn.reset_mem()
    outs, mems = [], []
    for _ in range(4):
        spk, mem = cn(x[:1], mem)
        outs.append(spk.item())
        mems.append(mem.item())
    assert outs == [0.0, 1.0, 0.0, 1.0]  # 0.6, 1.2 fires and empties, 0.6, 1.2 fires
    assert mems == pytest.approx([0.6, 0.0, 0.6, 0.0])


def test_beta_is_one_minus_r_and_not_both():
    x = torch.randn(6, 2, 3) * 3
    assert torch.equal(_steps(EIIF(beta=0.25, alpha=0.5), x), _steps(EIIF(r=0.75, alpha=0.5), x))
    assert torch.equal(EIIF(beta=0.25).beta, torch.tensor(0.25))
    with pytest.raises(ValueError, match="give r or beta"):
        EIIF(r=0.5, beta=0.5)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        EIIF(beta=1.5)


@pytest.mark.parametrize("make", [lambda **k: EIIF(r=0.5, **k), lambda **k: CustomNeuron(beta=0.8, **k)])
def test_graded_spikes_factor_scales_the_spikes_and_can_learn(make):
    x = torch.randn(5, 2, 3) * 3
    plain = _steps(make(), x)
    graded = make(graded_spikes_factor=0.25, learn_graded_spikes_factor=True)
    out = _steps(graded, x)
    assert torch.equal(out, plain * 0.25)
    assert isinstance(graded.graded_spikes_factor, nn.Parameter)
    out.abs().sum().backward()
    assert graded.graded_spikes_factor.grad is not None and graded.graded_spikes_factor.grad != 0


@pytest.mark.parametrize("cls", [EIIF, CustomNeuron])
def test_surrogate_disable_gives_the_same_spikes_and_no_gradient_to_the_input(cls):
    x = (torch.randn(4, 2, 3) * 3).requires_grad_()
    out = _steps(cls(surrogate_disable=True), x)
    assert torch.equal(out, _steps(cls(), x).detach())
    if out.requires_grad:  # CustomNeuron's learnable amplitudes still learn
        out.sum().backward()
    assert x.grad is None  # no surrogate: nothing reaches the input


@pytest.mark.parametrize("cls", [EIIF, CustomNeuron])
def test_inhibition_lets_only_the_strongest_neuron_of_each_sample_fire(cls):
    x = torch.tensor([[0.9, -2.7, 1.8], [3.1, 0.2, -0.8]])
    spk, _ = cls(inhibition=True)(x)
    free, _ = cls()(x)
    winners = x.abs().argmax(1)
    assert torch.equal(spk.ne(0).sum(1), torch.tensor([1, 1]))
    assert torch.equal(spk[torch.arange(2), winners], free[torch.arange(2), winners])
    with pytest.raises(ValueError, match="inhibition=True needs inputs"):
        cls(inhibition=True)(torch.ones(3))


def test_reset_mechanism_can_be_changed_after_construction_as_in_snntorch():
    eiif = EIIF(r=0.5)
    eiif.reset_mechanism = "subtract"
    assert eiif.node.soft_reset and int(eiif.reset_mechanism_val) == 0
    with pytest.raises(ValueError, match="reset_mechanism"):
        eiif.reset_mechanism = "hard"


@pytest.mark.parametrize("cls", [EIIF, CustomNeuron])
def test_is_an_snntorch_neuron(cls):
    neuron = cls()
    assert isinstance(neuron, snn.Leaky) and isinstance(neuron, snn.SpikingNeuron)
    assert neuron in snn.SpikingNeuron.instances


def test_snntorchs_own_export_to_nir_exports_bt_neurons_exactly():
    pytest.importorskip("nirtorch")
    from snntorch.export_nir import export_to_nir

    from bt_neurons.nir import import_

    net = nn.Sequential(
        nn.Linear(4, 6),
        EIIF(init_hidden=True, alpha=0.0),
        nn.Linear(6, 3),
        EIIF(init_hidden=True, alpha=0.0, beta=0.5),
    )
    graph = export_to_nir(net, torch.ones(3, 4), ignore_dims=[0])
    x = torch.randn(6, 3, 4) * 2
    with torch.no_grad():
        snn_utils.reset(net)
        expected = torch.stack([net(x[t]) for t in range(x.shape[0])])
        assert expected.abs().sum() > 0
        assert torch.equal(import_(graph)(x), expected)
    with pytest.raises(ValueError, match="alpha"):  # a rising threshold has no NIR equivalent
        rising = nn.Sequential(nn.Linear(4, 6), EIIF(init_hidden=True))
        export_to_nir(rising, torch.ones(3, 4), ignore_dims=[0])
