"""The spike-train faces of Synapsis, SNNMatmul and SNNMultiply (SpikingJelly nodes).

One truth: the spike trains an EIIFNode fires for ``x`` give exactly what the
float-input operator gives on ``x``; single step == multi step; the state
follows SpikingJelly's conventions; bad input is refused by name.
"""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from spikingjelly.activation_based import functional, monitor
from torch import nn

from bt_neurons import (
    EIIFNode,
    Quantizer,
    SNNMatmul,
    SNNMatmulNode,
    SNNMultiply,
    SNNMultiplyNode,
    SpikeTrainOperator,
    Synapsis,
    SynapsisNode,
    track_spikes,
)
from bt_neurons.functional import eiif_spikes_from_counts


def fire(x: torch.Tensor, scale: torch.Tensor, T: int) -> torch.Tensor:
    """The spike trains a layer of EIIFNodes fires for ``x / scale`` held for ``T`` steps."""
    return EIIFNode(step_mode="m")((x / scale).expand(T, *x.shape))


def stepped(node, *trains: torch.Tensor, steps: int, **scales) -> torch.Tensor:
    """Step ``node`` in single-step mode ``steps`` times: the trains, then silence."""
    functional.set_step_mode(node, "s")
    functional.reset_net(node)
    outs = []
    for t in range(steps):
        inputs = [tr[t] if t < tr.shape[0] else torch.zeros_like(tr[0]) for tr in trains]
        outs.append(node(*inputs, **scales))
    return torch.stack(outs)


def tensor(draw, *shape: int, scale: float = 3.0) -> torch.Tensor:
    seed = draw(st.integers(0, 2**16))
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


# ------------------------------------------------------------------ Synapsis
@given(
    data=st.data(),
    n=st.integers(1, 4),
    n_in=st.integers(1, 9),
    n_out=st.integers(1, 7),
    T=st.integers(1, 16),
    T_post=st.integers(1, 16),
    path=st.sampled_from(["count", "spike"]),
    bias=st.booleans(),
    kind=st.sampled_from(["token", "static", "group"]),
)
def test_synapsis_node_on_an_eiif_nodes_spikes_is_the_float_synapsis(
    data, n, n_in, n_out, T, T_post, path, bias, kind
):
    x = tensor(data.draw, n, 2, n_in * (2 if kind == "group" else 1))
    torch.manual_seed(data.draw(st.integers(0, 2**16)))  # the weights
    fc = nn.Linear(x.shape[-1], n_out, bias=bias)
    pre = {
        "token": Quantizer(qmax=T),
        "static": Quantizer(qmax=T, dynamic=False, granularity="tensor"),
        "group": Quantizer(qmax=T, group_size=2) if n_in * 2 % 2 == 0 else Quantizer(qmax=T),
    }[kind]
    if kind == "static":
        with pre.calibrating():
            pre(x)
    syn = Synapsis(fc, T, post_timesteps=T_post, pre_quantizer=pre, path=path)
    scale = pre.scales(x)[0]
    spikes = fire(x, scale, T)
    assert torch.equal(spikes, eiif_spikes_from_counts(pre.quantize(x)[0], T))  # the encoding itself
    node = SynapsisNode.from_synapsis(syn)
    with torch.no_grad():
        out = node(spikes) if kind == "static" else node(spikes, scale=scale)
        assert out.shape == (T_post, n, 2, n_out)
        assert torch.equal(out, syn.spikes(x))
        assert torch.equal(out.sum(0) * node.output_scale, syn(x))


@given(
    data=st.data(),
    T=st.integers(1, 8),
    T_post=st.integers(1, 8),
    path=st.sampled_from(["count", "spike"]),
    post=st.booleans(),
)
def test_synapsis_node_single_step_is_multi_step(data, T, T_post, path, post):
    T_post = min(T_post, T)
    x = tensor(data.draw, 3, 5)
    fc = nn.Linear(5, 4)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    kwargs = {"post_timesteps": T_post} if post else {}
    node = SynapsisNode(fc, T, post=post, path=path, **kwargs)
    with torch.no_grad():
        multi = node(spikes, scale=scale)
        multi_scale = node.output_scale
        single = stepped(node, spikes, steps=2 * T, scale=scale)
    if post:  # window 0 integrates, window 1 fires
        assert torch.equal(single[:T], torch.zeros_like(single[:T]))
        assert torch.equal(single[T : T + T_post], multi)
        assert torch.equal(single[T + T_post :], torch.zeros_like(single[T + T_post :]))
        assert torch.equal(node.output_scale, multi_scale)
    else:  # the currents of every step at once
        assert torch.equal(single[:T], multi)
        assert torch.allclose(multi.sum(0), Synapsis(fc, T, post=False, post_timesteps=None)(x), atol=1e-5)


