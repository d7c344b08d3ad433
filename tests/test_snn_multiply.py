"""SNNMultiply (spiking elementwise product) and the Quantizer's clip ratio."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from bt_neurons import Quantizer, SNNMultiply


@given(
    T=st.integers(1, 40),
    rows=st.integers(1, 5),
    cols=st.integers(1, 17),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([torch.float32, torch.bfloat16, torch.float64]),
)
def test_count_path_equals_spike_path_equals_decoded_product(T, rows, cols, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(rows, cols, generator=g) * 3).to(dtype)
    y = (torch.randn(rows, cols, generator=g) * 0.2).to(dtype)
    count = SNNMultiply(T)(x, y)
    spike = SNNMultiply(T, path="spike")(x, y)
    assert count.dtype == dtype and count.shape == x.shape
    assert torch.equal(count, spike)
    q = Quantizer(qmax=T)
    decoded = q.dequantize(*q.quantize(x)).double() * q.dequantize(*q.quantize(y)).double()
    # bf16: the reference itself rounds three times (two dequantized operands, the product), 2^-8 each
    rtol = 3 * 2**-8 + 1e-3 if dtype == torch.bfloat16 else 1e-6
    assert torch.allclose(count.double(), decoded, rtol=rtol, atol=1e-30)


def test_product_converges_and_is_batch_independent():
    x, y = torch.randn(4, 64), torch.randn(4, 64)
    errors = [((SNNMultiply(T)(x, y) - x * y).norm() / (x * y).norm()).item() for T in (3, 15, 127)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02
    alone = SNNMultiply(15)(x[:1], y[:1])
    assert torch.equal(SNNMultiply(15)(x, y)[:1], alone)


def test_straight_through_gradient():
    x = torch.randn(3, 8, requires_grad=True)
    y = torch.randn(3, 8, requires_grad=True)
    out = SNNMultiply(15)(x, y)
    out.sum().backward()
    assert torch.allclose(x.grad, y.detach()) and torch.allclose(y.grad, x.detach())
    with torch.no_grad():
        assert torch.equal(out, SNNMultiply(15)(x, y))  # the gradient trick adds exactly zero


def test_bad_input():
    m = SNNMultiply(7)
    with pytest.raises(ValueError, match="same shape"):
        m(torch.randn(2, 3), torch.randn(2, 4))
    with pytest.raises(TypeError, match="same dtype"):
        m(torch.randn(2, 3), torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="x must be finite, but it contains NaN"):
        m(torch.tensor([[1.0, float("nan")]]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="y must be finite, but it contains Inf"):  # named: y, not x
        m(torch.ones(1, 2), torch.tensor([[1.0, float("inf")]]))
    with pytest.raises(ValueError, match="timesteps"):
        SNNMultiply(0)
    with pytest.raises(ValueError, match="path"):
        SNNMultiply(3, path="fast")


def test_quantizer_clip_ratio():
    x = torch.tensor([[10.0, 1.0, -0.5, 0.2]])
    q = Quantizer(qmax=7, clip=0.5)
    levels, scale, _ = q.quantize(x)
    assert torch.allclose(scale, torch.tensor([[10.0 * 0.5 / 7]]))
    assert levels[0, 0] == 7  # saturated at qmax
    assert torch.equal(q.fake_quantize_(x.clone()), q(x))  # the in-place path agrees
    assert "clip_ratio" in q.state_dict() and "clip=0.5" in repr(q)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="clip must be a float in"):
            Quantizer(clip=bad)
    for bad in (True, "0.5"):  # not a number: a TypeError
        with pytest.raises(TypeError, match="clip must be a float in"):
            Quantizer(clip=bad)


def test_channel_scales_keep_the_paths_equal_and_help_outlier_channels():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(6, 32, generator=g), torch.randn(6, 32, generator=g)
    x[:, 3] *= 50  # one loud channel sets every token's scale
    plain = SNNMultiply(7)
    scaled = SNNMultiply(7, channels=32)
    scaled.x_channel_scale.copy_(x.abs().amax(0).sqrt() / x.abs().amax(0).sqrt().max())
    spike = SNNMultiply(7, channels=32, path="spike")
    spike.load_state_dict(scaled.state_dict())
    assert torch.equal(scaled(x, y), spike(x, y))
    quiet = [c for c in range(32) if c != 3]
    err = {k: (m(x, y) - x * y)[:, quiet].norm().item() for k, m in (("plain", plain), ("scaled", scaled))}
    assert err["scaled"] < 0.5 * err["plain"], err
    with pytest.raises(ValueError, match="32 channels"):
        scaled(torch.randn(2, 31), torch.randn(2, 31))
    assert "channels=32" in repr(scaled)
