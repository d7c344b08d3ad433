"""The inference shortcuts of the count path equal the reference operators bit for bit.

The encoded KV cache, one encoding for the synapses that read one input, the compiled gate product,
the one-call quantization kernels and the factored head change how the count path is computed, never
what it computes.
"""

from __future__ import annotations

import pytest
import torch
from bt_neurons.models import BTSpikingForCausalLM
from bt_neurons.models.braintransformers.conversion import calibrate, convert
from bt_neurons.models.braintransformers.evaluation import energy_per_token
from hypothesis import given, settings
from hypothesis import strategies as st
from test_models import ids, logits, returned_cache, tiny_ann

from bt_neurons import SNNMatmul, SNNMultiply, Synapsis, synapses_of_one_input, track_spikes
from bt_neurons.functional import token_quantization as tq
from bt_neurons.functional.count_product import multiply_counts
from bt_neurons.quantizer import Quantizer
from bt_neurons.snn_matmul import exact_dtype

FLOATS = st.sampled_from([torch.float32, torch.float64])


def _x(seed: int, shape, dtype, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * scale


# ------------------------------------------------------------------ kernels
@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 300),
    cols=st.integers(1, 90),
    dtype=FLOATS,
    clips=st.lists(st.sampled_from([1.0, 0.9, 0.61, 0.35]), min_size=1, max_size=3),
)
def test_one_pass_encodings_equal_one_encoder_at_a_time(seed, rows, cols, dtype, clips):
    """Small inputs take the serial kernel, large ones the parallel one: the same bits as the torch code."""
    x = _x(seed, (rows, cols), dtype)
    out = torch.empty(len(clips), rows, cols, dtype=dtype)
    tq.quantize_tokens_many_(x, out, 15, clips)
    for r, c in enumerate(clips):
        ref = x.clone()
        tq.fake_quantize_tokens_(ref, 15, c, compiled=False)
        assert torch.equal(out[r], ref)
        fast = x.clone()
        tq.fake_quantize_tokens_(fast, 15, c)
        assert torch.equal(fast, ref)
    q, s = tq.quantize_tokens(x, 7, clips[0], compiled=False)
    assert torch.equal(tq.encode_tokens(x, 7, clips[0]), torch.cat([q, s], dim=-1))
    q2, s2 = tq.quantize_tokens(x, 7, clips[0])
    assert torch.equal(q2, q) and torch.equal(s2, s)


@pytest.mark.parametrize("rows", [3, 2000])  # the serial and the parallel kernel
def test_one_pass_encodings_refuse_nan_and_write_nothing(rows):
    x = torch.randn(rows, 16)
    x[1, 5] = float("nan")
    out = torch.zeros(2, rows, 16)
    with pytest.raises(ValueError, match="finite"):
        tq.quantize_tokens_many_(x, out, 15, [1.0, 0.5])
    assert bool((out == 0).all())
    y = x.clone()
    with pytest.raises(ValueError, match="finite"):
        tq.fake_quantize_tokens_(y, 15)
    assert torch.equal(y.nan_to_num(7.0), x.nan_to_num(7.0))
    x[1, 5] = float("inf")
    with pytest.raises(ValueError, match="finite"):
        tq.encode_tokens(x, 15)


def test_one_pass_encodings_check_their_output():
    with pytest.raises(ValueError, match="out must be"):
        tq.quantize_tokens_many_(torch.randn(4, 8), torch.empty(1, 4, 8), 15, [1.0, 0.5])


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    rows=st.integers(1, 400),
    groups=st.integers(1, 12),
    G=st.sampled_from([None, 4, 8]),
    dtype=FLOATS,
    channels=st.booleans(),
    T=st.sampled_from([3, 7, 15]),
)
def test_compiled_gate_product_equals_the_operator(seed, rows, groups, G, dtype, channels, T):
    C = groups * (G or 8)
    m = SNNMultiply(T, channels=C if channels else None, group_size=G).to(dtype)
    if channels:
        m.x_channel_scale.uniform_(0.5, 2.0)
        m.y_channel_scale.uniform_(0.3, 3.0)
    m.quantizer.clip_ratio.fill_(0.8)
    x, y = _x(seed, (rows, C), dtype), _x(seed + 1, (rows, C), dtype, 1.0)
    with torch.no_grad():
        assert m._fused(x, y)
        fast = m(x, y)
        m.path = "spike"
        spike = m(x, y)
        m.path = "count"
    xr = x.clone().requires_grad_()
    assert not m._fused(xr, y)  # with autograd: the torch code
    ref = m(xr, y).detach()
    assert torch.equal(fast, ref)
    assert torch.allclose(spike, fast, rtol=1e-6, atol=1e-12)
    assert torch.equal(
        multiply_counts(
            x, y, T, m.quantizer.clip_ratio, m.quantizer.eps, G, m.x_channel_scale, m.y_channel_scale
        ),
        fast,
    )


