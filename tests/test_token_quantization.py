"""The fused per-token quantization of the count path: compiled kernel == torch == the definition."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import inputs
from torch import Tensor

from bt_neurons import Quantizer, Synapsis
from bt_neurons.functional import eiif_count
from bt_neurons.functional.token_quantization import (
    apply_token_scales,
    fake_quantize_tokens_,
    kernel_available,
    quantize_tokens,
    round_half_away,
    token_scales,
)
from bt_neurons.synapsis import quantized_linear


def reference_round(v: Tensor) -> Tensor:
    """Round half away from zero by definition, in float64 (exact for these dtypes)."""
    w = v.double()
    n = torch.round(w)
    ties = (w - n).abs() == 0.5
    return torch.where(ties, n + torch.sign(w) * ((n.abs() < w.abs()).double()), n).to(v.dtype)


def reference_fake_quantize(x: Tensor, qmax: int, clip: float) -> Tensor:
    """The definition, one unfused torch operation after another."""
    ratio = torch.tensor(clip, dtype=x.dtype) / qmax
    scale = (x.abs().amax(-1, keepdim=True) * ratio).clamp_min(1e-8)
    return reference_round(x / scale).clamp(-qmax, qmax) * scale


def test_numba_kernel_is_what_the_cpu_runs():
    assert kernel_available(torch.zeros(2, 3))
    assert kernel_available(torch.zeros(2, 3, dtype=torch.float64))
    assert not kernel_available(torch.zeros(2, 3, dtype=torch.bfloat16))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_round_half_away_is_exact_on_every_16_bit_float(dtype):
    v = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(dtype)
    v = v[torch.isfinite(v)]
    assert torch.equal(round_half_away(v), reference_round(v))


@given(data=st.data(), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_round_half_away_is_exact_at_and_around_halves(data, dtype):
    k = data.draw(st.integers(-(2**20), 2**20))
    halves = torch.tensor([k + 0.5, 0.5, -0.5, 2.0**22 + 0.5], dtype=dtype)
    v = torch.cat([halves, torch.nextafter(halves, halves + 1), torch.nextafter(halves, halves - 1)])
    v = torch.cat([v, data.draw(inputs((32,), scale=1e4)).to(dtype)])
    assert torch.equal(round_half_away(v), reference_round(v))


@settings(max_examples=60)
@given(
    data=st.data(),
    rows=st.integers(1, 9),
    cols=st.integers(1, 70),
    qmax=st.integers(1, 127),
    clip=st.sampled_from([1.0, 0.9, 0.5, 0.123]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_compiled_kernel_equals_torch_and_the_definition(data, rows, cols, qmax, clip, dtype):
    x = data.draw(inputs((rows, cols), scale=data.draw(st.sampled_from([1e-3, 1.0, 40.0, 3e4])))).to(dtype)
    x[0, 0] = 0.0  # signed zeros and all-zero rows
    if rows > 1:
        x[1] = 0.0
    expect = reference_fake_quantize(x, qmax, clip)
    compiled = fake_quantize_tokens_(x.clone(), qmax, clip)
    plain = fake_quantize_tokens_(x.clone(), qmax, clip, compiled=False, chunk=data.draw(st.integers(1, 300)))
    assert torch.equal(compiled, expect) and torch.equal(plain, expect)
    q, s = quantize_tokens(x, qmax, clip)
    q_plain, s_plain = quantize_tokens(x, qmax, clip, compiled=False)
    assert torch.equal(q, q_plain) and torch.equal(s, s_plain)
    assert torch.equal(q * s, expect)
    assert torch.equal(q, torch.round(q)) and q.abs().max() <= qmax


@given(data=st.data(), qmax=st.integers(1, 40))
def test_levels_are_eiif_counts(data, qmax):
    x = data.draw(inputs((3, 17), scale=50.0))
    q, s = quantize_tokens(x, qmax)
    assert torch.equal(q, eiif_count(x / s, qmax))  # paper eq. 21


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_takes_the_torch_path_and_matches_the_quantizer(dtype):
    x = (torch.randn(5, 33) * 7).to(dtype)
    quant = Quantizer(qmax=15)
    q, scale, _ = quant.quantize(x)
    assert torch.equal(fake_quantize_tokens_(x.clone(), 15), q * scale)
    assert torch.equal(q, reference_round(x / scale).clamp(-15, 15))


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rows_raise(compiled, bad):
    x = torch.randn(4, 10)
    x[2, 3] = bad
    before = x.clone()
    with pytest.raises(ValueError, match="finite"):
        fake_quantize_tokens_(x, 15, compiled=compiled)
    with pytest.raises(ValueError, match="finite"):
        quantize_tokens(x, 15, compiled=compiled)
    if compiled:  # the kernel finds every scale before it writes anything
        assert torch.equal(x[~torch.isnan(before)], before[~torch.isnan(before)])


@pytest.mark.parametrize("compiled", [True, False])
def test_apply_with_columns_equals_slicing(compiled):
    x = torch.randn(6, 40) * 3
    s = token_scales(x, 15)
    full = apply_token_scales(x, s, 15, compiled=compiled)
    part = apply_token_scales(x, s, 15, columns=(7, 29), compiled=compiled)
    assert torch.equal(part, full[:, 7:29])
    levels = apply_token_scales(x, s, 15, columns=(0, 5), dequantize=False, compiled=compiled)
    assert torch.equal(levels * s, full[:, :5])
    with pytest.raises(ValueError, match="columns"):
        apply_token_scales(x, s, 15, columns=(5, 41))
    with pytest.raises(ValueError, match="columns"):
        apply_token_scales(x, s, 15, columns=(9, 3))
    with pytest.raises(ValueError, match="scale must be"):
        apply_token_scales(x, s[:-1], 15, compiled=compiled)
    with pytest.raises(ValueError, match="scale must be"):
        apply_token_scales(x, s.double(), 15, compiled=compiled)
    with pytest.raises(ValueError, match="out must be"):
        apply_token_scales(x, s, 15, out=torch.empty(6, 39), compiled=compiled)
    with pytest.raises(ValueError, match="out must be"):
        apply_token_scales(x, s, 15, out=torch.empty(6, 40, dtype=torch.float64), compiled=compiled)
    with pytest.raises(ValueError, match="out must be x itself"):
        apply_token_scales(x[:, 1:], s, 15, out=x[:, :-1], compiled=compiled)
    levels_in_place = x.clone()
    apply_token_scales(levels_in_place, s, 15, out=levels_in_place, dequantize=False, compiled=compiled)
    assert torch.equal(levels_in_place * s, full)


def test_non_contiguous_and_batched_inputs():
    x = torch.randn(3, 8, 5).transpose(-1, -2)  # [3, 5, 8], not contiguous
    expect = reference_fake_quantize(x, 7, 1.0)
    y = x.clone(memory_format=torch.preserve_format)
    assert torch.equal(fake_quantize_tokens_(y, 7), expect)
    q, s = quantize_tokens(x, 7)
    assert q.shape == x.shape and s.shape == (3, 5, 1) and torch.equal(q * s, expect)
    assert fake_quantize_tokens_(torch.empty(0, 4), 7).shape == (0, 4)


def test_concurrent_calls_from_threads_agree():
    xs = [torch.randn(64, 300) * (i + 1) for i in range(8)]
    expect = [reference_fake_quantize(x, 15, 1.0) for x in xs]
    results: list = [None] * len(xs)

    def work(i: int) -> None:
        for _ in range(20):
            results[i] = fake_quantize_tokens_(xs[i].clone(), 15)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(xs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(torch.equal(r, e) for r, e in zip(results, expect, strict=True))


# --------------------------------------------------------------------------- quantized_linear


@settings(max_examples=25)
@given(
    rows=st.integers(1, 40),
    n_in=st.integers(1, 300),
    n_out=st.integers(1, 50),
    chunk=st.sampled_from([1, 64, 1000, 1 << 17]),
    bias=st.booleans(),
    post=st.booleans(),
)
def test_quantized_linear_equals_the_composition(rows, n_in, n_out, chunk, bias, post):
    torch.manual_seed(rows * 1000 + n_in)
    x = torch.randn(2, rows, n_in) * 4
    lin = nn_linear(n_in, n_out, bias)
    pre, q_post = Quantizer(qmax=15), (Quantizer(qmax=7) if post else None)
    with torch.no_grad():
        fused = quantized_linear(x, pre, lin.weight, lin.bias, post=q_post, chunk=chunk)
        y = F.linear(pre(x), lin.weight, lin.bias)
        assert fused.shape == (2, rows, n_out)
        if x.numel() <= chunk:  # one block: the very same product, so the same bits
            assert torch.equal(fused, q_post(y) if post else y)
        elif not post:  # blocks of input features: only the summation order differs
            assert torch.allclose(fused, y, rtol=1e-5, atol=1e-5 * float(y.abs().max()))
        else:  # a level may flip where y sits on a rounding boundary; the scales agree closely
            assert ((fused - q_post(y)).abs() <= Quantizer(qmax=7).scales(y)[0] * 1.001).all()


def nn_linear(n_in: int, n_out: int, bias: bool) -> torch.nn.Linear:
    return torch.nn.Linear(n_in, n_out, bias=bias)


def test_synapsis_count_path_uses_the_fused_routine_and_equals_its_unfused_self():
    lin = torch.nn.Linear(576, 300)
    x = torch.randn(300, 576)  # 172,800 elements: more than one block
    syn = Synapsis.from_linear(lin, 15)
    with torch.no_grad():
        fused = syn(x)
        unfused = syn.post(F.linear(syn.pre(x), lin.weight, lin.bias))
    scale = syn.post.scales(unfused)[0]
    assert ((fused - unfused).abs() <= scale * 1.001).all()
    # the spike counts (levels) agree; the decoded values may differ in the last bit (count x scale
    # is formed in another order), which is float noise, not a different count
    levels_differ = torch.round(fused / scale) != torch.round(unfused / scale)
    assert levels_differ.float().mean() < 1e-3
    assert torch.allclose(fused, unfused, rtol=1e-6, atol=1e-6 * scale.max().item())


def test_frozen_weight_with_a_trainable_bias_takes_the_differentiable_route():
    lin = torch.nn.Linear(20, 8)
    lin.weight.requires_grad_(False)
    syn = Synapsis.from_linear(lin, 7)
    y = syn(torch.randn(3, 20))
    y.sum().backward()
    assert lin.bias.grad is not None and lin.weight.grad is None


def test_the_compiled_kernels_leave_torchs_thread_count_as_it_was():
    # numba's OpenMP layer shares torch's libgomp: starting it (in a fresh process) reset torch's thread count
    code = (
        "import torch\n"
        "from torch import nn\n"
        "from bt_neurons import Synapsis\n"
        "torch.set_num_threads(1)\n"
        "Synapsis(nn.Linear(64, 32), 7)(torch.randn(8, 64))\n"
        "print(torch.get_num_threads())\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "1"
