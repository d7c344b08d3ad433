"""CustomNeuronNode: eq. 14 dynamics, the exact staircase count path, per-step parameters."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from spikingjelly.activation_based import functional, surrogate
from strategies import inputs, shapes

from bt_neurons import CustomNeuron, CustomNeuronNode
from bt_neurons.functional import constant_input_staircase, positive_patterns

params = st.fixed_dictionaries(
    {
        "theta_base": st.floats(0.1, 3.0),
        "alpha": st.one_of(st.just(0.0), st.floats(0.0, 1.5)),
        "decay": st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 1.0)),
        "amp_pos": st.floats(-2.0, 2.0),
        "amp_neg": st.floats(-2.0, 2.0),
        "reset": st.booleans(),
    }
)


def reference(xs: list[float], p: dict, T: int) -> list[float]:
    """Eq. 14 with Python floats (float64)."""
    v, out = 0.0, []
    for t in range(T):
        h = p["decay"] * v + xs[t]
        theta = p["theta_base"] + p["alpha"] * t
        pos, neg = h >= theta, h <= -theta
        out.append(p["amp_pos"] * pos - p["amp_neg"] * neg)
        if p["reset"]:
            h -= theta * (pos - neg)
        v = h
    return out


def f32(p: dict) -> dict:
    return {
        k: (float(torch.tensor(v, dtype=torch.float32)) if isinstance(v, float) else v) for k, v in p.items()
    }


@given(data=st.data(), p=params, T=st.integers(1, 12))
def test_spike_path_matches_equation_14(data, p, T):
    p = f32(p)
    xs = data.draw(st.lists(st.floats(-8, 8, width=32), min_size=T, max_size=T))
    node = CustomNeuronNode(**p, step_mode="m")
    got = node(torch.tensor(xs, dtype=torch.float64).unsqueeze(1))[:, 0].tolist()
    assert got == pytest.approx(reference(xs, p, T), abs=1e-12)


@given(data=st.data(), p=params, T=st.integers(1, 16), shape=shapes)
def test_count_path_equals_spike_path(data, p, T, shape):
    x = data.draw(inputs(shape, scale=2 * (p["theta_base"] + p["alpha"] * T) + 2, specials=[p["theta_base"]]))
    spiking = CustomNeuronNode(**p, step_mode="m")
    out_seq = spiking(x.expand(T, *x.shape))
    total = CustomNeuronNode(**p, T=T, path="count")(x)
    torch.testing.assert_close(total, out_seq.sum(0), rtol=1e-6, atol=1e-6)


@given(data=st.data(), T=st.integers(1, 10), reset=st.booleans())
def test_count_path_equals_spike_path_per_step(data, T, reset):
    offsets = data.draw(st.lists(st.floats(-0.4, 0.4), min_size=T, max_size=T))
    amps = data.draw(st.lists(st.floats(-1, 1), min_size=2 * T, max_size=2 * T))
    node = CustomNeuronNode(alpha=0.2, decay=0.9, reset=reset, T=T, per_step=True, step_mode="m")
    with torch.no_grad():
        node.offsets.copy_(torch.tensor(offsets))
        node.amp_pos.copy_(torch.tensor(amps[:T]))
        node.amp_neg.copy_(torch.tensor(amps[T:]))
    x = data.draw(inputs((5, 3), scale=6.0))
    out_seq = node(x.expand(T, *x.shape))
    counter = CustomNeuronNode(alpha=0.2, decay=0.9, reset=reset, T=T, per_step=True, path="count")
    counter.load_state_dict(node.state_dict())
    torch.testing.assert_close(counter(x), out_seq.sum(0), rtol=1e-6, atol=1e-6)


@given(p=params, T=st.integers(1, 16))
def test_staircase_patterns_are_exact_on_a_dense_grid(p, T):
    node = CustomNeuronNode(**f32(p))
    thr = node.thresholds(T).detach().unsqueeze(0)
    st_ = constant_input_staircase(thr, node.decay.detach().reshape(1), reset=p["reset"])
    x = torch.linspace(0, float(thr.max()) * (T + 2), 4001)
    # include every breakpoint and its float neighbours
    b = st_.breaks[0][torch.isfinite(st_.breaks[0])]
    x = torch.cat([x, b, torch.nextafter(b, torch.zeros_like(b)), torch.nextafter(b, b + 1)])
    pat = positive_patterns(x, thr.expand(len(x), T), node.decay.detach().expand(len(x)), p["reset"])
    assert torch.equal(pat, st_.patterns[0][st_.segment(x)])
    assert bool((st_.breaks[0][1:] >= st_.breaks[0][:-1]).all())


def test_staircase_is_cached_and_invalidated_by_parameter_updates():
    node = CustomNeuronNode(T=6, path="count")
    x = torch.linspace(-5, 5, 11)
    first = node(x)
    assert node.staircase(6) is node.staircase(6)
    with torch.no_grad():
        node.theta_base.fill_(2.0)
    second = node(x)
    assert not torch.equal(first, second)
    ref = CustomNeuronNode(theta_base=2.0, step_mode="m")(x.expand(6, 11)).sum(0)
    assert torch.equal(second.detach(), ref.detach())


def test_default_is_signed_if_neuron_with_soft_reset():
    node = CustomNeuronNode(T=10, path="count")
    x = torch.tensor([-2.5, -0.3, 0.0, 0.35, 1.0, 2.5])
    # an IF neuron with threshold 1 and soft reset fires floor(10 x) times... capped at 10
    expected = torch.sign(x) * torch.clamp(torch.floor(10 * x.abs() + 1e-6), max=10)
    assert torch.equal(node(x).detach(), expected)


def test_gradients_spike_path_reach_every_parameter():
    node = CustomNeuronNode(alpha=0.1, decay=0.9, step_mode="m", surrogate_function=surrogate.ATan())
    x = (torch.randn(8, 4, 6) * 2).requires_grad_()
    node(x).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0
    for name in ("theta_base", "alpha", "decay", "amp_pos", "amp_neg"):
        g = getattr(node, name).grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_gradients_count_path_amplitudes_exact_and_input_ste():
    node = CustomNeuronNode(T=4, path="count", amp_pos=0.5, amp_neg=0.25)
    x = torch.tensor([2.2, -3.4, 0.1], requires_grad=True)
    out = node(x)
    out.sum().backward()
    # d out / d amp_pos = number of positive spikes; d / d amp_neg = -(number of negative spikes)
    n_pos = CustomNeuronNode(T=4, path="count")(torch.tensor([2.2])).item()
    n_neg = -CustomNeuronNode(T=4, path="count")(torch.tensor([-3.4])).item()
    assert node.amp_pos.grad.item() == pytest.approx(n_pos)
    assert node.amp_neg.grad.item() == pytest.approx(-n_neg)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_single_equals_multi_and_reset():
    x_seq = torch.randn(6, 3) * 3
    single = CustomNeuronNode(alpha=0.3, decay=0.7)
    s_out = torch.stack([single(x) for x in x_seq])
    multi = CustomNeuronNode(alpha=0.3, decay=0.7, step_mode="m")
    assert torch.equal(s_out, multi(x_seq))
    functional.reset_net(multi)
    assert multi.t == 0
    assert torch.equal(multi(x_seq), s_out)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_dtypes(dtype):
    x = (torch.randn(5, 4) * 3).to(dtype)
    out = CustomNeuronNode(step_mode="m", amp_pos=0.5)(x.expand(6, *x.shape))
    assert out.dtype == dtype
    total = CustomNeuronNode(T=6, path="count", amp_pos=0.5)(x)
    assert total.dtype == dtype
    torch.testing.assert_close(total.float(), out.float().sum(0))


def test_per_step_runs_out_of_steps():
    node = CustomNeuronNode(T=3, per_step=True, step_mode="m")
    node(torch.zeros(3, 2))
    with pytest.raises(ValueError, match="per-step parameters"):
        node(torch.zeros(1, 2))


def test_paper_alias():
    assert CustomNeuron is CustomNeuronNode
