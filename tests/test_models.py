"""The spiking LLM: conversion of tiny random Llama / Qwen2 models, both paths, generate, save/load."""

from __future__ import annotations

import pytest
import torch
from bt_neurons.models import BTSpikingConfig, BTSpikingForCausalLM, operator_modes
from bt_neurons.models._transformers import CACHE_ARGUMENT_NAMES, cache_field
from bt_neurons.models.braintransformers import modeling
from bt_neurons.models.braintransformers.conversion import SUPPORTED_ARCHITECTURES, calibrate, convert
from bt_neurons.models.braintransformers.evaluation import energy_per_token, perplexity, windows
from bt_neurons.models.braintransformers.rotation import (
    hadamard_matrix,
    hadamard_transform,
    random_orthogonal,
)
from huggingface_hub.errors import StrictDataclassClassValidationError
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    AutoModelForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from bt_neurons import SNNMatmul, SNNMultiply, Synapsis
from bt_neurons.synapsis import _share_encoding

VOCAB = 97


def tiny_ann(kind: str = "llama", *, tied: bool = True, bias: bool = False, seed: int = 0, **sizes):
    """A random Llama / Qwen2 with odd sizes and grouped-query heads (6 query heads, 2 KV heads)."""
    torch.manual_seed(seed)
    common = dict(
        vocab_size=VOCAB,
        hidden_size=36,
        intermediate_size=72,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
    )
    common.update(sizes)
    if kind == "llama":
        ann = LlamaForCausalLM(LlamaConfig(attention_bias=bias, mlp_bias=bias, **common))
    else:
        ann = Qwen2ForCausalLM(
            Qwen2Config(rope_parameters={"rope_type": "default", "rope_theta": 1e4}, **common)
        )
    with torch.no_grad():  # norms and biases that are not the identity / zero, so that folding is exercised
        for name, p in ann.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return ann.eval()


SOURCES = [
    pytest.param("llama", True, False, id="llama-tied"),
    pytest.param("llama", False, True, id="llama-untied-biases"),
    pytest.param("qwen2", False, True, id="qwen2-qkv-biases"),
    pytest.param("qwen2", True, True, id="qwen2-tied"),
]


def ids(batch: int = 2, length: int = 11, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model, x, **kw) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=x, use_cache=False, **kw).logits


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


# ------------------------------------------------------------------ rotations
def test_hadamard_transform_is_the_block_matrix_product():
    x = torch.randn(3, 4, 48, dtype=torch.float64)
    H = hadamard_matrix(16)
    expected = (x.reshape(3, 4, 3, 16) @ H).reshape(3, 4, 48)
    assert torch.allclose(hadamard_transform(x, 16), expected, atol=1e-12)
    assert torch.allclose(H @ H, torch.eye(16, dtype=torch.float64), atol=1e-12)


def test_rotation_bad_input():
    with pytest.raises(ValueError, match="block must be a power of two"):
        hadamard_transform(torch.randn(2, 12), 12)
    with pytest.raises(ValueError, match="multiple of block"):
        hadamard_transform(torch.randn(2, 12), 8)
    Q = random_orthogonal(7, seed=3)
    assert torch.allclose(Q @ Q.T, torch.eye(7, dtype=torch.float64), atol=1e-12)


