"""SpikeGPT as transformers classes: config, WKV numerics, the two exact modes, generation, loading."""

from __future__ import annotations

import math

import pytest
import torch
from bt_neurons.models.spikegpt import (
    SpikeGPTCache,
    SpikeGPTConfig,
    SpikeGPTForCausalLM,
    SpikeGPTModel,
    WKVState,
    bits_per_token,
    cost_per_token,
    original_key_layout,
    wkv_initial_state,
    wkv_sequence,
    wkv_step,
)
from bt_neurons.models.spikegpt.modeling import BranchNeuron
from hypothesis import given, settings
from hypothesis import strategies as st

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM  # noqa: E402  isort: skip

NEURONS = ("lif", "eiif", "none")
VOCAB = 23


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run several times faster on one thread than on two contended ones."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(
    neuron: str = "lif", *, hidden: int = 8, layers: int = 2, seed: int = 0, **kwargs
) -> SpikeGPTForCausalLM:
    """A float64 model whose branches fire (with the default init they barely reach the threshold)."""
    torch.manual_seed(seed)
    cfg = SpikeGPTConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=layers, neuron=neuron, **kwargs
    )
    model = SpikeGPTForCausalLM(cfg).double().eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".weight") and p.dim() == 2 and "emb" not in name:
                p.normal_(0.0, 2.0 / math.sqrt(p.shape[1]))
            elif name.endswith("emb.weight") or name.endswith("head.weight"):
                p.normal_(0.0, 1.0)
    return model


