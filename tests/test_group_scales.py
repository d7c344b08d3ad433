"""Group scales: one EI_IF scale per token and per group of ``group_size`` channels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bt_neurons import QSynapsis, Quantizer, SNNMultiply, Synapsis, track_spikes
from bt_neurons.synapsis import quantized_linear


def outlier_input(*shape: int, seed: int = 0) -> torch.Tensor:
    """Gaussian values with a few channels 30 times larger (as in LLM activations)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    x[..., :: max(1, shape[-1] // 3)] *= 30
    return x


@settings(max_examples=40)
@given(
    groups=st.integers(1, 6),
    G=st.integers(1, 9),
    rows=st.integers(1, 7),
    qmax=st.integers(1, 40),
    clip=st.sampled_from([1.0, 0.8, 0.55]),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.bfloat16]),
)
def test_each_group_is_quantized_as_a_token_of_its_own(groups, G, rows, qmax, clip, seed, dtype):
    x = outlier_input(2, rows, groups * G, seed=seed).to(dtype)
    grouped = Quantizer(qmax=qmax, group_size=G, clip=clip)
    per_token = Quantizer(qmax=qmax, clip=clip)
    expected = per_token(x.reshape(2, rows, groups, G)).reshape(x.shape)
    assert torch.equal(grouped(x), expected)
    assert torch.equal(grouped.fake_quantize_(x.clone()), expected)
    assert torch.equal(grouped.fake_quantize_(x.transpose(0, 1).clone().transpose(0, 1)), expected)
    q, scale, zero = grouped.quantize(x)
    assert zero is None and scale.shape == x.shape and q.shape == x.shape
    assert torch.equal(q * scale, expected) and q.abs().max() <= qmax
    assert torch.equal(grouped.scales(x)[0], scale)
    # a group as wide as the token is the per-token quantizer
    assert torch.equal(Quantizer(qmax=qmax, group_size=groups * G, clip=clip)(x), per_token(x))


def test_groups_resolve_the_small_channels_next_to_outliers():
    x = outlier_input(64, 256)
    err = {G: (Quantizer(qmax=15, group_size=G)(x) - x).pow(2).mean() for G in (256, 64, 16)}
    assert err[16] < err[64] < err[256]


def test_straight_through_gradient_with_groups():
    x = outlier_input(3, 24).float().requires_grad_()
    q = Quantizer(qmax=7, group_size=8, clip=0.5)
    q(x).sum().backward()
    scale = q.scales(x.detach())[0]
    inside = (x.detach() / scale).abs() <= 7.5
    assert torch.equal(x.grad, inside.float()) and not inside.all()


def test_group_size_bad_arguments():
    with pytest.raises(ValueError, match="group_size must be a positive int"):
        Quantizer(qmax=7, group_size=0)
    with pytest.raises(TypeError, match="group_size must be a positive int"):
        Quantizer(qmax=7, group_size=4.0)
    for kwargs in (
        {"symmetric": False, "bits": 4},
        {"dynamic": False},
        {"granularity": "channel", "dynamic": False},
    ):
        with pytest.raises(ValueError, match="group_size needs dynamic symmetric per-token scales"):
            Quantizer(group_size=4, **kwargs)
    q = Quantizer(qmax=7, group_size=4)
    with pytest.raises(ValueError, match=r"last axis \(6\) must be a multiple of group_size \(4\)"):
        q(torch.randn(2, 6))
    with pytest.raises(ValueError, match="cannot be calibrated"), q.calibrating():
        pass
    with pytest.raises(ValueError, match="must be finite"):
        q(torch.tensor([[1.0, float("nan"), 0.0, 2.0]]))
    assert "group_size=4" in repr(q)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("shape", [(5, 48), (2, 3, 48), (700, 48)])
def test_grouped_synapsis_paths_and_its_qsynapsis_agree(bias, shape):
    torch.manual_seed(0)
    lin = torch.nn.Linear(48, 20, bias=bias).double()
    x = outlier_input(*shape)
    pre = Quantizer(qmax=15, group_size=12, clip=0.9)
    count = Synapsis(lin, 15, post=False, pre_quantizer=pre)
    spike = Synapsis(lin, 15, post=False, pre_quantizer=pre, path="spike")
    twin = QSynapsis(lin, pre, None)
    with torch.no_grad():
        expected = F.linear(pre(x), lin.weight, lin.bias)
        assert torch.equal(count(x), expected) and torch.equal(twin(x), expected)
        assert torch.allclose(spike(x), expected, rtol=1e-12, atol=1e-12)
        assert torch.equal(x, outlier_input(*shape))  # the input is not written
    # with a postsynaptic quantizer too, and through quantized_linear directly
    post = Quantizer(qmax=7)
    with torch.no_grad():
        fused = quantized_linear(x, pre, lin.weight, lin.bias, post=post)
    assert torch.equal(fused, post(expected))


def test_grouped_synapsis_trains_and_counts_its_scaling_as_multiplications():
    lin = torch.nn.Linear(32, 10)
    pre = Quantizer(qmax=7, group_size=8)
    syn = Synapsis(lin, 7, post=False, pre_quantizer=pre)
    x = torch.randn(4, 32, requires_grad=True)
    syn(x).sum().backward()
    assert x.grad is not None and lin.weight.grad is not None
    with torch.no_grad(), track_spikes() as grouped:
        syn(x.detach())
    with torch.no_grad(), track_spikes() as plain:
        Synapsis(lin, 7, post=False)(x.detach())
    # 4 groups: 4 products of a partial sum and its scale per output stay multiplications
    assert plain.macs == 4 * 32 * 10 and grouped.macs == 4 * (32 - 4) * 10


@settings(max_examples=25)
@given(T=st.integers(1, 40), seed=st.integers(0, 2**16), channels=st.booleans())
def test_grouped_snn_multiply_paths_agree_and_decode_the_grouped_operands(T, seed, channels):
    x, y = outlier_input(3, 24, seed=seed), outlier_input(3, 24, seed=seed + 1) * 0.1
    count = SNNMultiply(T, group_size=6, channels=24 if channels else None)
    if channels:
        count.x_channel_scale.uniform_(0.5, 1.0)
        count.y_channel_scale.uniform_(0.5, 1.0)
    spike = SNNMultiply(T, group_size=6, channels=24 if channels else None, path="spike")
    spike.load_state_dict(count.state_dict())
    out = count(x, y)
    assert torch.equal(out, spike(x, y))
    q = Quantizer(qmax=T, group_size=6)
    gx = count.x_channel_scale if channels else 1.0
    gy = count.y_channel_scale if channels else 1.0
    decoded = q(x / gx) * gx * (q(y / gy) * gy)
    assert torch.allclose(out, decoded, rtol=1e-12, atol=1e-300)
    with pytest.raises(ValueError, match="multiple of group_size"):
        SNNMultiply(T, group_size=6)(torch.randn(2, 20), torch.randn(2, 20))
    with pytest.raises(ValueError, match=r"channels \(20\) must be a multiple of group_size \(6\)"):
        SNNMultiply(T, group_size=6, channels=20)