# ------------------------------------------------------------------ conversion
@pytest.mark.parametrize(("kind", "tied", "bias"), SOURCES)
@pytest.mark.parametrize("rotate", [False, True])
def test_float_twin_equals_the_ann(kind, tied, bias, rotate):
    """With every operator in float mode, folding and rotations change nothing but rounding."""
    ann = tiny_ann(kind, tied=tied, bias=bias)
    model = convert(ann, 15, operators="float", rotate=rotate)
    assert model.config.source_model_type == kind
    # a rotation meets tied embeddings with the factored head (the default): still tied, lm_head's
    # weight E diag(g) R kept as E R (the embedding) and the mixer M = R^T diag(g) R
    assert model.config.tie_word_embeddings == tied
    assert (model.final_mixer is not None) == (tied and rotate)
    x = ids()
    assert torch.allclose(logits(model, x), logits(ann, x), atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_final_mixer_keeps_a_rotated_model_tied(kind):
    ann = tiny_ann(kind, tied=True, bias=True)
    model = convert(ann, 15, operators="float", final_mixer=True)
    assert model.config.tie_word_embeddings and model.config.final_mixer and model.final_mixer is not None
    assert model.lm_head.layer.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    x = ids()
    assert torch.allclose(logits(model, x), logits(ann, x), atol=2e-5, rtol=1e-4)
    # untied models need no mixer; an unrotated one keeps its tie without one
    assert convert(tiny_ann(kind, tied=False), 15, final_mixer=True).final_mixer is None
    plain = convert(ann, 15, rotate=False, final_mixer=True)
    assert plain.final_mixer is None and plain.config.tie_word_embeddings


def test_group_size_defaults_to_the_head_dimension_when_it_divides_every_width():
    assert convert(tiny_ann(), 7).config.encoder_group_size == 0  # hidden 36 is no multiple of head_dim 8
    fitting = convert(tiny_ann(hidden_size=48, intermediate_size=96), 7)
    assert fitting.config.encoder_group_size == 8
    pre = fitting.model.layers[0].mlp.gate_proj.pre
    assert pre.group_size == 8 and fitting.model.layers[0].mlp.multiply.quantizer.group_size == 8
    assert convert(tiny_ann(), 7, group_size=12).config.encoder_group_size == 12
    assert (
        convert(tiny_ann(hidden_size=48, intermediate_size=96), 7, group_size=0).lm_head.pre.group_size
        is None
    )


def test_config_checks_the_group_size():
    sizes = dict(hidden_size=36, intermediate_size=72, num_attention_heads=6)
    with pytest.raises(
        (ValueError, StrictDataclassClassValidationError), match=r"encoder_group_size \(8\) must divide"
    ):
        BTSpikingConfig(**sizes, encoder_group_size=8)
    with pytest.raises((ValueError, StrictDataclassClassValidationError), match="encoder_group_size must be"):
        BTSpikingConfig(**sizes, encoder_group_size=-4)
    assert BTSpikingConfig(**sizes, encoder_group_size=12).encoder_group_size == 12


def assert_paths_agree_on_every_operator(model, x) -> int:
    """Run ``model`` on the count path, then replay every spiking operator's inputs on the spike path.

    Whole-model logits of the two paths are not compared bit for bit: the paths add the same terms in
    different orders, and products of counts often put a value exactly on an encoder's rounding
    boundary (half the token's maximum, with T odd), where a 1e-17 difference decides the level.
    Replaying each operator's own inputs checks the equivalence on the model's real activations.
    """
    calls: list[tuple[object, tuple, dict, torch.Tensor]] = []
    hooks = [
        m.register_forward_hook(lambda mod, a, kw, out: calls.append((mod, a, kw, out)), with_kwargs=True)
        for m in model.modules()
        if isinstance(m, Synapsis | SNNMultiply)
    ]
    matmuls = [m for m in model.modules() if isinstance(m, SNNMatmul)]

    def recorded(product):  # the attention calls SNNMatmul.product on the encoded (cached) keys and values
        def call(*args, **kwargs):
            out = product(*args, **kwargs)
            calls.append((product, args, kwargs, out))
            return out

        return call

    for m in matmuls:
        m.product = recorded(m.product)
    shared = modeling.synapses_of_one_input

    def shared_recorded(synapses, inp):  # q, k, v (and gate, up) encode their one input once
        outs = shared(synapses, inp)
        if _share_encoding(synapses, inp):  # otherwise each synapse ran (and was hooked) on its own
            calls.extend((syn, (inp,), {}, out) for syn, out in zip(synapses, outs, strict=True))
        return outs

    modeling.synapses_of_one_input = shared_recorded
    model.set_spiking(path="count")
    try:
        with torch.no_grad():
            model(input_ids=x, use_cache=False)
    finally:
        modeling.synapses_of_one_input = shared
    for h in hooks:
        h.remove()
    for m in matmuls:
        del m.product
    model.set_spiking(path="spike")
    with torch.no_grad():
        for module, args, kwargs, out in calls:
            assert torch.allclose(module(*args, **kwargs), out, atol=1e-12, rtol=1e-10), module
    return len(calls)


@pytest.mark.parametrize(("kind", "tied", "bias"), SOURCES[:3])
@pytest.mark.parametrize("operators", ["hybrid", "spiking"])
@pytest.mark.parametrize(("group_size", "final_mixer"), [(0, False), (4, True)])
def test_count_path_equals_spike_path_on_the_whole_model(
    kind, tied, bias, operators, group_size, final_mixer
):
    ann = tiny_ann(kind, tied=tied, bias=bias)
    model = convert(ann, 7, operators=operators, group_size=group_size, final_mixer=final_mixer).double()
    layers = model.config.num_hidden_layers
    # 5 encoding Synapses, 2 SNNMatmuls and 1 SNNMultiply per layer, then the head (and a tied mixer)
    mixer = int(tied and final_mixer)
    assert assert_paths_agree_on_every_operator(model, ids()) == 8 * layers + 1 + mixer


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_spiking_logits_approach_the_ann_as_T_grows(kind):
    ann = tiny_ann(kind, bias=True)
    x = ids(2, 16)
    ref = logits(ann, x)
    errors = [rel(logits(convert(ann, T, x), x), ref) for T in (3, 7, 31, 255)]
    assert all(a > b for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.01, errors
    # fully spiking: the approximators' own error remains as T grows
    full = [rel(logits(convert(ann, T, operators="spiking"), x), ref) for T in (3, 255)]
    assert full[1] < full[0] and full[1] < 0.05, full


def test_calibration_chooses_clip_ratios_that_do_not_hurt():
    ann = tiny_ann("llama")
    x = ids(2, 32)
    plain = convert(ann, 7)
    calibrated = convert(ann, 7, x)
    clips = [float(b) for n, b in calibrated.named_buffers() if n.endswith("clip_ratio")]
    assert all(0.5 <= c <= 1.0 for c in clips) and min(clips) < 1.0
    ref = logits(ann, x)
    assert rel(logits(calibrated, x), ref) <= rel(logits(plain, x), ref) * 1.05


def test_calibration_text_needs_a_tokenizer_and_tokens():
    ann = tiny_ann()
    with pytest.raises(ValueError, match="tokenizer"):
        convert(ann, 7, "some text")
    with pytest.raises(ValueError, match="empty"):
        convert(ann, 7, "   ")
    with pytest.raises(TypeError, match="token ids"):
        convert(ann, 7, torch.rand(1, 4))
    with pytest.raises(ValueError, match=r"\[0, 97\)"):
        convert(ann, 7, torch.tensor([[1, 2, 500]]))
    with pytest.raises(ValueError, match="grid"):
        calibrate(convert(ann, 7), ids(), grid=[1.5])


def test_unsupported_architecture_names_the_supported_ones():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match="supported architectures are llama, qwen2"):
        convert(gpt2, 7)
    assert SUPPORTED_ARCHITECTURES == ("llama", "qwen2")
    with pytest.raises(TypeError, match="model_or_path"):
        convert(42, 7)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        convert("/nonexistent/model", 7)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"timesteps": 0}, ValueError, "timesteps must be a positive int"),
        ({"path": "both"}, ValueError, "path must be"),
        ({"operators": "mostly"}, ValueError, "operators must be one of"),
        ({"operators": {"attention": "spiking"}}, ValueError, "unknown keys"),
        ({"operators": {"softmax": "yes"}}, ValueError, "'spiking' or 'float'"),
        ({"group_size": 5}, ValueError, r"group_size \(5\) must divide"),
        ({"group_size": -1}, ValueError, "group_size must be an int"),
        ({"group_size": 2.0}, ValueError, "group_size must be an int"),
    ],
)
def test_convert_bad_arguments(kwargs, error, message):
    args = {"timesteps": 7, **kwargs}
    with pytest.raises(error, match=message):
        convert(tiny_ann(), args.pop("timesteps"), **args)


