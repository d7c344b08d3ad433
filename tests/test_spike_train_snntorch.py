"""The snnTorch faces of the spike-train operators: snnTorch's conventions, bit-identical to the SJ nodes."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from bt_neurons.approximators import spiking_softmax
from hypothesis import given
from hypothesis import strategies as st
from snntorch import utils
from spikingjelly.activation_based import functional
from test_spike_train_faces import fire
from torch import nn

import bt_neurons.snntorch as bsnn
from bt_neurons import (
    Quantizer,
    SNNMatmulNode,
    SNNMultiplyNode,
    SpikeTrainOperator,
    Synapsis,
    SynapsisNode,
)


def loop(face, *trains: torch.Tensor, steps: int, **scales):
    """snnTorch's time loop: ``spk, mem = face(*inputs, mem)``."""
    mem = face.init_synapsis()
    outs, mems = [], []
    for t in range(steps):
        inputs = [tr[t] if t < tr.shape[0] else torch.zeros_like(tr[0]) for tr in trains]
        spk, mem = face(*inputs, mem, **scales)
        outs.append(spk)
        mems.append(mem)
    return torch.stack(outs), mems


def sj_steps(node, *trains: torch.Tensor, steps: int, **scales) -> torch.Tensor:
    functional.set_step_mode(node, "s")
    functional.reset_net(node)
    return torch.stack(
        [
            node(*[tr[t] if t < tr.shape[0] else torch.zeros_like(tr[0]) for tr in trains], **scales)
            for t in range(steps)
        ]
    )


@given(
    seed=st.integers(0, 2**16),
    T=st.integers(1, 6),
    path=st.sampled_from(["count", "spike"]),
    post=st.booleans(),
)
def test_snntorch_synapsis_is_the_spikingjelly_node_step_by_step(seed, T, path, post):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, generator=g) * 2
    fc = nn.Linear(5, 4)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    face = bsnn.Synapsis(fc, T, path=path, post=post)
    with torch.no_grad():
        ours, mems = loop(face, spikes, steps=2 * T, scale=scale)
        theirs = sj_steps(SynapsisNode(fc, T, path=path, post=post), spikes, steps=2 * T, scale=scale)
    assert torch.equal(ours, theirs)
    if post:  # mem is the drive of the postsynaptic neurons that fire in window 1
        assert torch.equal(mems[0], torch.zeros(3, 4))
        assert torch.equal(mems[T], face.node.drive)
        assert torch.equal(ours[T:].sum(0) * face.output_scale, Synapsis(fc, T, path=path)(x))


@given(seed=st.integers(0, 2**16), T=st.integers(1, 6), path=st.sampled_from(["count", "spike"]))
def test_snntorch_products_are_the_spikingjelly_nodes_step_by_step(seed, T, path):
    g = torch.Generator().manual_seed(seed)
    a, b, c = (torch.randn(2, 3, 4, generator=g) for _ in range(3))
    q = Quantizer(qmax=T)
    sa, sb, sc = (q.scales(t)[0] for t in (a, b, c))
    fa, fb, fc = fire(a, sa, T), fire(b, sb, T), fire(c, sc, T)
    with torch.no_grad():
        mm, _ = loop(bsnn.SNNMatmul(T, path=path), fa, fb, steps=2 * T, x_scale=sa, y_scale=sb)
        mm_sj = sj_steps(SNNMatmulNode(T, path=path), fa, fb, steps=2 * T, x_scale=sa, y_scale=sb)
        mul, _ = loop(bsnn.SNNMultiply(T, path=path), fa, fc, steps=2 * T, x_scale=sa, y_scale=sc)
        mul_sj = sj_steps(SNNMultiplyNode(T, path=path), fa, fc, steps=2 * T, x_scale=sa, y_scale=sc)
    assert torch.equal(mm, mm_sj) and mm.shape == (2 * T, 2, 3, 3)
    assert torch.equal(mul, mul_sj) and mul.shape == (2 * T, 2, 3, 4)


