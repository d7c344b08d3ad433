"""Spiking transformer operators: Quantizer, QSynapsis, Synapsis, SNNMatmul, SNNSoftmax, SNNRMSNorm."""

from __future__ import annotations

import pytest
import torch
from bt_neurons.approximators import spiking_rmsnorm, spiking_softmax
from hypothesis import given
from hypothesis import strategies as st
from strategies import inputs
from torch import nn

from bt_neurons import (
    QSynapsis,
    Quantizer,
    SNNMatmul,
    SNNRMSNorm,
    SNNSoftmax,
    Synapsis,
    track_spikes,
)
from bt_neurons.functional import eiif_count
from bt_neurons.quantizer import round_half_away
from bt_neurons.synapsis import accumulate_spikes, accumulate_spikes_reference

# --------------------------------------------------------------------------- quantizer


@given(data=st.data())
def test_round_half_away_equals_eiif_count(data):
    T = data.draw(st.integers(1, 40))
    halves = [k + 0.5 for k in range(-T - 1, T + 1)]
    x = data.draw(inputs((64,), scale=T + 3.0, specials=halves))
    nearby = torch.cat([x, torch.nextafter(x, x + 1), torch.nextafter(x, x - 1)])
    assert torch.equal(round_half_away(nearby).clamp(-T, T), eiif_count(nearby, T))


@given(data=st.data(), bits=st.integers(2, 8), shape=st.lists(st.integers(1, 5), min_size=1, max_size=3))
def test_symmetric_quantizer_counts_are_eiif_counts(data, bits, shape):
    x = data.draw(inputs(tuple(shape), scale=50.0))
    quant = Quantizer(bits)
    q, scale, zero = quant.quantize(x)
    assert zero is None and q.abs().max() <= quant.qmax == 2 ** (bits - 1) - 1
    assert torch.equal(q, eiif_count(x / scale, quant.qmax))  # paper eq. 21
    assert torch.equal(quant(x), q * scale)


@given(data=st.data(), bits=st.integers(2, 8))
def test_asymmetric_quantizer_has_a_real_zero_point(data, bits):
    x = data.draw(inputs((4, 9), scale=20.0)) + data.draw(st.floats(-10, 10))
    quant = Quantizer(bits, symmetric=False)
    q, scale, zero = quant.quantize(x)
    assert q.min() >= 0 and q.max() <= 2**bits - 1
    assert torch.equal(zero, torch.round(zero)) and bool(((zero >= 0) & (zero <= 2**bits - 1)).all())
    assert torch.equal(quant.dequantize(torch.broadcast_to(zero, q.shape), scale, zero), torch.zeros_like(q))
    assert ((quant(x) - x).abs() <= scale / 2 * (1 + 1e-5) + 1e-6).all()


def test_static_scales_by_calibration_and_granularities():
    x = torch.randn(8, 6) * torch.arange(1, 7)
    per_channel = Quantizer(4, granularity="channel", dynamic=False)
    with pytest.raises(RuntimeError, match="never calibrated"):
        per_channel(x)
    with per_channel.calibrating():
        assert torch.equal(per_channel(x), x)  # passes through while observing
    assert per_channel.scale.shape == (6,)
    torch.testing.assert_close(per_channel.scale, x.abs().amax(0) / 7)
    tensor = Quantizer(8, granularity="tensor", dynamic=False)
    with tensor.calibrating():
        tensor(x)
        tensor(x * 2)
    torch.testing.assert_close(tensor.scale, (2 * x).abs().max() / 127)
    with pytest.raises(ValueError, match="only allowed with granularity='token'"):
        Quantizer(8, granularity="tensor")
    bad = Quantizer(8, granularity="tensor", dynamic=False)
    with pytest.raises(ValueError, match="calibration data must be finite"), bad.calibrating():
        bad(torch.tensor([1.0, float("inf")]))