def record_spikes(model: torch.nn.Module) -> tuple[dict[str, list[torch.Tensor]], list]:
    """Forward hooks collecting every branch neuron's output spikes ``[B, T, d]`` per call."""
    seen: dict[str, list[torch.Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, BranchNeuron):

            def hook(mod, args, out, name=name):
                seen.setdefault(name, []).append(out[0].detach().clone())

            handles.append(module.register_forward_hook(hook))
    return seen, handles


def ids(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (batch, length), generator=g)


# ----------------------------------------------------------------------------- config


def test_config_defaults_and_checks() -> None:
    cfg = SpikeGPTConfig()
    assert (cfg.neuron, cfg.binary_embedding, cfg.tie_word_embeddings) == ("lif", True, False)
    assert (cfg.lif_tau, cfg.lif_threshold, cfg.intermediate_size) == (2.0, 1.0, 4 * cfg.hidden_size)
    assert SpikeGPTConfig(neuron="none").binary_embedding is False
    assert SpikeGPTConfig(neuron="none", binary_embedding=True).binary_embedding is True
    with pytest.raises(Exception, match="neuron"):
        SpikeGPTConfig(neuron="relu")
    with pytest.raises(Exception, match="hidden_size"):
        SpikeGPTConfig(hidden_size=0)
    with pytest.raises(Exception, match="eos_token_id"):
        SpikeGPTConfig(vocab_size=10, eos_token_id=10)


def test_paper_initialisation() -> None:
    cfg = SpikeGPTConfig(vocab_size=VOCAB, hidden_size=6, num_hidden_layers=3)
    model = SpikeGPTForCausalLM(cfg)
    att0, att2 = model.model.blocks[0].att, model.model.blocks[2].att
    i = torch.arange(6.0)
    torch.testing.assert_close(att0.time_mix_k, i / 6)
    torch.testing.assert_close(att0.time_mix_v, i / 6)  # + 0.3 * 0 / (L - 1)
    torch.testing.assert_close(att0.time_mix_r, (i / 6) ** 0.5)
    torch.testing.assert_close(att2.time_mix_v, (i / 6) ** (1 - 2 / 3) + 0.3)
    torch.testing.assert_close(att0.time_decay, -5 + 8 * (i / 5) ** 0.7)
    torch.testing.assert_close(att2.time_decay[[0, -1]], torch.tensor([-5.0, 3.0]))
    zigzag = torch.tensor([0.0, 0.5, -0.5, 0.0, 0.5, -0.5])
    torch.testing.assert_close(att0.time_first, math.log(0.3) + zigzag)
    assert model.model.blocks[0].ln0 is not None and model.model.blocks[1].ln0 is None


# ----------------------------------------------------------------------------- WKV


def naive_wkv(k: torch.Tensor, v: torch.Tensor, w: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The paper's formula, term by term, in float64."""
    B, T, C = k.shape
    out = torch.empty(B, T, C, dtype=torch.float64)
    for t in range(T):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp(-(t - 1 - i) * w + k[:, i])
            num = num + e * v[:, i]
            den = den + e
        out[:, t] = num / den
    return out


@settings(max_examples=30, deadline=None)
@given(
    B=st.integers(1, 2),
    T=st.integers(1, 7),
    C=st.integers(1, 5),
    split=st.integers(0, 7),
    seed=st.integers(0, 2**16),
)
def test_wkv_matches_naive_formula(B: int, T: int, C: int, split: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(B, T, C, generator=g, dtype=torch.float64) * 3
    v = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    w = torch.exp(torch.randn(C, generator=g, dtype=torch.float64) * 2)
    u = torch.randn(C, generator=g, dtype=torch.float64)
    out, _ = wkv_sequence(k, v, w, u)
    torch.testing.assert_close(out, naive_wkv(k, v, w, u), rtol=1e-10, atol=1e-12)
    s = min(split, T)
    if 0 < s < T:  # split anywhere and carry the state: the same outputs
        first, state = wkv_sequence(k[:, :s], v[:, :s], w, u)
        rest, _ = wkv_sequence(k[:, s:], v[:, s:], w, u, state)
        assert torch.equal(torch.cat([first, rest], 1), out)


def test_wkv_first_step_is_exact() -> None:
    k, v = torch.tensor([[3.0, -50.0]]), torch.tensor([[0.25, -7.0]])
    out, state = wkv_step(k, v, torch.ones(2), torch.zeros(2), wkv_initial_state(1, 2))
    assert torch.equal(out, v)  # a single token's WKV is its value
    assert torch.equal(state.pp, k) and torch.equal(state.bb, torch.ones(1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_wkv_long_sequence_is_safe(dtype: torch.dtype) -> None:
    """T = 4096, decays as long as exp(-8) per token and keys up to +-100: finite, a weighted mean of v."""
    B, T, C = 1, 4096, 4
    g = torch.Generator().manual_seed(0)
    k = ((torch.rand(B, T, C, generator=g) * 2 - 1) * 100).to(dtype)
    v = torch.randn(B, T, C, generator=g).to(dtype)
    time_decay = torch.tensor([-8.0, -3.0, 0.0, 2.0])
    u = torch.tensor([5.0, math.log(0.3), -5.0, 0.0])
    out, state = wkv_sequence(k, v, torch.exp(time_decay), u)
    assert out.dtype == dtype and out.shape == (B, T, C)
    assert torch.isfinite(out).all() and all(torch.isfinite(s).all() for s in state)
    vmax = torch.cummax(v.float(), dim=1).values
    vmin = torch.cummin(v.float(), dim=1).values
    slack = 1e-5 if dtype == torch.float32 else 1e-2
    assert (out.float() <= vmax + slack * (1 + vmax.abs())).all()
    assert (out.float() >= vmin - slack * (1 + vmin.abs())).all()
    ref, _ = wkv_sequence(k.double(), v.double(), torch.exp(time_decay).double(), u.double())
    tol = 1e-3 if dtype == torch.float32 else 2e-2  # float32 rounding of pp - w near |k| = 100
    torch.testing.assert_close(out.double(), ref.to(dtype).double(), rtol=tol, atol=tol)


def test_wkv_gradients_are_finite() -> None:
    k = torch.randn(2, 16, 3, requires_grad=True)
    v = torch.randn(2, 16, 3, requires_grad=True)
    td = torch.randn(3, requires_grad=True)
    u = torch.randn(3, requires_grad=True)
    out, _ = wkv_sequence(k * 30, v, torch.exp(td), u)
    out.square().sum().backward()
    for t in (k, v, td, u):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def _loop_autograd(k, v, w, u, state):
    """The reference gradient path: autograd through every `wkv_step`."""
    outputs = []
    for t in range(k.shape[1]):
        out, state = wkv_step(k[:, t], v[:, t], w, u, state)
        outputs.append(out)
    return torch.stack(outputs, 1), state


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 2),
    T=st.integers(1, 9),
    C=st.integers(1, 4),
    carried=st.booleans(),
    scale=st.sampled_from([0.1, 1.0, 20.0]),
    seed=st.integers(0, 2**16),
)
def test_wkv_backward_equals_the_loops_autograd(B, T, C, carried, scale, seed) -> None:
    """The hand-written backward == autograd through the step loop, for every input and the state,
    with a loss on the outputs and on all three final state tensors (the running max included)."""
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape, s=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * s).requires_grad_()

    k, v, td, u = leaf(B, T, C, s=scale), leaf(B, T, C), leaf(C), leaf(C)
    if carried:
        with torch.no_grad():
            _, start = wkv_sequence(
                torch.randn(B, 3, C, generator=g, dtype=torch.float64) * scale,
                torch.randn(B, 3, C, generator=g, dtype=torch.float64),
                torch.exp(td),
                u,
            )
        start = WKVState(*(x.clone().requires_grad_() for x in start))
    else:
        start = wkv_initial_state(B, C, dtype=torch.float64)
    weights = [torch.randn(B, T, C, generator=g, dtype=torch.float64)] + [
        torch.randn(B, C, generator=g, dtype=torch.float64) for _ in range(3)
    ]
    leaves = [k, v, td, u, *(s for s in start if s.requires_grad)]

    def gradients(fn):
        out, final = fn(k, v, torch.exp(td), u, start)
        loss = sum((x * wt).sum() for x, wt in zip((out, *final), weights, strict=True))
        return out.detach(), torch.autograd.grad(loss, leaves)

    fast_out, fast = gradients(wkv_sequence)
    ref_out, ref = gradients(_loop_autograd)
    assert torch.equal(fast_out, ref_out)
    for a, b in zip(fast, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_wkv_backward_passes_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    k = (torch.randn(2, 5, 3, generator=g, dtype=torch.float64) * 3).requires_grad_()
    v = torch.randn(2, 5, 3, generator=g, dtype=torch.float64).requires_grad_()
    w = torch.rand(3, generator=g, dtype=torch.float64).add(0.1).requires_grad_()
    u = torch.randn(3, generator=g, dtype=torch.float64).requires_grad_()
    with torch.no_grad():
        _, start = wkv_sequence(k.detach() + 0.3, v.detach(), w, u)
    start = [s.clone().requires_grad_() for s in start]

    def fn(k, v, w, u, aa, bb, pp):
        out, final = wkv_sequence(k, v, w, u, WKVState(aa, bb, pp))
        return out, *final

    assert torch.autograd.gradcheck(fn, (k, v, w, u, *start))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_wkv_backward_in_low_precision(dtype: torch.dtype) -> None:
    """float32 / bf16 inputs: gradients in the inputs' dtype, close to the float64 ones."""
    g = torch.Generator().manual_seed(0)
    base = [
        torch.randn(2, 64, 4, generator=g) * 5,
        torch.randn(2, 64, 4, generator=g),
        torch.randn(4, generator=g),
        torch.randn(4, generator=g),
    ]
    grads = {}
    for dt in (dtype, torch.float64):
        leaves = [x.to(dt, copy=True).requires_grad_() for x in base]
        out, _ = wkv_sequence(leaves[0], leaves[1], torch.exp(leaves[2]), leaves[3])
        (out.float() * torch.linspace(-1, 1, 64)[None, :, None]).sum().backward()
        grads[dt] = [x.grad for x in leaves]
    for a, b in zip(grads[dtype], grads[torch.float64], strict=True):
        assert a.dtype == dtype
        tol = 1e-4 if dtype == torch.float32 else 5e-2
        torch.testing.assert_close(a.double(), b, rtol=tol, atol=tol * float(b.abs().max()))


def test_wkv_bad_shapes() -> None:
    with pytest.raises(ValueError, match="k and v"):
        wkv_sequence(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4), torch.ones(3), torch.ones(3))
    with pytest.raises(ValueError, match="w and u"):
        wkv_sequence(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(4), torch.ones(3))


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("neuron", NEURONS)
def test_shapes_and_cache(neuron: str) -> None:
    model = tiny(neuron)
    out = model(ids(3, 5), use_cache=True)
    assert out.logits.shape == (3, 5, VOCAB)
    cache = out.cache if "cache" in out else out.past_key_values
    assert isinstance(cache, SpikeGPTCache) and cache.get_seq_length() == 5 and len(cache) == 2
    layer = cache.layers[0]
    assert layer["att_x"].shape == layer["ffn_x"].shape == (3, 8)
    assert all(s.shape == (3, 8) for s in layer["wkv"])
    assert (layer["att_neuron"] == {}) == (neuron == "none")
    if neuron != "none":
        assert layer["att_neuron"]["v"].shape == (3, 8)
    if neuron == "eiif":  # bt's step counter survives the node's reset: one step per token
        assert int(layer["att_neuron"]["t"]) == 5 and int(layer["ffn_neuron"]["t"]) == 5
    base = SpikeGPTModel(model.config)
    assert base(ids(3, 5)).last_hidden_state.shape == (3, 5, 8)
    assert model(ids(3, 5), use_cache=False).logits.shape == (3, 5, VOCAB)


@pytest.mark.parametrize("neuron", ["lif", "eiif"])
def test_the_branches_spike(neuron: str) -> None:
    model = tiny(neuron)
    seen, handles = record_spikes(model)
    model(ids(2, 12))
    for h in handles:
        h.remove()
    spikes = torch.cat([s[0].flatten() for s in seen.values()])
    values = set(spikes.unique().tolist())
    assert values <= ({-1.0, 0.0, 1.0} if neuron == "eiif" else {0.0, 1.0})
    assert 0.02 < spikes.abs().mean() < 0.98  # neither silent nor saturated
    if neuron == "eiif":
        assert -1.0 in values


def forward_in_pieces(model, tokens: torch.Tensor, split: int):
    """Prefill ``split`` tokens (if any), then one token at a time with the cache."""
    pieces, cache = [], None
    bounds = ([split] if split else []) + list(range(max(split, 1), tokens.shape[1] + 1))
    start = 0
    for end in bounds:
        if end <= start:
            continue
        out = model(tokens[:, start:end], cache=cache, use_cache=True)
        cache = out.cache if "cache" in out else out.past_key_values
        pieces.append(out.logits)
        start = end
    return torch.cat(pieces, dim=1), cache


@settings(max_examples=25, deadline=None)
@given(
    neuron=st.sampled_from(NEURONS),
    batch=st.integers(1, 2),
    length=st.integers(1, 7),
    split=st.integers(0, 7),
    hidden=st.sampled_from([4, 8]),
    layers=st.integers(1, 2),
    seed=st.integers(0, 1000),
)
def test_parallel_equals_recurrent(neuron, batch, length, split, hidden, layers, seed) -> None:
    model = tiny(neuron, hidden=hidden, layers=layers, seed=seed)
    tokens = ids(batch, length, seed)
    seen, handles = record_spikes(model)
    full = model(tokens, use_cache=False).logits
    parallel = {name: s[0] for name, s in seen.items()}
    seen.clear()
    stepped, cache = forward_in_pieces(model, tokens, min(split, length))
    for h in handles:
        h.remove()
    torch.testing.assert_close(stepped, full, rtol=1e-9, atol=1e-9)
    for name, spikes in parallel.items():
        if neuron == "none":  # the identity: real-valued branch outputs, equal to float tolerance
            torch.testing.assert_close(torch.cat(seen[name], dim=1), spikes, rtol=1e-9, atol=1e-9)
        else:
            assert torch.equal(torch.cat(seen[name], dim=1), spikes), name
    assert cache.get_seq_length() == length


def test_no_state_leaks_between_calls() -> None:
    model = tiny("lif")
    tokens = ids(2, 6)
    first = model(tokens).logits
    model(ids(2, 9, seed=5), use_cache=True)  # a cached call in between
    assert torch.equal(model(tokens).logits, first)
    for m in model.modules():
        if isinstance(m, BranchNeuron):
            assert m.node.v == 0.0  # the node is left reset: the state lives in the cache only


@pytest.mark.parametrize("neuron", ["lif", "eiif"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_branch_neuron_equals_its_spikingjelly_node(neuron: str, dtype: torch.dtype) -> None:
    """The branch neuron's step function == the SpikingJelly node itself run multi-step (spikes and the
    membrane), for a whole sequence and split in two calls with the memories carried."""
    from spikingjelly.activation_based import functional

    config = SpikeGPTConfig(vocab_size=8, hidden_size=6, num_hidden_layers=1, neuron=neuron)
    branch = BranchNeuron(config)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 10, 6, generator=g) * 2).to(dtype)  # [B, T, d]
    spikes, memories = branch(x, None)
    functional.reset_net(branch.node)
    reference = branch.node(x.transpose(0, 1).float() if neuron == "lif" else x.transpose(0, 1)).transpose(
        0, 1
    )
    assert torch.equal(spikes.float(), reference.float())
    assert torch.equal(memories["v"].float(), branch.node.v.float())
    functional.reset_net(branch.node)
    first, state = branch(x[:, :4], None)
    rest, state = branch(x[:, 4:], state)
    assert torch.equal(torch.cat([first, rest], 1), spikes)
    assert torch.equal(state["v"], memories["v"])
    assert spikes.dtype == dtype and spikes.abs().sum() > 0


def test_cache_under_both_names() -> None:
    model = tiny("eiif")
    tokens = ids(1, 6)
    full = model(tokens).logits
    cache = SpikeGPTCache(2)
    a = model(tokens[:, :4], past_key_values=cache).logits
    b = model(tokens[:, 4:], cache=cache).logits
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="not both"):
        model(tokens, cache=SpikeGPTCache(2), past_key_values=SpikeGPTCache(2))


def test_reorder_cache_selects_rows() -> None:
    model = tiny("lif")
    tokens = ids(2, 7)
    out = model(tokens[:, :4], use_cache=True)
    cache = out.cache if "cache" in out else out.past_key_values
    cache.reorder_cache(torch.tensor([1, 0]))
    flipped = model(tokens.flip(0)[:, 4:], cache=cache).logits
    torch.testing.assert_close(flipped, model(tokens.flip(0)).logits[:, 4:], rtol=1e-9, atol=1e-9)


def test_inputs_embeds_equal_input_ids() -> None:
    model = tiny("lif")
    tokens = ids(2, 5)
    embeds = model.get_input_embeddings()(tokens)
    torch.testing.assert_close(model(inputs_embeds=embeds).logits, model(tokens).logits)


@pytest.mark.parametrize("neuron", NEURONS)
def test_gradients_reach_every_parameter(neuron: str) -> None:
    model = tiny(neuron).train()
    tokens = ids(2, 8)
    out = model(tokens, labels=tokens)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_loss_is_shifted_cross_entropy() -> None:
    model = tiny("lif")
    tokens = ids(2, 8)
    out = model(tokens, labels=tokens)
    ref = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, VOCAB), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(out.loss.double(), ref, rtol=1e-6, atol=1e-6)  # transformers' loss is float32