def test_snntorch_utils_reset_restarts_a_synapsis_with_hidden_state():
    torch.manual_seed(0)
    T = 3
    x = torch.randn(2, 4)
    spikes = fire(x, torch.tensor(0.25), T)
    net = nn.Sequential(bsnn.Synapsis(nn.Linear(4, 3), T, init_hidden=True, scale=0.25))
    assert isinstance(net[0], snn.Leaky)  # snnTorch's own tools see a neuron
    with torch.no_grad():
        first = [net(spikes[t]) for t in range(T)] + [net(torch.zeros(2, 4)) for _ in range(T)]
        assert int(net[0].node.t) == 2 * T
        utils.reset(net)  # snnTorch's reset replaces mem: a new sequence
        second = [net(spikes[t]) for t in range(T)] + [net(torch.zeros(2, 4)) for _ in range(T)]
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
        bsnn.reset(net)
        net(spikes[0])
        assert int(net[0].node.t) == 1


def test_output_true_returns_mem_and_a_foreign_mem_starts_a_new_sequence():
    T = 2
    face = bsnn.Synapsis(nn.Linear(4, 3), T, init_hidden=True, output=True, scale=0.5)
    spk, mem = face(torch.ones(1, 4))
    assert spk.shape == (1, 3) and mem.shape == (1, 3)
    with pytest.raises(TypeError, match="mem.*init_hidden=True"):
        face(torch.ones(1, 4), mem)
    plain = bsnn.Synapsis(nn.Linear(4, 3), T, scale=0.5)
    _, mem = plain(torch.ones(1, 4), plain.init_synapsis())
    _, mem = plain(torch.ones(1, 4), mem)
    assert int(plain.node.t) == 2
    plain(torch.ones(1, 4), torch.zeros(1, 3))  # not the mem it returned: restart
    assert int(plain.node.t) == 1


def test_a_chain_of_snntorch_synapses_reads_the_scale_of_the_layer_before():
    torch.manual_seed(1)
    T = 5
    fc1, fc2 = nn.Linear(6, 4), nn.Linear(4, 2)
    x = torch.randn(3, 6)
    scale = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, scale, T)
    syn1 = bsnn.Synapsis(fc1, T)
    syn2 = bsnn.Synapsis(fc2, T, scale=syn1)
    m1, m2 = syn1.init_synapsis(), syn2.init_synapsis()
    outs = []
    with torch.no_grad():
        for t in range(3 * T):
            s1, m1 = syn1(spikes[t] if t < T else torch.zeros(3, 6), m1, scale=scale)
            s2, m2 = syn2(s1, m2)
            outs.append(s2)
        expected = nn.Sequential(Synapsis(fc1, T), Synapsis(fc2, T))(x)
    assert torch.equal(torch.stack(outs)[2 * T :].sum(0) * syn2.output_scale, expected)


def test_detach_hidden_cuts_the_graph():
    T = 2
    face = bsnn.Synapsis(nn.Linear(4, 3), T, init_hidden=True, path="spike", scale=0.5)
    spikes = torch.ones(T, 1, 4, requires_grad=True)
    face(spikes[0])
    face.detach_hidden()
    face(spikes[1])
    out = face(torch.zeros(1, 4))
    out.sum().backward()
    assert spikes.grad[0].abs().sum() == 0 and spikes.grad[1].abs().sum() > 0


def test_snntorch_faces_refuse_what_does_not_fit():
    with pytest.raises(TypeError, match="no step_mode"):
        bsnn.Synapsis(nn.Linear(2, 2), 3, step_mode="m")
    with pytest.raises(TypeError, match="no step_mode"):
        bsnn.SNNMatmul(3, step_mode="m")
    face = bsnn.Synapsis(nn.Linear(2, 2), 3, scale=1.0)
    with pytest.raises(ValueError, match="reset_mechanism='subtract'.*must stay 'none'"):
        face.reset_mechanism = "subtract"
    with pytest.raises(ValueError, match="spikes must hold spikes"):
        face(torch.full((1, 2), 0.3))
    with pytest.raises(TypeError, match="mem must have a floating-point dtype"):
        face(torch.zeros(1, 2), torch.zeros(1, 2, dtype=torch.long))