def test_compiled_gate_product_refuses_nan():
    m = SNNMultiply(7, group_size=4)
    x = torch.randn(3, 8)
    x[0, 0] = float("nan")
    with torch.no_grad(), pytest.raises(ValueError, match="finite"):
        m(x, torch.randn(3, 8))


# ------------------------------------------------------------------ operators
@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    groups=st.sampled_from([1, 2, 3]),
    m=st.integers(1, 5),
    n=st.integers(1, 9),
    transpose_y=st.booleans(),
    path=st.sampled_from(["count", "spike"]),
)
def test_a_product_with_an_encoded_operand_equals_the_product(seed, groups, m, n, transpose_y, path):
    op = SNNMatmul(7, transpose_y=transpose_y, path=path).double()
    kv, d = 2, 6
    x = _x(seed, (1, kv * groups, m, d if transpose_y else n), torch.float64)
    y = _x(seed + 1, (1, kv, n, d), torch.float64)
    ref = op(x, y, groups=groups)
    assert torch.equal(op.product(x, op.encode(y), groups=groups), ref)
    # the encoding of a growing operand is its rows' encodings, one after another
    assert torch.equal(op.encode(y), torch.cat([op.encode(y[..., :1, :]), op.encode(y[..., 1:, :])], dim=-2))


def test_an_encoded_product_passes_the_straight_through_gradient():
    op = SNNMatmul(7)
    x = torch.randn(1, 4, 3, 5, requires_grad=True)
    y = torch.randn(1, 2, 6, 5, requires_grad=True)
    op(x, y, groups=2).sum().backward()
    gx, gy = x.grad.clone(), y.grad.clone()
    x.grad = y.grad = None
    op.product(x, op.encode(y), groups=2, y=y).sum().backward()
    assert torch.equal(x.grad, gx) and torch.equal(y.grad, gy)


def test_half_precision_counts_multiply_in_float32():
    assert exact_dtype(64, 15, torch.bfloat16) == torch.float32
    assert exact_dtype(64, 15, torch.float16) == torch.float32
    assert exact_dtype(2**20, 15, torch.bfloat16) == torch.float64
    assert exact_dtype(64, 15, torch.float32) == torch.float32


def _synapses(n_out=(12, 4, 4), G=4, clips=(1.0, 0.7, 0.45), seed=0):
    torch.manual_seed(seed)
    out = []
    for o, c in zip(n_out, clips, strict=True):
        s = Synapsis(torch.nn.Linear(16, o), 7, post=False, pre_quantizer=Quantizer(qmax=7, group_size=G))
        s.pre.clip_ratio.fill_(c)
        out.append(s)
    return out


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), tokens=st.integers(1, 600), G=st.sampled_from([4, 8, 16]))
def test_synapses_of_one_input_encode_it_once_with_the_same_bits(seed, tokens, G):
    synapses = _synapses(G=G, seed=seed % 7)
    x = _x(seed, (1, tokens, 16), torch.float32)
    with torch.no_grad():
        shared = synapses_of_one_input(synapses, x)
        alone = [s(x) for s in synapses]
    for a, b in zip(shared, alone, strict=True):
        assert torch.equal(a, b)


def test_synapses_of_one_input_fall_back_where_they_must():
    synapses = _synapses()
    x = torch.randn(3, 16, requires_grad=True)
    outs = synapses_of_one_input(synapses, x)  # autograd: each synapse on its own, with its gradient
    sum(o.sum() for o in outs).backward()
    assert x.grad is not None
    seen = []
    handle = synapses[1].register_forward_hook(lambda *a: seen.append(1))
    with torch.no_grad():
        synapses_of_one_input(synapses, x)
    handle.remove()
    assert seen == [1]  # a hooked synapse runs its forward (calibration relies on it)
    with torch.no_grad(), track_spikes() as stats:
        synapses_of_one_input(synapses, x)
    assert stats.spikes > 0
    with pytest.raises(TypeError, match="synapses"):
        synapses_of_one_input([], x)
    with pytest.raises(TypeError, match="synapses"):
        synapses_of_one_input([torch.nn.Linear(16, 2)], x)


# ------------------------------------------------------------------ the model
def test_the_kv_cache_holds_counts_and_scales_and_refuses_another_mode():
    model = convert(tiny_ann(), 7)
    x = ids(1, 6)
    with torch.no_grad():
        out = model(input_ids=x, use_cache=True)
    cache = returned_cache(out)
    d = model.config.head_dim
    keys = cache.layers[0].keys
    assert keys.shape[-1] == d + 1  # counts, then each token's scale
    counts = keys[..., :d]
    assert torch.equal(counts, counts.round()) and counts.abs().max() <= model.config.timesteps
    model.set_spiking(operators={"matmul": "float"})
    with torch.no_grad(), pytest.raises(ValueError, match="KV cache"):
        model(input_ids=x[:, :1], use_cache=True, past_key_values=cache)