def test_operator_presets():
    assert set(operator_modes("spiking").values()) == {"spiking"}
    assert set(operator_modes("float").values()) == {"float"}
    assert operator_modes({"rmsnorm": "spiking"})["rmsnorm"] == "spiking"
    with pytest.raises(TypeError, match="preset name or a dict"):
        operator_modes(3)


# ------------------------------------------------------------------ the model
def test_model_bad_input():
    model = convert(tiny_ann(), 7)
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 97\)"):
        model(input_ids=torch.tensor([[1, 97]]))
    with pytest.raises(TypeError, match="integer tensor"):
        model(input_ids=torch.rand(1, 3))
    with pytest.raises(ValueError, match="attention_mask must be"):
        model(input_ids=ids(1, 5), attention_mask=torch.ones(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    # transformers' strict configs wrap the ValueError of the validator
    with pytest.raises(
        (ValueError, StrictDataclassClassValidationError), match="timesteps must be a positive int"
    ):
        BTSpikingConfig(timesteps=0)
    with pytest.raises(
        (ValueError, StrictDataclassClassValidationError), match="multiple of num_key_value_heads"
    ):
        BTSpikingConfig(num_attention_heads=6, num_key_value_heads=4)


@pytest.mark.parametrize("operators", ["hybrid", "spiking"])
def test_batch_independence(operators):
    """One sequence's logits do not depend on the others in its batch."""
    model = convert(tiny_ann("qwen2", bias=True), 7, operators=operators)
    x = ids(3, 9)
    together = logits(model, x)
    for b in range(3):
        alone = logits(model, x[b : b + 1])
        assert torch.allclose(together[b : b + 1], alone, atol=1e-5, rtol=1e-5)


def test_left_padding_does_not_change_the_real_tokens():
    model = convert(tiny_ann(), 7)
    x = ids(1, 8)
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), x], 1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 8, dtype=torch.long)], 1)
    pos = (mask.cumsum(-1) - 1).clamp_min(0)
    alone = logits(model, x)
    with torch.no_grad():
        out = model(input_ids=padded, attention_mask=mask, position_ids=pos, use_cache=False).logits
    assert torch.allclose(out[:, 3:], alone, atol=1e-5, rtol=1e-5)