def test_from_synapsis_shares_the_layer_and_quantizers():
    T = 4
    syn = Synapsis(nn.Linear(3, 2), T, path="spike")
    face = bsnn.Synapsis.from_synapsis(syn)
    assert face.node.layer is syn.layer and face.node.post_quantizer is syn.post and face.node.path == "spike"
    assert face.node.step_mode == "s"


def test_snntorch_spike_train_operator_is_the_spikingjelly_node():
    torch.manual_seed(2)
    T = 5
    x = torch.randn(2, 6)
    s = Quantizer(qmax=T).scales(x)[0]
    spikes = fire(x, s, T)
    with torch.no_grad():
        ours, _ = loop(bsnn.SpikeTrainOperator(spiking_softmax(), T), spikes, steps=2 * T, scale=s)
        theirs = sj_steps(SpikeTrainOperator(spiking_softmax(), T), spikes, steps=2 * T, scale=s)
    assert torch.equal(ours, theirs) and ours[T:].any()


def test_a_four_window_snntorch_attention_pipeline_is_the_multi_step_block():
    """Q, K, V -> scores -> mix -> readout; each snnTorch layer stepped in its two windows, V replayed."""
    torch.manual_seed(3)
    T, dim = 4, 6
    tokens = torch.rand(3, 5, 7)
    lin = [nn.Linear(7, dim) for _ in range(3)] + [nn.Linear(5 * dim, 4)]
    # the SpikingJelly block, multi-step
    q, k, v = (SynapsisNode(fc, T, scale=0.25) for fc in lin[:3])
    scores = SNNMatmulNode(T, x_scale=q, y_scale=k)
    mix = SNNMatmulNode(T, transpose_y=False, x_scale=scores, y_scale=v)
    readout = SynapsisNode(lin[3], T, post=False)
    s = fire(tokens, torch.tensor(0.25), T)
    with torch.no_grad():
        h = mix(scores(q(s), k(s)), v(s))
        expected = readout(h.flatten(2), scale=mix.output_scale.expand(h.shape[1:]).flatten(1)).sum(0)
    # the same weights in snnTorch faces, one step per call
    fq, fk, fv = (bsnn.Synapsis(fc, T, scale=0.25) for fc in lin[:3])
    fscores = bsnn.SNNMatmul(T, x_scale=fq, y_scale=fk)
    fmix = bsnn.SNNMatmul(T, transpose_y=False, x_scale=fscores)
    freadout = bsnn.Synapsis(lin[3], T, post=False)
    layers = (fq, fk, fv, fscores, fmix, freadout)
    mem = [m.init_synapsis() for m in layers]
    silent = torch.zeros(3, 5, dim)
    v_late, logits = [], 0
    with torch.no_grad():
        for step in range(4 * T):
            window = step // T
            if window < 2:
                s0 = s[step] if window == 0 else torch.zeros_like(s[0])
                a, mem[0] = fq(s0, mem[0])
                b, mem[1] = fk(s0, mem[1])
                c, mem[2] = fv(s0, mem[2])
                if window == 1:
                    v_late.append(c)
                    v_scale = fv.output_scale
            if window in (1, 2):
                sc, mem[3] = fscores(a if window == 1 else silent, b if window == 1 else silent, mem[3])
            if window >= 2:
                v_now = v_late[step - 2 * T] if window == 2 else silent
                hh, mem[4] = fmix(sc if window == 2 else torch.zeros_like(sc), v_now, mem[4], y_scale=v_scale)
            if window == 3:
                scale = fmix.output_scale.expand(hh.shape).flatten(1)
                cur, mem[5] = freadout(hh.flatten(1), mem[5], scale=scale)
                logits = logits + cur
    assert torch.allclose(logits, expected, atol=1e-6)