@pytest.mark.parametrize("neuron", ["lif", "eiif"])
def test_save_and_load_round_trip(tmp_path, neuron: str) -> None:
    model = tiny(neuron)
    tokens = ids(2, 6)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = SpikeGPTForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.dtype == torch.float64 and loaded.config.neuron == neuron
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)
    auto = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(auto, SpikeGPTForCausalLM)
    assert torch.equal(auto(tokens).logits, model(tokens).logits)


def test_from_pretrained_refuses_pickles_and_nan_weights(tmp_path) -> None:
    model = tiny("lif")
    model.save_pretrained(tmp_path / "ok")
    with pytest.raises(ValueError, match="safetensors only"):
        SpikeGPTForCausalLM.from_pretrained(tmp_path / "ok", use_safetensors=False)
    with torch.no_grad():
        model.head.weight[0, 0] = float("nan")
    model.save_pretrained(tmp_path / "nan")
    with pytest.raises(ValueError, match="head.weight"):
        SpikeGPTForCausalLM.from_pretrained(tmp_path / "nan")


def test_auto_classes() -> None:
    cfg = AutoConfig.for_model("spikegpt", vocab_size=VOCAB, hidden_size=8, num_hidden_layers=1)
    assert isinstance(cfg, SpikeGPTConfig)
    assert isinstance(AutoModelForCausalLM.from_config(cfg), SpikeGPTForCausalLM)
    assert isinstance(AutoModel.from_config(cfg), SpikeGPTModel)