def test_a_chain_of_synapsis_nodes_carries_the_scale_and_equals_the_float_chain():
    torch.manual_seed(0)
    T = 7
    fc1, fc2 = nn.Linear(6, 5), nn.Linear(5, 3)
    x = torch.randn(4, 6) * 2
    float_chain = nn.Sequential(Synapsis(fc1, T), Synapsis(fc2, T))
    scale = Quantizer(qmax=T).scales(x)[0]
    first = SynapsisNode(fc1, T)
    second = SynapsisNode(fc2, T, scale=first)  # reads the scale of first's spikes
    with torch.no_grad():
        out = second(first(fire(x, scale, T), scale=scale))
        assert torch.equal(out.sum(0) * second.output_scale, float_chain(x))
        # single step: three windows (integrate, first fires / second integrates, second fires)
        functional.set_step_mode(nn.Sequential(first, second), "s")
        spikes = fire(x, scale, T)
        steps = []
        for t in range(3 * T):
            step = spikes[t] if t < T else torch.zeros_like(spikes[0])
            steps.append(second(first(step, scale=scale)))
    assert torch.equal(torch.stack(steps)[2 * T :], out)


def test_synapsis_node_state_follows_spikingjelly():
    torch.manual_seed(1)
    T = 4
    x = torch.randn(3, 5)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    node = SynapsisNode(nn.Linear(5, 2), T, step_mode="s")
    net = nn.Sequential(node)  # what reset_net, set_step_mode and monitors walk

    def run():
        return [node(spikes[t], scale=scale) for t in range(T)] + [
            node(torch.zeros(3, 5), scale=scale) for _ in range(T)
        ]

    first = run()
    assert int(node.t) == 2 * T and node.drive is not None
    functional.reset_net(net)  # every memory back to its start
    assert int(node.t) == 0 and node.drive is None and node.acc is None and node.output_scale is None
    assert all(torch.equal(a, b) for a, b in zip(first, run(), strict=True))
    # a new batch size without reset_net starts a new sequence, as SpikingJelly's nodes do
    functional.reset_net(net)
    node(spikes[0], scale=scale)
    other = fire(x[:2], scale[:2], T)
    node(other[0], scale=scale[:2])
    assert int(node.t) == 1
    # set_step_mode switches it, monitors see it, deepcopy keeps it working
    functional.reset_net(net)
    functional.set_step_mode(net, "m")
    mon = monitor.OutputMonitor(net, SynapsisNode)
    out = node(spikes, scale=scale)
    assert len(mon.records) == 1 and torch.equal(mon.records[0], out)
    mon.remove_hooks()
    twin = copy.deepcopy(node)
    assert torch.equal(twin(spikes, scale=scale), out)


def test_detach_net_cuts_the_accumulated_graph():
    torch.manual_seed(2)
    T = 3
    fc = nn.Linear(4, 2)
    node = SynapsisNode(fc, T, step_mode="s", path="spike", scale=0.5)
    spikes = (torch.randint(-1, 2, (T, 2, 4)).float()).requires_grad_()
    node(spikes[0], scale=0.5)
    functional.detach_net(node)
    assert not node.acc[0].requires_grad
    for t in range(1, T):
        node(spikes[t], scale=0.5)
    out = node(torch.zeros(2, 4))
    out.sum().backward()
    assert spikes.grad[0].abs().sum() == 0 and spikes.grad[1:].abs().sum() > 0


def test_synapsis_node_trains_through_spikes_and_post_neurons():
    torch.manual_seed(3)
    T = 6
    fc = nn.Linear(5, 3)
    x = torch.randn(8, 5)
    scale = Quantizer(qmax=T).scales(x)[0]
    drive = (x / scale).expand(T, 8, 5).clone().requires_grad_()
    spikes = EIIFNode(step_mode="m")(drive)
    node = SynapsisNode(fc, T, path="spike")
    loss = node(spikes, scale=scale).sum(0).pow(2).mean()
    loss.backward()
    assert fc.weight.grad is not None and fc.weight.grad.abs().sum() > 0
    assert drive.grad is not None and drive.grad.abs().sum() > 0


