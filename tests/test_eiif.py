"""EIIFNode: dynamics, the two exact paths, step modes, dtypes and gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional, layer, surrogate
from strategies import alphas, inputs, rates, shapes, theta0s, timesteps

from bt_neurons import EIIFNode
from bt_neurons.functional import eiif_count, eiif_spikes_from_counts, eiif_thresholds


def spike_path_counts(node: EIIFNode, x: torch.Tensor, T: int) -> torch.Tensor:
    functional.reset_net(node)
    node.step_mode = "m"
    return node(x.expand(T, *x.shape)).sum(0)


def reference_eiif(x_seq: list[float], theta_0: float, alpha: float, r: float, soft: bool) -> list[int]:
    """Paper eq. 1 written with Python floats, one neuron (float64)."""
    v, out = 0.0, []
    for t, x in enumerate(x_seq):
        h = v + x
        theta = theta_0 + alpha * t
        s = 1 if h >= theta else (-1 if h <= -theta else 0)
        if soft:
            h -= theta * s
        v = h * (1 - r)
        out.append(s)
    return out


@given(data=st.data(), shape=shapes, T=timesteps, theta_0=theta0s, alpha=alphas)
def test_count_path_equals_spike_path_r1(data, shape, T, theta_0, alpha):
    thr = eiif_thresholds(T, theta_0, alpha).tolist()
    x = data.draw(inputs(shape, scale=theta_0 + alpha * T + 2, specials=thr + [0.0]))
    node = EIIFNode(theta_0=theta_0, alpha=alpha)
    counts = EIIFNode(theta_0=theta_0, alpha=alpha, T=T, path="count")(x)
    assert torch.equal(spike_path_counts(node, x, T), counts)
    assert counts.shape == x.shape and counts.dtype == x.dtype
    assert counts.abs().max() <= T


@given(data=st.data(), shape=shapes, T=timesteps, theta_0=theta0s, alpha=alphas, r=rates, soft=st.booleans())
def test_count_path_equals_spike_path_any_r(data, shape, T, theta_0, alpha, r, soft):
    x = data.draw(inputs(shape, scale=3 * (theta_0 + alpha * T) + 2))
    node = EIIFNode(theta_0=theta_0, alpha=alpha, r=r, soft_reset=soft)
    counts = EIIFNode(theta_0=theta_0, alpha=alpha, r=r, soft_reset=soft, T=T, path="count")(x)
    assert torch.equal(spike_path_counts(node, x, T), counts)


@given(data=st.data(), T=timesteps, r=rates, soft=st.booleans(), theta_0=theta0s, alpha=alphas)
def test_spike_path_matches_equations(data, T, r, soft, theta_0, alpha):
    xs = data.draw(st.lists(st.floats(-10, 10, width=32), min_size=T, max_size=T))
    # parameters are stored as float32; the reference uses the same values in float64
    theta_0, alpha, r = (float(torch.tensor(v, dtype=torch.float32)) for v in (theta_0, alpha, r))
    node = EIIFNode(theta_0=theta_0, alpha=alpha, r=r, soft_reset=soft, step_mode="m")
    got = node(torch.tensor(xs, dtype=torch.float64).unsqueeze(1))[:, 0].tolist()
    # float64 on both sides; thresholds via the same formula
    ref = reference_eiif(xs, theta_0, alpha, r, soft)
    assert [int(s) for s in got] == ref


def test_default_count_is_round_half_away_from_zero_clipped():
    T = 5
    x = torch.tensor([-7.0, -2.5, -1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 4.5, 5.0, 99.0])
    expected = torch.clamp(torch.sign(x) * torch.floor(x.abs() + 0.5), -T, T)
    assert torch.equal(eiif_count(x, T), expected)


@given(data=st.data(), shape=shapes, T=timesteps, theta_0=theta0s, alpha=alphas)
def test_count_path_spike_trains(data, shape, T, theta_0, alpha):
    x = data.draw(inputs(shape))
    node = EIIFNode(theta_0=theta_0, alpha=alpha, step_mode="m")
    spikes = node(x.expand(T, *x.shape))
    counts = eiif_count(x, T, theta_0, alpha)
    assert torch.equal(eiif_spikes_from_counts(counts, T), spikes)


@given(data=st.data(), T=st.integers(1, 8), r=rates, soft=st.booleans())
def test_single_step_equals_multi_step(data, T, r, soft):
    x_seq = data.draw(inputs((T, 3, 2), scale=5.0))
    single = EIIFNode(r=r, soft_reset=soft, alpha=0.5)
    s_out = torch.stack([single(x) for x in x_seq])
    multi = EIIFNode(r=r, soft_reset=soft, alpha=0.5, step_mode="m")
    assert torch.equal(s_out, multi(x_seq))
    assert torch.equal(single.v, multi.v)
    assert single.t == multi.t == T


def test_threshold_counts_steps_since_reset_and_reset_net():
    node = EIIFNode(step_mode="m")
    x = torch.full((3, 1), 1.7)  # fires while 1.7 >= 0.5 + t: steps 0 and 1
    assert node(x)[:, 0].tolist() == [1.0, 1.0, 0.0]
    assert node(x)[:, 0].tolist() == [0.0, 0.0, 0.0]  # t = 3, 4, 5: thresholds 3.5+
    functional.reset_net(node)
    assert node.t == 0 and isinstance(node.v, float)
    assert node(x)[:, 0].tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_dtypes(dtype):
    T = 6
    x = (torch.randn(4, 5) * 4).to(dtype)
    node = EIIFNode(step_mode="m", r=0.5)
    spikes = node(x.expand(T, *x.shape))
    assert spikes.dtype == dtype and set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert node.v.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    counts = EIIFNode(r=0.5, T=T, path="count")(x)
    assert counts.dtype == dtype
    assert torch.equal(spikes.float().sum(0), counts.float())
    # the half input is integrated exactly as its float32 upcast
    ref = EIIFNode(step_mode="m", r=0.5)(x.float().expand(T, *x.shape))
    assert torch.equal(spikes.float(), ref)


def test_gradients_reach_inputs_and_parameters_spike_path():
    x = (torch.randn(6, 3, 4) * 2).requires_grad_()
    node = EIIFNode(r=0.5, learnable=True, step_mode="m", surrogate_function=surrogate.ATan())
    node(x).pow(2).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for p in (node.theta_0, node.alpha, node.r):
        assert p.grad is not None and torch.isfinite(p.grad) and p.grad != 0


def test_count_path_straight_through_gradient():
    x = torch.tensor([-9.0, -2.2, -0.2, 0.3, 1.7, 7.9, 12.0], requires_grad=True)
    theta_0 = torch.tensor(0.5, requires_grad=True)
    alpha = torch.tensor(1.0, requires_grad=True)
    eiif_count(x, 8, theta_0, alpha).sum().backward()
    # 1/alpha inside the unsaturated range ((|x| - 0.5) + 0.5 in (0, 8)), 0 outside
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    # relaxed count sign(x) * ((|x| - theta_0) / alpha + 1/2): d/dtheta_0 = -sign(x) / alpha
    assert theta_0.grad.item() == pytest.approx(-(-1 - 1 + 1 + 1 + 1))
    expected_alpha = -sum((abs(v) - 0.5) * math.copysign(1.0, v) for v in [-2.2, -0.2, 0.3, 1.7, 7.9])
    assert alpha.grad.item() == pytest.approx(expected_alpha, rel=1e-5)


def test_node_count_path_gradients_via_module():
    x = (torch.randn(10) * 3).requires_grad_()
    node = EIIFNode(T=4, path="count", learnable=("theta_0", "alpha"))
    node(x).sum().backward()
    assert x.grad.abs().sum() > 0 and node.theta_0.grad is not None and node.alpha.grad is not None
    x2 = (torch.randn(10) * 3).requires_grad_()
    EIIFNode(T=4, r=0.5, path="count")(x2).sum().backward()
    assert torch.isfinite(x2.grad).all() and x2.grad.abs().sum() > 0


def test_inside_seq_to_ann_container_net():
    net = torch.nn.Sequential(
        layer.SeqToANNContainer(torch.nn.Linear(8, 16)),
        EIIFNode(step_mode="m"),
        layer.SeqToANNContainer(torch.nn.Linear(16, 3)),
    )
    out = net(torch.randn(5, 2, 8))
    assert out.shape == (5, 2, 3)
    functional.reset_net(net)
    assert net[1].t == 0


def test_store_v_seq():
    node = EIIFNode(step_mode="m", r=0.5, store_v_seq=True)
    node(torch.randn(4, 3))
    assert node.v_seq.shape == (4, 3)
    assert torch.equal(node.v_seq[-1], node.v)


def test_repr_mentions_parameters():
    text = repr(EIIFNode(r=0.25, T=7, path="count"))
    assert "r=0.25" in text and "T=7" in text and "count" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_paths_agree_with_cpu():
    x = torch.randn(64, 33) * 6
    T = 9
    cpu = EIIFNode(step_mode="m", r=0.7)(x.expand(T, *x.shape))
    gpu = EIIFNode(step_mode="m", r=0.7).cuda()(x.cuda().expand(T, *x.shape))
    assert torch.equal(cpu, gpu.cpu())
    assert torch.equal(EIIFNode(T=T, path="count").cuda()(x.cuda()).cpu(), EIIFNode(T=T, path="count")(x))


@given(data=st.data(), T=st.integers(1, 12), r=rates, soft=st.booleans(), theta_0=theta0s, alpha=alphas)
def test_autograd_and_inference_spike_paths_agree(data, T, r, soft, theta_0, alpha):
    x_seq = data.draw(inputs((T, 3, 4), scale=8.0, specials=[theta_0, theta_0 + alpha]))
    kw = dict(theta_0=theta_0, alpha=alpha, r=r, soft_reset=soft, step_mode="m")
    with torch.no_grad():
        plain_node = EIIFNode(**kw)
        plain = plain_node(x_seq)
    grad_node = EIIFNode(**kw)
    with_grad = grad_node(x_seq.clone().requires_grad_())
    assert torch.equal(plain, with_grad.detach())
    assert torch.equal(plain_node.v, grad_node.v.detach())


@settings(max_examples=40, deadline=None)
@given(
    T=st.integers(1, 12),
    shape=st.sampled_from([(3,), (2, 4), (1, 2, 3)]),
    soft_reset=st.booleans(),
    detach_reset=st.booleans(),
    surrogate_name=st.sampled_from(["ATan", "Sigmoid", "PiecewiseQuadratic"]),
    keep=st.sampled_from([0.3, 0.5, 1.0]),
    broadcast_v=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_fused_multi_step_backward_equals_the_step_loop(
    T, shape, soft_reset, detach_reset, surrogate_name, keep, broadcast_v, seed
):
    """The sequence node (`_EIIFSequence`, used for training with constant thresholds) gives the spikes,
    the membrane and the gradients (inputs and initial membrane) of autograd through `eiif_step`."""
    from bt_neurons.functional.eiif import eiif_multi_step, eiif_step

    g = torch.Generator().manual_seed(seed)
    fn = getattr(surrogate, surrogate_name)()
    x = (torch.randn(T, *shape, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    v_shape = (1,) * (len(shape) - 1) + shape[-1:] if broadcast_v else shape
    v0 = torch.randn(*v_shape, generator=g, dtype=torch.float64).requires_grad_()
    thresholds = torch.linspace(0.5, 1.5, T, dtype=torch.float64)
    k = torch.tensor(keep, dtype=torch.float64)
    w = torch.randn(T, *shape, generator=g, dtype=torch.float64)
    wv = torch.randn(*shape, generator=g, dtype=torch.float64)

    spikes, v = eiif_multi_step(x, v0, thresholds, k, fn, soft_reset=soft_reset, detach_reset=detach_reset)
    fused = torch.autograd.grad((spikes * w).sum() + (v * wv).sum(), (x, v0))
    state, ref_spikes = v0, []
    for t in range(T):
        s, state = eiif_step(
            x[t], state, thresholds[t], k, fn, soft_reset=soft_reset, detach_reset=detach_reset
        )
        ref_spikes.append(s)
    ref_spikes = torch.stack(ref_spikes)
    ref = torch.autograd.grad((ref_spikes * w).sum() + (state * wv).sum(), (x, v0))
    assert torch.equal(spikes, ref_spikes) and torch.equal(v, state)
    for a, b in zip(fused, ref, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