@pytest.mark.parametrize("neuron", NEURONS)
def test_generate_greedy_matches_full_forwards(neuron: str) -> None:
    model = tiny(neuron)
    prompt = ids(2, 4)
    mask = torch.ones_like(prompt)
    kw = dict(max_new_tokens=6, do_sample=False, attention_mask=mask, pad_token_id=0, eos_token_id=None)
    cached = model.generate(prompt, **kw)
    uncached = model.generate(prompt, use_cache=False, **kw)
    assert cached.tolist() == uncached.tolist()
    seq = prompt
    for _ in range(6):
        nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    assert cached.tolist() == seq.tolist()


def test_generate_beam_search_reorders_the_cache() -> None:
    model = tiny("lif")
    prompt = ids(2, 4)
    kw = dict(
        max_new_tokens=4,
        num_beams=3,
        do_sample=False,
        attention_mask=torch.ones_like(prompt),
        pad_token_id=0,
        eos_token_id=None,
    )
    assert model.generate(prompt, **kw).tolist() == model.generate(prompt, use_cache=False, **kw).tolist()


def test_bfloat16_forward_is_finite() -> None:
    model = tiny("lif").to(torch.bfloat16)
    logits = model(ids(2, 40)).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


def test_generate_sampled_with_and_without_cache() -> None:
    model = tiny("lif")
    prompt = ids(2, 3)
    kw = dict(
        max_new_tokens=6,
        do_sample=True,
        top_k=0,
        attention_mask=torch.ones_like(prompt),
        pad_token_id=0,
        eos_token_id=None,
    )
    torch.manual_seed(7)
    a = model.generate(prompt, **kw)
    torch.manual_seed(7)
    b = model.generate(prompt, use_cache=False, **kw)
    assert a.shape == (2, 9) and a.tolist() == b.tolist()