def test_activation_is_what_the_post_neurons_encode():
    torch.manual_seed(4)
    T = 8
    fc = nn.Linear(4, 6)
    x = torch.randn(5, 4)
    scale = Quantizer(qmax=T).scales(x)[0]
    node = SynapsisNode(fc, T, activation=nn.SiLU())
    with torch.no_grad():
        out = node(fire(x, scale, T), scale=scale)
        y = Synapsis(fc, T, post=False, post_timesteps=None)(x)
        assert torch.equal(out.sum(0) * node.output_scale, Quantizer(qmax=T)(nn.functional.silu(y)))


def test_track_spikes_counts_the_synapsis_node():
    torch.manual_seed(5)
    T = 5
    fc = nn.Linear(6, 4)
    x = torch.randn(3, 6)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    with torch.no_grad(), track_spikes() as stats:
        out = SynapsisNode(fc, T)(spikes, scale=scale)
    pre, post = spikes.abs().sum().item(), out.abs().sum().item()
    assert stats.spikes == post  # its own neurons' spikes: the input's are the encoder's
    assert stats.additions == pre * 4 + 3 * 4  # every spike adds a weight column; the bias once per output
    assert stats.macs == 3 * 6 * 4


# ------------------------------------------------------------------ products
@given(
    data=st.data(),
    m=st.integers(1, 5),
    n=st.integers(1, 5),
    k=st.integers(1, 6),
    T=st.integers(1, 12),
    path=st.sampled_from(["count", "spike"]),
    transpose_y=st.booleans(),
)
def test_snn_matmul_node_on_spikes_is_snn_matmul(data, m, n, k, T, path, transpose_y):
    x = tensor(data.draw, 2, m, k)
    y = tensor(data.draw, 2, n, k) if transpose_y else tensor(data.draw, 2, k, n)
    q = Quantizer(qmax=T)
    reference = SNNMatmul(T, transpose_y=transpose_y, path=path)(x, y)
    sy = q.scales(y)[0]
    if transpose_y:
        sx = q.scales(x)[0]
        spikes_x, y_scale = fire(x, sx, T), sy
    else:  # SNNMatmul moves y's per-row scale onto x's columns before encoding x
        moved = x * sy.transpose(-1, -2)
        sx = q.scales(moved)[0]
        spikes_x, y_scale = fire(moved, sx, T), 1.0
    node = SNNMatmulNode(T, transpose_y=transpose_y, path=path)
    with torch.no_grad():
        out = node(spikes_x, fire(y, sy, T), x_scale=sx, y_scale=y_scale)
    assert out.shape == (T, 2, m, n)
    assert torch.equal(out.sum(0) * node.output_scale, Quantizer(qmax=T)(reference))


@given(data=st.data(), T=st.integers(1, 8), path=st.sampled_from(["count", "spike"]), post=st.booleans())
def test_snn_matmul_node_single_step_is_multi_step(data, T, path, post):
    x, y = tensor(data.draw, 3, 4), tensor(data.draw, 5, 4)
    sx, sy = Quantizer(qmax=T).scales(x)[0], Quantizer(qmax=T).scales(y)[0]
    sp_x, sp_y = fire(x, sx, T), fire(y, sy, T)
    node = SNNMatmulNode(T, post=post, path=path)
    with torch.no_grad():
        multi = node(sp_x, sp_y, x_scale=sx, y_scale=sy)
        single = stepped(node, sp_x, sp_y, steps=2 * T, x_scale=sx, y_scale=sy)
    assert torch.equal(single[T:] if post else single[:T], multi)


def test_snn_matmul_node_with_scales_along_the_contracted_axis_is_the_decoded_product():
    torch.manual_seed(6)
    T = 9
    p, v = torch.rand(2, 3, 5), torch.randn(2, 5, 4)
    q = Quantizer(qmax=T)
    sp, sv = q.scales(p)[0], q.scales(v)[0]  # v scaled per row: along the contracted axis of P V
    node = SNNMatmulNode(T, transpose_y=False, post=False, path="spike")
    with torch.no_grad():
        out = node(fire(p, sp, T), fire(v, sv, T), x_scale=sp, y_scale=sv).sum(0)
    assert torch.allclose(out, q(p) @ q(v), atol=1e-5)