def test_straight_through_estimator():
    quant = Quantizer(3, granularity="tensor", dynamic=False)
    with quant.calibrating():
        quant(torch.tensor([-3.0, 3.0]))  # scale 1, levels -3..3
    x = torch.tensor([-5.0, -2.4, 0.3, 3.4, 3.6, 9.0], requires_grad=True)
    quant(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


# --------------------------------------------------------------------------- synapsis


def dyadic_linear(data, n_in: int, n_out: int, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(n_in, n_out, bias=bias)
    w = data.draw(st.lists(st.integers(-32, 32), min_size=n_in * n_out, max_size=n_in * n_out))
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(w, dtype=torch.float32).reshape(n_out, n_in) / 16)
        if bias:
            b = data.draw(st.lists(st.integers(-64, 64), min_size=n_out, max_size=n_out))
            lin.bias.copy_(torch.tensor(b, dtype=torch.float32) / 8)
    return lin


@given(data=st.data(), T=st.sampled_from([1, 3, 7, 15, 31]), n_in=st.integers(1, 9), n_out=st.integers(1, 7))
def test_synapsis_spike_path_equals_count_path_equals_qsynapsis(data, T, n_in, n_out):
    lin = dyadic_linear(data, n_in, n_out, bias=data.draw(st.booleans()))
    # every token's largest |x| is T * 2^e, so its scale is a power of two and all sums are exact
    tokens = data.draw(st.integers(1, 5))
    x = data.draw(inputs((tokens, n_in), scale=1.0))
    exps = torch.tensor(data.draw(st.lists(st.integers(-3, 3), min_size=tokens, max_size=tokens)))
    x[:, 0] = T * torch.pow(2.0, exps.float())
    x[:, 1:] *= x[:, :1].abs()
    qsyn = QSynapsis(lin, Quantizer(qmax=T), Quantizer(qmax=T))
    count = Synapsis.from_qsynapsis(qsyn)
    spike = Synapsis.from_qsynapsis(qsyn, path="spike")
    expected = qsyn(x)
    assert torch.equal(count(x), expected)  # paper eq. 22
    assert torch.equal(spike(x), expected)
    assert torch.equal(spike.spikes(x).sum(0), count.post.quantize(lin(count.pre(x)))[0])


@given(data=st.data())
def test_additions_only_reference_equals_matmul(data):
    lin = dyadic_linear(data, 6, 5, bias=False)
    s = torch.tensor(data.draw(st.lists(st.integers(-1, 1), min_size=4 * 3 * 6, max_size=4 * 3 * 6)))
    s = s.reshape(4, 3, 6).float()
    assert torch.equal(accumulate_spikes_reference(s, lin.weight), accumulate_spikes(s, lin.weight))
    assert torch.equal(accumulate_spikes(s, lin.weight), s.sum(0) @ lin.weight.T)


def test_synapsis_random_weights_paths_agree_closely():
    lin = nn.Linear(64, 48)
    x = torch.randn(3, 11, 64)
    a = Synapsis.from_linear(lin, 15, post=False)(x)
    b = Synapsis.from_linear(lin, 15, post=False, path="spike")(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bias_enters_once():
    lin = nn.Linear(4, 3)
    syn = Synapsis.from_linear(lin, 7, post=False)
    for path in ("count", "spike"):
        syn.path = path
        torch.testing.assert_close(syn(torch.zeros(2, 4)), lin.bias.detach().expand(2, 3))


def test_spiking_embedding_equals_quantized_embedding():
    emb = nn.Embedding(50, 12)
    ids = torch.randint(0, 50, (3, 7))
    assert torch.equal(Synapsis.from_embedding(emb, 15)(ids), QSynapsis.from_embedding(emb, bits=5)(ids))
    assert Synapsis.from_embedding(emb, 15).spikes(ids).shape == (15, 3, 7, 12)


def test_synapsis_gradients_straight_through():
    lin = nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)
    Synapsis.from_linear(lin, 15)(x).pow(2).sum().backward()
    assert x.grad.abs().sum() > 0 and lin.weight.grad.abs().sum() > 0


def test_synapsis_bad_input():
    lin = nn.Linear(8, 4)
    with pytest.raises(ValueError, match="x must have 8 features"):
        Synapsis.from_linear(lin)(torch.randn(2, 7))
    with pytest.raises(ValueError, match="x must be finite"):
        Synapsis.from_linear(lin)(torch.full((2, 8), float("nan")))
    with pytest.raises(TypeError, match="floating-point"):
        Synapsis.from_linear(lin)(torch.ones(2, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="timesteps must be a positive int"):
        Synapsis.from_linear(lin, 0)
    with pytest.raises(ValueError, match="mismatched bit widths"):
        Synapsis(lin, 15, pre_quantizer=Quantizer(8))
    with pytest.raises(ValueError, match="must be symmetric"):
        Synapsis(lin, 255, pre_quantizer=Quantizer(8, symmetric=False))
    with pytest.raises(TypeError, match="nn.Linear or nn.Embedding"):
        Synapsis(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="bits must be an int >= 2"):
        Quantizer(1)
    with pytest.raises(TypeError, match="must be a QSynapsis"):
        Synapsis.from_qsynapsis(lin)


# --------------------------------------------------------------------------- matmul


@given(
    data=st.data(),
    T=st.sampled_from([1, 2, 7, 15]),
    m=st.integers(1, 7),
    n=st.integers(1, 9),
    k=st.integers(1, 6),
    heads=st.sampled_from([(1, 1), (2, 1), (4, 2), (3, 3)]),
    transpose=st.booleans(),
)
def test_matmul_spike_path_equals_count_path_equals_decoded_product(data, T, m, n, k, heads, transpose):
    hq, hk = heads
    x = data.draw(inputs((2, hq, m, k), scale=5.0))
    y = data.draw(inputs((2, hk, n, k) if transpose else (2, hk, k, n), scale=5.0))
    count = SNNMatmul(T, transpose_y=transpose)
    spike = SNNMatmul(T, transpose_y=transpose, path="spike")
    a = count(x, y, groups=hq // hk)
    assert torch.equal(spike(x, y, groups=hq // hk), a)
    # the product of the two decoded matrices
    yy = y.repeat_interleave(hq // hk, dim=-3)
    quant = Quantizer(qmax=T)
    if transpose:
        decoded = quant(x).double() @ quant(yy).double().transpose(-1, -2)
    else:
        qy, sy, _ = quant.quantize(yy)
        decoded = quant(x * sy.transpose(-1, -2)).double() @ qy.double()
    torch.testing.assert_close(a.double(), decoded, rtol=1e-5, atol=1e-5)


def test_matmul_error_falls_with_timesteps():
    q, k = torch.randn(2, 3, 17, 32), torch.randn(2, 3, 23, 32)
    ref = q @ k.transpose(-1, -2)
    errs = [((SNNMatmul(T)(q, k) - ref).norm() / ref.norm()).item() for T in (7, 31, 127)]
    assert errs[0] > errs[1] > errs[2] and errs[2] < 0.01


@pytest.mark.parametrize("transpose", [True, False])
def test_matmul_gradient_is_that_of_the_float_product(transpose):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 8, requires_grad=True)
    y = torch.randn(2, 2, *((6, 8) if transpose else (8, 6)), requires_grad=True)  # 2 kv heads
    g = torch.randn(2, 4, 5, 6)
    out = SNNMatmul(7, transpose_y=transpose)(x, y, groups=2)
    with torch.no_grad():
        assert torch.equal(out, SNNMatmul(7, transpose_y=transpose)(x, y, groups=2))
    (out * g).sum().backward()
    x2, y2 = x.detach().clone().requires_grad_(), y.detach().clone().requires_grad_()
    yy = y2.repeat_interleave(2, dim=-3)
    ((x2 @ (yy.transpose(-1, -2) if transpose else yy)) * g).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(y.grad, y2.grad)


def test_matmul_bad_input():
    mm = SNNMatmul(15)
    with pytest.raises(ValueError, match="shapes do not match"):
        mm(torch.randn(3, 4), torch.randn(5, 6))
    with pytest.raises(TypeError, match="same dtype"):
        mm(torch.randn(3, 4), torch.randn(5, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="groups must be a positive int"):
        mm(torch.randn(1, 2, 3, 4), torch.randn(1, 1, 5, 4), groups=0)
    with pytest.raises(ValueError, match="y must be finite"):
        mm(torch.randn(3, 4), torch.full((5, 4), float("inf")))
    with pytest.raises(ValueError, match="timesteps must be a positive int"):
        SNNMatmul(0)


# --------------------------------------------------------------------------- softmax and rmsnorm


@pytest.fixture(scope="module")
def spiking_sm():
    return spiking_softmax(causal=True)


def test_softmax_float_mode_is_torch_softmax():
    s = torch.randn(2, 5, 9)
    torch.testing.assert_close(SNNSoftmax()(s), torch.softmax(s, -1))


def test_spiking_softmax_is_close_causal_and_normalised(spiking_sm):
    s = torch.randn(2, 3, 6, 11) * 3
    p = spiking_sm(s)
    ref = SNNSoftmax(causal=True)(s)
    assert (p - ref).abs().max() < 0.02
    torch.testing.assert_close(p.sum(-1), torch.ones(2, 3, 6), rtol=0.02, atol=0.02)
    masked = torch.arange(11) > torch.arange(6).unsqueeze(-1) + 5
    assert bool((p[..., masked] == 0).all()) and bool((ref[..., masked] == 0).all())


def test_softmax_bad_input(spiking_sm):
    with pytest.raises(ValueError, match="axis of length 0"):
        SNNSoftmax()(torch.zeros(3, 0))
    with pytest.raises(ValueError, match="needs the exp and reciprocal"):
        SNNSoftmax("spiking")
    with pytest.raises(ValueError, match="at least one key"):
        SNNSoftmax()(torch.randn(2, 4), mask=torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a bool"):
        SNNSoftmax()(torch.randn(2, 4), mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="scores must be finite"):
        spiking_sm(torch.full((2, 2), float("nan")))


def heavy_tailed_states(tokens: int = 64, hidden: int = 576) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.distributions.StudentT(3.0).sample((tokens, hidden))
    outliers = torch.randperm(hidden, generator=g)[:6]
    x[:, outliers] *= 40
    return x


def test_spiking_rmsnorm_close_to_float():
    x = heavy_tailed_states()
    spiking, reference = spiking_rmsnorm(576), SNNRMSNorm(576)
    y, ref = spiking(x), reference(x)
    assert ((y - ref).norm() / ref.norm()) < 0.01
    manual = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(ref, manual)
    y.sum().backward()
    assert spiking.weight.grad is not None and spiking.weight.grad.abs().sum() > 0


def test_rmsnorm_bad_input():
    with pytest.raises(ValueError, match="x must have 8 features"):
        SNNRMSNorm(8)(torch.randn(2, 7))
    with pytest.raises(ValueError, match="needs the square and rsqrt"):
        SNNRMSNorm(8, mode="spiking")
    with pytest.raises(ValueError, match="eps must be finite and > 0"):
        SNNRMSNorm(8, eps=0.0)


# --------------------------------------------------------------------------- properties of all operators


def operators():
    torch.manual_seed(0)
    lin = nn.Linear(16, 12)
    mm = SNNMatmul(15)
    return {
        "quantizer": lambda x: Quantizer(8)(x),
        "qsynapsis": QSynapsis.from_linear(lin, 8),
        "synapsis": Synapsis.from_linear(lin, 15),
        "synapsis-spike": Synapsis.from_linear(lin, 15, path="spike"),
        "matmul": lambda x: mm(x, x * 0.5 + 1),
        "softmax": spiking_softmax(causal=True),
        "rmsnorm": spiking_rmsnorm(16),
    }


@pytest.mark.parametrize("name", list(operators()))
def test_batch_independence(name):
    op = operators()[name]
    a = torch.randn(4, 5, 16)
    b = a.clone()
    b[1:] = torch.randn(3, 5, 16) * 1000  # other sequences with huge values
    assert torch.equal(op(a)[0], op(b)[0])


@pytest.mark.parametrize("name", list(operators()))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dtypes(name, dtype):
    op = operators()[name]
    x = torch.randn(2, 5, 16)
    ref = op(x.to(dtype).float()).float()
    if isinstance(op, QSynapsis | Synapsis):
        op = op.to(dtype)  # a linear layer computes in its own dtype, as nn.Linear does
    y = op(x.to(dtype))
    assert y.dtype == dtype and y.shape == ref.shape
    # bf16 rounding of inputs and weights may move a value across a 4-bit (T = 15) level
    tol = 0.02 if dtype == torch.float32 or name in ("quantizer", "qsynapsis", "softmax", "rmsnorm") else 0.15
    assert (y.float() - ref).abs().max() <= tol * ref.abs().max() + 1e-3


def test_spike_accounting_counts_spikes_and_additions():
    lin = nn.Linear(16, 12)
    syn = Synapsis.from_linear(lin, 15)
    x = torch.randn(3, 16)
    with track_spikes() as stats:
        syn(x)
    pre = syn.pre.quantize(x)[0].abs().sum().item()
    post = syn.post.quantize(lin(syn.pre(x)))[0].abs().sum().item()
    assert stats.spikes == pre + post
    assert stats.additions == pre * 12 + 3 * 12
    assert stats.macs == 3 * 16 * 12
    assert "Synapsis" in stats.by_operator and "ANN / SNN energy" in stats.summary()
    with track_spikes() as nothing:
        pass
    assert nothing.spikes == 0