# ----------------------------------------------------------------------------- the released layout


def original_layout(model: SpikeGPTForCausalLM) -> dict[str, torch.Tensor]:
    """Our weights in the released SpikeGPT layout (time_mix as [1, 1, C], as released)."""
    ours = model.state_dict()
    out = {}
    for orig, key in original_key_layout(model.config).items():
        value = ours[key].clone()
        if ".time_mix_" in orig:
            value = value.reshape(1, 1, -1)
        out[orig] = value
    return out


@pytest.mark.parametrize("neuron", ["lif", "eiif"])
def test_from_original_state_dict_round_trip(neuron: str) -> None:
    model = tiny(neuron)
    sd = original_layout(model)
    assert sd["blocks.0.att.time_mix_k"].shape == (1, 1, 8) and sd["blocks.1.att.time_decay"].shape == (8,)
    loaded = SpikeGPTForCausalLM.from_original_state_dict(sd, model.config).eval()
    tokens = ids(2, 6)
    assert torch.equal(loaded(tokens).logits, model(tokens).logits)


def test_from_original_checkpoint_files(tmp_path) -> None:
    """A released-layout state dict written as safetensors and as a .pth (plain and wrapped in
    {"state_dict": ...}) loads to the same model; pickled code is refused, bad files named."""
    from safetensors.torch import save_file

    model = tiny("lif")
    sd = {k: v.contiguous() for k, v in original_layout(model).items()}
    save_file(sd, tmp_path / "rwkv.safetensors")
    torch.save(sd, tmp_path / "rwkv.pth")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "wrapped.pt")
    tokens = ids(2, 6)
    for name in ("rwkv.safetensors", "rwkv.pth", "wrapped.pt"):
        loaded = SpikeGPTForCausalLM.from_original_checkpoint(tmp_path / name, model.config).eval()
        assert torch.equal(loaded(tokens).logits, model(tokens).logits), name

    class Evil:
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    torch.save({"emb.weight": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="weights_only=True"):
        SpikeGPTForCausalLM.from_original_checkpoint(tmp_path / "evil.pth", model.config)
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="cannot read .*broken.safetensors"):
        SpikeGPTForCausalLM.from_original_checkpoint(tmp_path / "broken.safetensors", model.config)
    with pytest.raises(ValueError, match="must end in"):
        SpikeGPTForCausalLM.from_original_checkpoint(_renamed(tmp_path / "rwkv.pth", "x.ckpt"), model.config)
    with pytest.raises(FileNotFoundError, match="not a file"):
        SpikeGPTForCausalLM.from_original_checkpoint(tmp_path / "missing.pth", model.config)
    del sd["head.weight"]
    save_file(sd, tmp_path / "headless.safetensors")
    with pytest.raises(ValueError, match=r"missing keys \['head.weight'\]"):
        SpikeGPTForCausalLM.from_original_checkpoint(tmp_path / "headless.safetensors", model.config)