def returned_cache(out):
    """The KV cache of a model output, under the field name of the installed transformers."""
    return getattr(out, cache_field(type(out)))


@pytest.mark.parametrize("name", CACHE_ARGUMENT_NAMES)
@pytest.mark.parametrize("operators", ["hybrid", "spiking"])
def test_kv_cache_gives_the_uncached_logits(operators, name):
    model = convert(tiny_ann("qwen2", bias=True), 7, operators=operators)
    x = ids(2, 10)
    full = logits(model, x)
    with torch.no_grad():
        out = model(input_ids=x[:, :6], use_cache=True)
        steps = [out.logits]
        cache = returned_cache(out)
        assert cache is not None and cache.get_seq_length() == 6
        for t in range(6, 10):
            out = model(input_ids=x[:, t : t + 1], use_cache=True, **{name: cache})
            assert returned_cache(out) is cache and cache.get_seq_length() == t + 1
            steps.append(out.logits)
    assert torch.allclose(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_the_base_model_takes_the_cache_under_both_names():
    model = convert(tiny_ann(), 7)
    x = ids(1, 7)
    with torch.no_grad():
        full = model.model(input_ids=x, use_cache=False).last_hidden_state
        for name in CACHE_ARGUMENT_NAMES:
            out = model.model(input_ids=x[:, :4], use_cache=True)
            cache = returned_cache(out)
            rest = model.model(input_ids=x[:, 4:], use_cache=True, **{name: cache}).last_hidden_state
            assert torch.allclose(torch.cat([out.last_hidden_state, rest], 1), full, atol=1e-5, rtol=1e-5)


def test_two_different_caches_are_refused():
    model = convert(tiny_ann(), 7)
    x = ids(1, 4)
    with torch.no_grad():
        a = returned_cache(model(input_ids=x, use_cache=True))
        b = returned_cache(model(input_ids=x, use_cache=True))
        with pytest.raises(ValueError, match="cache or as past_key_values"):
            model(input_ids=x[:, :1], cache=a, past_key_values=b, use_cache=True)


def left_padded_prompt() -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 2 prompts, the second one 3 tokens shorter and left-padded with token 0."""
    prompt = ids(2, 7, seed=5)
    mask = torch.ones_like(prompt)
    prompt[1, :3], mask[1, :3] = 0, 0
    return prompt, mask


def reference_logits(model, sequences: torch.Tensor, prompt_mask: torch.Tensor) -> torch.Tensor:
    """The full uncached forward over the generated sequences: entry ``i`` predicts token ``P + i``."""
    mask = torch.cat([prompt_mask, torch.ones_like(sequences[:, prompt_mask.shape[1] :])], 1)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    with torch.no_grad():
        out = model(input_ids=sequences[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1])
    return out.logits[:, prompt_mask.shape[1] - 1 :]


def context_free_greedy(model, prompt: torch.Tensor, steps: int) -> torch.Tensor:
    """What a decoder that forgets its context would say: each token from the previous one alone."""
    last, tokens = prompt[:, -1:], []
    for _ in range(steps):
        last = logits(model, last)[:, -1:].argmax(-1)
        tokens.append(last)
    return torch.cat(tokens, 1)


@pytest.mark.parametrize("sample", [False, True], ids=["greedy", "sampled"])
def test_generate_with_the_cache_gives_the_full_forward_logits_at_every_step(sample):
    model = convert(tiny_ann(tied=False), 7)  # a random model whose next token depends on its context
    model.generation_config.eos_token_id = None  # always generate all the steps
    prompt, mask = left_padded_prompt()
    steps = 10
    kwargs = dict(do_sample=True, top_k=5) if sample else dict(do_sample=False)
    torch.manual_seed(3)
    with torch.no_grad():
        out = model.generate(
            prompt,
            attention_mask=mask,
            max_new_tokens=steps,
            pad_token_id=0,
            use_cache=True,
            output_logits=True,
            return_dict_in_generate=True,
            **kwargs,
        )
    sequences, P = out.sequences, prompt.shape[1]
    assert sequences.shape == (2, P + steps) and torch.equal(sequences[:, :P], prompt)
    generated = torch.stack(out.logits, 1)  # [B, steps, vocab], the logits before sampling
    reference = reference_logits(model, sequences, mask)
    assert generated.shape == reference.shape == (2, steps, VOCAB)
    assert torch.allclose(generated, reference, atol=1e-4, rtol=1e-4), (generated - reference).abs().max()
    new = sequences[:, P:]
    if sample:  # every sampled token lies in the top 5 of the full forward's logits at its step
        top = reference.topk(5, dim=-1).indices
        assert (top == new[..., None]).any(-1).all()
    else:
        assert torch.equal(new, reference.argmax(-1))
    # the test can tell: a decoder that drops its context would have said something else
    assert (new != context_free_greedy(model, prompt, steps)).float().mean() > 0.5


def test_generate_gives_the_same_tokens_with_and_without_the_cache():
    model = convert(tiny_ann(tied=False), 7)
    model.generation_config.eos_token_id = None
    prompt, mask = left_padded_prompt()
    common = dict(attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        cached = model.generate(prompt, use_cache=True, **common)
        uncached = model.generate(prompt, use_cache=False, **common)
    assert cached.shape == (2, 15)
    assert torch.equal(cached, uncached)


def test_save_and_load_round_trip(tmp_path):
    model = convert(
        tiny_ann("llama", tied=True),
        7,
        ids(1, 24),
        operators={"softmax": "spiking"},
        group_size=4,
        final_mixer=True,
    )
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert not list(tmp_path.glob("*.bin"))  # safetensors, nothing pickled
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path, local_files_only=True).eval()
    assert isinstance(loaded, BTSpikingForCausalLM)
    assert loaded.config.operators == model.config.operators and loaded.config.timesteps == 7
    assert (
        loaded.config.encoder_group_size == 4 and loaded.model.layers[1].self_attn.q_proj.pre.group_size == 4
    )
    x = ids()
    assert torch.equal(logits(loaded, x), logits(model, x))
    assert loaded.lm_head.layer.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    # the approximators are constants of the model, never saved with it
    assert not any("approximator" in k or "exp" in k.split(".") for k in loaded.state_dict())


def test_set_spiking_switches_modes_in_place():
    model = convert(tiny_ann(), 7, operators="float")
    x = ids()
    float_logits = logits(model, x)
    model.set_spiking(operators="spiking", timesteps=31)
    assert model.config.operators == operator_modes("spiking") and model.config.timesteps == 31
    assert not torch.equal(logits(model, x), float_logits)
    model.set_spiking(operators={"linear": "float"})
    assert model.config.operators["linear"] == "float" and model.config.operators["silu"] == "spiking"
    with pytest.raises(ValueError, match="path must be"):
        model.set_spiking(path="fast")


def test_bf16_model_runs():
    model = convert(tiny_ann(), 15).to(torch.bfloat16)
    out = logits(model, ids())
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()


# ------------------------------------------------------------------ measurements
def test_perplexity_and_windows():
    model = convert(tiny_ann(), 7)
    x = ids(1, 100)
    assert windows(x, 32).shape == (3, 32)
    assert windows(x, 32, max_windows=2).shape == (2, 32)
    ppl = perplexity(model, x, 32)
    assert 1.0 < ppl < 10 * VOCAB
    # the mean next-token cross-entropy over the three windows, each predicted from its own start
    chunks = x[0, :96].view(3, 32)
    out = logits(model, chunks)
    nll = torch.nn.functional.cross_entropy(out[:, :-1].reshape(-1, VOCAB), chunks[:, 1:].reshape(-1))
    assert ppl == pytest.approx(torch.exp(nll).item(), rel=1e-5)
    assert perplexity(model, x, 32, batch=2) == pytest.approx(ppl, rel=1e-5)
    with pytest.raises(ValueError, match="fewer than one window"):
        windows(x, 200)
    with pytest.raises(ValueError, match="window must be an int >= 2"):
        windows(x, 1)


def test_energy_per_token_counts_spikes_of_spiking_operators_only():
    x = ids(1, 16)
    hybrid = energy_per_token(convert(tiny_ann(), 7), x)
    full = energy_per_token(convert(tiny_ann(), 7, operators="spiking"), x)
    float_twin = energy_per_token(convert(tiny_ann(), 7, operators="float"), x)
    assert 0 < hybrid.spikes < full.spikes
    assert hybrid.additions > 0 and hybrid.float_macs < hybrid.ann_macs
    assert float_twin.spikes == 0 and float_twin.float_macs == float_twin.ann_macs
    assert "uJ" in hybrid.summary()


@settings(max_examples=15)
@given(T=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_count_path_equals_spike_path_for_random_T(T, seed):
    model = _SMALL_MODEL.set_spiking(timesteps=T)
    assert assert_paths_agree_on_every_operator(model, ids(1, 6, seed=seed)) == 17


_SMALL_MODEL = convert(tiny_ann("qwen2", bias=True), 7, group_size=4).double()