def test_snn_matmul_node_groups_repeat_the_heads_of_y():
    torch.manual_seed(7)
    T = 5
    x, y = torch.randn(1, 4, 3, 6), torch.randn(1, 2, 3, 6)
    q = Quantizer(qmax=T)
    sx, sy = q.scales(x)[0], q.scales(y)[0]
    node = SNNMatmulNode(T, groups=2)
    with torch.no_grad():
        out = node(fire(x, sx, T), fire(y, sy, T), x_scale=sx, y_scale=sy)
    assert torch.equal(out.sum(0) * node.output_scale, q(SNNMatmul(T)(x, y, groups=2)))


@given(data=st.data(), T=st.integers(1, 12), path=st.sampled_from(["count", "spike"]), group=st.booleans())
def test_snn_multiply_node_on_spikes_is_snn_multiply(data, T, path, group):
    x, y = tensor(data.draw, 3, 2, 4), tensor(data.draw, 3, 2, 4)
    q = Quantizer(qmax=T, group_size=2 if group else None)
    sx, sy = q.scales(x)[0], q.scales(y)[0]
    reference = SNNMultiply(T, path=path, group_size=2 if group else None)(x, y)
    node = SNNMultiplyNode(T, path=path)
    with torch.no_grad():
        out = node(fire(x, sx, T), fire(y, sy, T), x_scale=sx, y_scale=sy)
        assert torch.equal(out.sum(0) * node.output_scale, Quantizer(qmax=T)(reference))
        single = stepped(node, fire(x, sx, T), fire(y, sy, T), steps=2 * T, x_scale=sx, y_scale=sy)
    assert torch.equal(single[T:], out)


def test_a_product_node_reads_the_scales_of_the_layers_that_fired():
    torch.manual_seed(8)
    T = 6
    x = torch.randn(2, 3, 4)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    q_proj, k_proj = SynapsisNode(nn.Linear(4, 4), T), SynapsisNode(nn.Linear(4, 4), T)
    scores = SNNMatmulNode(T, x_scale=q_proj, y_scale=k_proj)
    with torch.no_grad():
        out = scores(q_proj(spikes, scale=scale), k_proj(spikes, scale=scale))
        qf, kf = Synapsis(q_proj.layer, T)(x), Synapsis(k_proj.layer, T)(x)
    assert torch.equal(out.sum(0) * scores.output_scale, Quantizer(qmax=T)(SNNMatmul(T)(qf, kf)))