def test_calibration_reaches_every_encoder():
    model = convert(tiny_ann(), 7, group_size=4)
    chosen = calibrate(model, ids(1, 12))
    graded = ("o_proj", "down_proj", "lm_head")  # read counts (products) or the mixer's currents: no encoder
    expected = {
        name
        for name, m in model.named_modules()
        if isinstance(m, SNNMatmul | SNNMultiply) or (isinstance(m, Synapsis) and not name.endswith(graded))
    }
    assert "final_mixer" in expected  # the factored head's one encoder
    assert expected <= set(chosen), expected - set(chosen)


@pytest.mark.parametrize("operators", ["hybrid", "spiking"])
@pytest.mark.parametrize("path", ["count", "spike"])
def test_the_factored_head_is_the_untied_head_in_the_ann_s_memory(operators, path, tmp_path):
    ann = tiny_ann(tied=True)
    calib = ids(1, 24, seed=5)
    untied = convert(ann, 7, calib, head="untied", operators=operators, group_size=4, path=path)
    factored = convert(ann, 7, calib, operators=operators, group_size=4, path=path)  # the default
    assert factored.config.tie_word_embeddings and factored.config.final_mixer_mode == "factored"
    size = {k: sum(p.numel() for p in m.parameters()) for k, m in (("u", untied), ("f", factored))}
    vocab, h = ann.config.vocab_size, ann.config.hidden_size
    assert size["u"] - size["f"] == vocab * h - h * h
    x = ids()
    assert torch.allclose(logits(factored, x), logits(untied, x), rtol=1e-4, atol=1e-5)
    # the same synapses and spikes: the energy estimate does not see how the weight is stored
    eu, ef = energy_per_token(untied, x), energy_per_token(factored, x)
    assert ef.spikes == pytest.approx(eu.spikes, rel=1e-6)
    assert ef.additions == pytest.approx(eu.additions, rel=1e-6)
    assert ef.float_macs == pytest.approx(eu.float_macs, rel=1e-6)
    factored.save_pretrained(tmp_path / "f")
    loaded = BTSpikingForCausalLM.from_pretrained(tmp_path / "f", local_files_only=True)
    assert torch.equal(logits(loaded, x), logits(factored, x))


def test_head_options():
    ann = tiny_ann(tied=True)
    assert convert(ann, 7, head="float-mixer").config.final_mixer_mode == "float"
    assert convert(ann, 7, head="spiking-mixer").config.final_mixer_mode == "spiking"
    assert convert(ann, 7, final_mixer=True).config.final_mixer_mode == "spiking"
    with pytest.raises(ValueError, match="head"):
        convert(ann, 7, head="shared")
    with pytest.raises(ValueError, match="final_mixer"):
        convert(ann, 7, head="untied", final_mixer=True)
    x = ids()
    float_mixer = convert(ann, 7, head="float-mixer", operators="float")
    assert torch.allclose(logits(float_mixer, x), logits(ann, x), atol=2e-5, rtol=1e-4)


def test_a_bfloat16_model_runs_and_stays_near_float32():
    model = convert(tiny_ann(), 7, ids(1, 24, seed=5), group_size=4)
    x = ids()
    ref = logits(model, x)
    low = logits(model.to(torch.bfloat16), x)
    assert low.dtype == torch.bfloat16
    assert torch.nn.functional.cosine_similarity(low.float().flatten(), ref.flatten(), dim=0) > 0.98


@pytest.mark.parametrize("operators", ["hybrid", "spiking"])
def test_causal_query_blocks_change_nothing_but_the_softmax_rounding(operators, monkeypatch):
    from bt_neurons.models.braintransformers import modeling

    model = convert(tiny_ann(), 7, ids(1, 24, seed=5), group_size=4, operators=operators).double()
    x = ids(2, 23)
    mask = torch.ones_like(x)
    mask[1, :5] = 0  # left padding: its keys stay masked inside every block
    whole = model(input_ids=x, attention_mask=mask, use_cache=False).logits
    monkeypatch.setattr(modeling, "QUERY_BLOCK", 4)
    with torch.no_grad():
        blocks = model(input_ids=x, attention_mask=mask, use_cache=False).logits
        cached = model(input_ids=x[:, :9], attention_mask=mask[:, :9], use_cache=True)
        rest = model(
            input_ids=x[:, 9:], attention_mask=mask, use_cache=True, past_key_values=returned_cache(cached)
        ).logits
    assert torch.allclose(blocks, whole.detach(), rtol=1e-6, atol=1e-6)
    assert torch.allclose(rest, whole.detach()[:, 9:], rtol=1e-6, atol=1e-6)  # blocks after a cached prefix