def _renamed(path, name):
    target = path.with_name(name)
    target.write_bytes(path.read_bytes())
    return target


def test_tied_embeddings_round_trips(tmp_path) -> None:
    model = tiny("lif", tie_word_embeddings=True)
    assert model.head.weight is model.model.emb.weight
    tokens = ids(2, 5)
    model.save_pretrained(tmp_path)
    loaded = SpikeGPTForCausalLM.from_pretrained(tmp_path).eval()
    assert loaded.head.weight is loaded.model.emb.weight
    # equal up to the head's matmul (the loaded weight may take another BLAS path)
    torch.testing.assert_close(loaded(tokens).logits, model(tokens).logits, rtol=1e-12, atol=1e-12)
    sd = original_layout(model)
    del sd["head.weight"]  # optional when tied
    converted = SpikeGPTForCausalLM.from_original_state_dict(sd, model.config).eval()
    assert converted.head.weight is converted.model.emb.weight
    torch.testing.assert_close(converted(tokens).logits, model(tokens).logits, rtol=1e-12, atol=1e-12)


def test_from_original_state_dict_errors() -> None:
    model = tiny("lif")
    sd = original_layout(model)
    broken = dict(sd)
    del broken["blocks.1.att.time_first"], broken["ln_out.bias"]
    broken["blocks.7.att.key.weight"] = torch.zeros(8, 8)
    broken["foo"] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        SpikeGPTForCausalLM.from_original_state_dict(broken, model.config)
    for key in ("blocks.1.att.time_first", "ln_out.bias", "blocks.7.att.key.weight", "foo"):
        assert key in str(info.value)
    wrong = dict(sd)
    wrong["blocks.0.att.key.weight"] = torch.zeros(8, 9)
    wrong["blocks.0.ffn.time_mix_r"] = torch.zeros(1, 1, 7)
    with pytest.raises(ValueError, match="blocks.0.att.key.weight") as info:
        SpikeGPTForCausalLM.from_original_state_dict(wrong, model.config)
    assert "blocks.0.ffn.time_mix_r" in str(info.value)
    nan = dict(sd)
    nan["head.weight"] = torch.full_like(sd["head.weight"], float("nan"))
    with pytest.raises(ValueError, match="head.weight"):
        SpikeGPTForCausalLM.from_original_state_dict(nan, model.config)
    with pytest.raises(TypeError, match="config"):
        SpikeGPTForCausalLM.from_original_state_dict(sd, {"hidden_size": 8})


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_clear_errors() -> None:
    model = tiny("lif")
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 23\)"):
        model(torch.tensor([[1, 23]]))
    with pytest.raises(ValueError, match="input_ids must lie"):
        model(torch.tensor([[-1, 2]]))
    with pytest.raises(TypeError, match="input_ids must be an integer tensor"):
        model(torch.tensor([[1.0, 2.0]]))
    with pytest.raises(ValueError, match=r"add a batch axis"):
        model(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="at least one token"):
        model(torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of"):
        model()
    with pytest.raises(ValueError, match="hidden_size"):
        model(inputs_embeds=torch.zeros(1, 2, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match="attention_mask must be all ones"):
        model(ids(1, 3), attention_mask=torch.tensor([[0, 1, 1]]))
    with pytest.raises(TypeError, match="SpikeGPTCache"):
        model(ids(1, 3), cache=object())
    with pytest.raises(ValueError, match="layers"):
        model(ids(1, 3), cache=SpikeGPTCache(5))
    with pytest.raises(ValueError, match="labels"):
        model(ids(1, 3), labels=ids(1, 4))
    with pytest.raises(ValueError, match="logits_to_keep"):
        model(ids(1, 3), logits_to_keep=-1)


# ----------------------------------------------------------------------------- spikes and energy


@pytest.mark.parametrize("neuron", NEURONS)
def test_cost_per_token_counts_what_ran(neuron: str) -> None:
    """Spikes and additions equal the spikes the branch neurons returned (read by hooks); MACs equal
    the architecture's linear layers; energy = 0.9 pJ x additions + 4.6 pJ x MACs."""
    torch.manual_seed(0)
    V, d, L = 40, 16, 2
    config = SpikeGPTConfig(
        vocab_size=V,
        hidden_size=d,
        num_hidden_layers=L,
        neuron=neuron,
        lif_threshold=0.05,
        eiif_threshold=0.05,
    )
    model = SpikeGPTForCausalLM(config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(20)  # branch outputs well above the thresholds
    ids = torch.randint(0, V, (2, 23))
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        m.register_forward_hook(lambda mod, args, out: seen.__setitem__(mod.name, out[0]))
        for m in model.modules()
        if isinstance(m, BranchNeuron)
    ]
    try:
        cost = cost_per_token(model, ids)
    finally:
        for h in hooks:
            h.remove()
    tokens = ids.numel()
    assert cost.tokens == tokens
    for name, out in seen.items():
        row = cost.by_layer[name]
        if neuron == "none":
            assert row.spikes == 0 and row.additions == d and row.firing_rate is None
        else:
            assert row.spikes == float(out.abs().sum()) / tokens
            assert row.additions == float(torch.count_nonzero(out)) / tokens
            assert row.firing_rate == pytest.approx(row.spikes / d)
    if neuron != "none":
        assert sum(cost.by_layer[n].spikes for n in seen) > 0  # the low threshold makes them fire
        binary = (model.model.emb(ids) >= 0).sum()
        assert cost.by_layer["emb"].spikes == float(binary) / tokens
    else:
        assert "emb" not in cost.by_layer
    per_layer = 4 * d * d + 2 * d * 4 * d + d * d
    assert cost.dense_macs == L * per_layer + d * V
    assert cost.by_layer["head"].dense_macs == d * V
    assert cost.spikes == pytest.approx(sum(r.spikes for r in cost.by_layer.values()))
    assert cost.additions == pytest.approx(sum(r.additions for r in cost.by_layer.values()))
    assert cost.energy_pj == pytest.approx(0.9 * cost.additions + 4.6 * cost.dense_macs)
    assert "MACs per token" in cost.summary()


def test_spikingjelly_op_counter_agrees_no_spike_enters_a_matrix_product() -> None:
    """SpikingJelly's op counter (with bt's signed-spike rules) finds no synaptic operation in SpikeGPT,
    however much it fires: every linear layer reads a layer-normalised real input, which is why
    `cost_per_token` charges them as MACs."""
    from bt_neurons import count_synops

    torch.manual_seed(0)
    model = SpikeGPTForCausalLM(
        SpikeGPTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, neuron="eiif")
    ).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(20)
    tokens = torch.randint(0, 40, (2, 12))
    assert cost_per_token(model, tokens).spikes > 0
    counter = count_synops(model, {"input_ids": tokens, "use_cache": False})
    assert counter.get_total() == 0


def test_cost_and_bits_bad_inputs() -> None:
    model = SpikeGPTForCausalLM(SpikeGPTConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1))
    with pytest.raises(TypeError, match="model must be a SpikeGPTForCausalLM"):
        cost_per_token(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids"):
        cost_per_token(model, torch.zeros(1, 0, dtype=torch.long))
    with pytest.raises(TypeError, match="input_ids"):
        cost_per_token(model, [1, 2])
    with pytest.raises(ValueError, match="window"):
        bits_per_token(model, torch.zeros(10, dtype=torch.long), window=1)


def test_bits_per_token_is_log2_perplexity() -> None:
    """On a model that ignores its input (all weights of the head zero), every token costs log2(V) bits."""
    model = SpikeGPTForCausalLM(SpikeGPTConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1)).eval()
    torch.nn.init.zeros_(model.head.weight)
    ids = torch.randint(0, 16, (64,))
    assert bits_per_token(model, ids, window=16) == pytest.approx(4.0, abs=1e-6)