# ----------------------------------------------------------------- bad input
def test_bad_spike_trains_are_refused_by_name():
    T = 3
    node = SynapsisNode(nn.Linear(4, 2), T, scale=0.5)
    with pytest.raises(ValueError, match="spikes must hold spikes.*0.5"):
        node(torch.full((T, 2, 4), 0.5))
    with pytest.raises(ValueError, match="T=3 steps"):
        node(torch.zeros(T + 1, 2, 4))
    with pytest.raises(ValueError, match="4 features"):
        node(torch.zeros(T, 2, 5))
    with pytest.raises(TypeError, match="spikes must have a floating-point dtype"):
        node(torch.zeros(T, 2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="scale is missing"):
        SynapsisNode(nn.Linear(4, 2), T)(torch.zeros(T, 2, 4))
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        node(torch.zeros(T, 2, 4), scale=torch.zeros(2, 1))
    with pytest.raises(ValueError, match="scale and the spikes"):
        node(torch.zeros(T, 2, 4), scale=torch.ones(3, 1))
    with pytest.raises(TypeError, match="unexpected keyword"):
        node(torch.zeros(T, 2, 4), scales=1.0)
    with pytest.raises(TypeError, match="layer must be an nn.Linear"):
        SynapsisNode(nn.Embedding(4, 2), T)
    with pytest.raises(ValueError, match="post_timesteps needs postsynaptic"):
        SynapsisNode(nn.Linear(4, 2), T, post=False, post_timesteps=3)
    with pytest.raises(ValueError, match="activation .* needs post=True"):
        SynapsisNode(nn.Linear(4, 2), T, post=False, activation=nn.SiLU())
    with pytest.raises(TypeError, match="scale as a module"):
        SynapsisNode(nn.Linear(4, 2), T, scale=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="post_quantizer.qmax"):
        SynapsisNode(nn.Linear(4, 2), T, post_quantizer=Quantizer(qmax=T + 1))


def test_single_step_refuses_a_scale_that_changes_within_a_window():
    node = SynapsisNode(nn.Linear(4, 2), 3, step_mode="s")
    node(torch.zeros(2, 4), scale=torch.ones(2, 1))
    with pytest.raises(ValueError, match="scale changed within a window"):
        node(torch.zeros(2, 4), scale=torch.full((2, 1), 2.0))


def test_spikes_from_a_linked_layer_that_has_not_fired_are_refused():
    first = SynapsisNode(nn.Linear(4, 4), 3)
    second = SynapsisNode(nn.Linear(4, 2), 3, scale=first)
    with pytest.raises(ValueError, match="has not fired yet"):
        second(torch.ones(3, 2, 4))
    assert second(torch.zeros(3, 2, 4)).shape == (3, 2, 2)  # silence needs no scale


def test_bad_product_inputs_are_refused_by_name():
    T = 2
    mm = SNNMatmulNode(T, x_scale=1.0, y_scale=1.0)
    with pytest.raises(ValueError, match="shapes do not match"):
        mm(torch.zeros(T, 3, 4), torch.zeros(T, 5, 3))
    with pytest.raises(ValueError, match="y must hold spikes"):
        mm(torch.zeros(T, 3, 4), torch.full((T, 5, 4), 2.0))
    with pytest.raises(TypeError, match="two spike trains"):
        mm(torch.zeros(T, 3, 4))
    with pytest.raises(ValueError, match="y_scale is missing"):
        SNNMatmulNode(T, x_scale=1.0)(torch.zeros(T, 3, 4), torch.zeros(T, 5, 4))
    with pytest.raises(ValueError, match="same shape"):
        SNNMultiplyNode(T, x_scale=1.0, y_scale=1.0)(torch.zeros(T, 3, 4), torch.zeros(T, 3, 5))
    with pytest.raises(TypeError, match="same dtype"):
        SNNMultiplyNode(T, x_scale=1.0, y_scale=1.0)(
            torch.zeros(T, 3), torch.zeros(T, 3, dtype=torch.float64)
        )


# ------------------------------------------------------------ any operator
@given(data=st.data(), T=st.integers(1, 12), which=st.sampled_from(["softmax", "rmsnorm", "silu"]))
def test_spike_train_operator_is_the_float_operator_on_the_decoded_window(data, T, which):
    from bt_neurons.approximators import SiLUApproximator, spiking_rmsnorm, spiking_softmax

    makers = {"softmax": spiking_softmax, "rmsnorm": lambda: spiking_rmsnorm(6), "silu": SiLUApproximator}
    op = makers[which]()
    x = tensor(data.draw, 3, 6)
    q = Quantizer(qmax=T)
    s = q.scales(x)[0]
    node = SpikeTrainOperator(op, T)
    with torch.no_grad():
        out = node(fire(x, s, T), scale=s)
        assert torch.equal(out.sum(0) * node.output_scale, q(op(q(x))))
        single = stepped(node, fire(x, s, T), steps=2 * T, scale=s)
    assert torch.equal(single[T:], out) and not single[:T].any()


def test_spike_train_operator_refuses_what_it_cannot_do():
    with pytest.raises(TypeError, match="operator must be callable"):
        SpikeTrainOperator("softmax", 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'post'"):
        SpikeTrainOperator(nn.Softmax(-1), 3, post=False)
    with pytest.raises(ValueError, match="spikes must hold spikes"):
        SpikeTrainOperator(nn.Softmax(-1), 3, scale=1.0)(torch.full((3, 2, 4), 0.5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_faces_keep_the_dtype_and_equal_the_float_operators(dtype):
    torch.manual_seed(9)
    T = 6
    x = torch.randn(3, 5, dtype=dtype)
    q = Quantizer(qmax=T)
    s = q.scales(x)[0]
    spikes = fire(x, s, T)
    assert spikes.dtype == dtype
    if dtype == torch.float64:  # a Synapsis computes in its weight's dtype
        fc = nn.Linear(5, 4).to(dtype)
        node = SynapsisNode(fc, T)
        with torch.no_grad():
            out = node(spikes, scale=s)
        assert out.dtype == dtype
        assert torch.equal(out.sum(0) * node.output_scale, Synapsis(fc, T)(x))
    y = torch.randn(3, 5, dtype=dtype)
    sy = q.scales(y)[0]
    mul = SNNMultiplyNode(T)
    with torch.no_grad():
        out = mul(spikes, fire(y, sy, T), x_scale=s, y_scale=sy)
    assert out.dtype == dtype
    assert torch.equal(out.sum(0) * mul.output_scale, q(SNNMultiply(T)(x, y)))
