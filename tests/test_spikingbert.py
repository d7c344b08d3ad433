"""SpikingBERT: the model, its simulation, the implicit gradient at the equilibrium, saving and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from bt_neurons.models.spikingbert import (
    IMPLICIT_SOLVERS,
    SpikingBertConfig,
    SpikingBertForSequenceClassification,
    SpikingBertModel,
    implicit_rates,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import neuron
from test_spikingbert_teacher import WORDS, tiny_tokenizer
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, PreTrainedTokenizerFast


def tiny(**overrides) -> SpikingBertForSequenceClassification:
    fields = dict(
        vocab_size=len(WORDS),
        hidden_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
        time_steps=6,
        classifier_dropout=0.0,
    )
    return SpikingBertForSequenceClassification(SpikingBertConfig(**(fields | overrides)))


def batch(b: int = 3, length: int = 7, *, pad: bool = True):
    ids = torch.randint(0, len(WORDS), (b, length))
    mask = torch.ones(b, length, dtype=torch.long)
    if pad and length > 2:
        mask[0, length - 2 :] = 0
    return ids, mask


def reference_rates(model: SpikingBertForSequenceClassification, ids, mask, T: int) -> list[torch.Tensor]:
    """The block outputs' rates, simulated layer by layer with multi-step SpikingJelly IF nodes.

    Written from the equations, not from the model's code: every layer gets its
    whole ``[T, B, L, ...]`` current at once (the network has no feedback, so
    this is the same simulation as step by step).
    """
    bert, cfg = model.bert, model.config

    def fire(current):
        node = neuron.IFNode(v_threshold=cfg.v_threshold, v_reset=None, step_mode="m")
        return node(current)

    def heads(x):  # [T, B, L, d] -> [T, B, H, L, d_h]
        return x.unflatten(-1, (cfg.num_attention_heads, cfg.head_size)).transpose(2, 3)

    current = bert.embeddings(ids, torch.zeros_like(ids))
    s = fire(current.expand(T, *current.shape).contiguous())
    additive = (1.0 - mask[None, :, None, None, :].to(s.dtype)) * torch.finfo(s.dtype).min
    outs = [s.mean(0)]
    for blk in bert.layer:
        k, v, q = fire(blk.key(s)), fire(blk.value(s)), blk.query(s)
        p = (heads(q) @ heads(k).transpose(-1, -2) / math.sqrt(cfg.head_size) + additive).softmax(-1)
        a = fire((p @ heads(v)).transpose(2, 3).flatten(-2))
        r = fire(blk.attention_norm(blk.attention_dense(a) + s))
        i = fire(blk.intermediate(r))
        s = fire(blk.output_norm(blk.output_dense(i) + r))
        outs.append(s.mean(0))
    return outs


@settings(max_examples=12, deadline=None)
@given(
    T=st.integers(1, 12),
    b=st.integers(1, 3),
    length=st.integers(1, 6),
    layers=st.integers(1, 2),
    seed=st.integers(0, 2**16),
    v_threshold=st.sampled_from([0.5, 1.0]),
)
def test_rates_equal_a_layer_by_layer_spikingjelly_simulation(T, b, length, layers, seed, v_threshold):
    torch.manual_seed(seed)
    model = tiny(num_hidden_layers=layers, v_threshold=v_threshold).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0)  # currents well above threshold: every layer fires
    ids, mask = batch(b, length)
    with torch.no_grad():
        out = model.bert(ids, mask, time_steps=T, output_hidden_states=True)
        expected = reference_rates(model, ids, mask, T)
    assert len(out.hidden_states) == layers + 1
    for got, want in zip(out.hidden_states, expected, strict=True):
        assert torch.equal(got, want)
        assert torch.equal(torch.round(got * T), got * T)  # a count of spikes over T
    assert out.spike_count.shape == (b,) and bool((out.spike_count >= 0).all())


def test_outputs_shapes_attention_and_spike_count():
    model = tiny().eval()
    ids, mask = batch()
    with torch.no_grad():
        out = model(ids, mask, output_hidden_states=True, output_attentions=True)
    assert out.logits.shape == (3, 3)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 2, 7, 7)
    rows = out.attentions[1].sum(-1)
    assert torch.allclose(rows, torch.ones_like(rows))
    assert bool((out.attentions[0][0, :, :, 5:] == 0).all())  # padded keys get no attention
    # spike_count: the spikes of every layer over the unpadded tokens
    with torch.no_grad():
        counts = model.bert._simulate(
            model.bert.embeddings(ids, torch.zeros_like(ids)),
            (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min,
            model.config.time_steps,
        )
    total = sum((c.sum(-1) * mask).sum(-1) for c in counts.values())
    assert torch.equal(out.spike_count, total)


def test_padding_leaves_the_unpadded_tokens_alone():
    model = tiny().double().eval()
    ids, _ = batch(1, 5, pad=False)
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1] * 5 + [0] * 3])
    with torch.no_grad():
        alone = model(ids).logits
        with_pads = model(padded, mask).logits
    assert torch.allclose(alone, with_pads, atol=1e-12)


def test_the_ann_twin_is_the_fixed_point_of_the_rate_map():
    model = tiny(spiking=False)
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2])
    out = model(ids, mask, labels=labels, output_hidden_states=True)
    assert out.spike_count is None
    bert = model.bert
    current = bert.embeddings(ids, torch.zeros_like(ids))
    additive = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    star = _chained_rates(bert, current, additive)
    mapped = bert.rate_map(current, additive, star)
    for name, value in star.items():
        assert torch.allclose(mapped[name], value), name  # F(a*) = a*
    assert torch.allclose(out.hidden_states[-1], star["1_output"])
    out.loss.backward()
    assert all(
        p.grad is not None
        for p in model.parameters()
        if p is not model.bert.embeddings.token_type_embeddings.weight
    )


def _chained_rates(bert: SpikingBertModel, current, additive) -> dict[str, torch.Tensor]:
    """The fixed point of the rate map: the rate network's activations, layer after layer."""
    rates: dict[str, torch.Tensor] = {}
    for _ in range(1 + 6 * len(bert.layer)):  # nilpotent: depth iterations reach the fixed point
        rates = bert.rate_map(current, additive, rates if rates else _zeros(bert, current))
    return rates


def _zeros(bert: SpikingBertModel, current) -> dict[str, torch.Tensor]:
    b, length, d = current.shape
    widths = {"intermediate": bert.config.intermediate_size}
    return {
        name: current.new_zeros(b, length, widths.get(name.split("_", 1)[-1], d))
        for name in bert.neuron_names
    }


def _gradients(model) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def _loss_and_grads(model, ids, mask, labels, **forward):
    model.zero_grad()
    out = model(ids, mask, labels=labels, output_hidden_states=True, output_attentions=True, **forward)
    loss = out.loss + sum(s.masked_fill(s < -1e30, 0).square().mean() for s in out.attention_scores) * 1e-3
    loss.backward()
    return float(loss.detach()), _gradients(model)


@pytest.mark.parametrize("solver", [s for s in IMPLICIT_SOLVERS if s != "exact"])
def test_the_iterative_solvers_give_the_exact_implicit_gradient(solver):
    model = tiny()
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2])
    loss, exact = _loss_and_grads(model, ids, mask, labels)
    model.config.implicit_solver = solver
    model.config.solver_tol = 1e-9
    model.config.solver_max_iter = 60
    loss2, solved = _loss_and_grads(model, ids, mask, labels)
    assert loss == loss2  # the same simulated rates forward
    assert torch.allclose(solved, exact, atol=1e-5, rtol=1e-4)
    assert model.bert.last_solve.solver == solver and model.bert.last_solve.residual < 1e-6


@pytest.mark.parametrize("solver", IMPLICIT_SOLVERS)
def test_at_the_fixed_point_the_implicit_gradient_is_backprop_through_the_rate_network(solver, monkeypatch):
    """Where the simulation's rates are the fixed point, every solver's gradient is the ANN twin's."""
    model = tiny(implicit_solver=solver, solver_tol=1e-10, solver_max_iter=60).double()
    twin = tiny(spiking=False).double()
    twin.load_state_dict(model.state_dict())
    ids, mask = batch()
    labels = torch.tensor([2, 0, 1])
    _, want = _loss_and_grads(twin, ids, mask, labels)

    def fixed_point(current, additive, steps):
        with torch.no_grad():
            return {n: r * steps for n, r in _chained_rates(model.bert, current, additive).items()}

    monkeypatch.setattr(model.bert, "_simulate", fixed_point)
    _, got = _loss_and_grads(model, ids, mask, labels)
    assert torch.allclose(got, want, atol=1e-8, rtol=1e-6)


def test_implicit_rates_on_a_map_with_feedback_match_unrolling_and_finite_differences():
    """A contractive map with feedback (``J`` not nilpotent): z = tanh(W z + U x)."""
    torch.manual_seed(3)
    W = (0.4 * torch.randn(6, 6, dtype=torch.float64) / math.sqrt(6)).requires_grad_()
    U = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 4, dtype=torch.float64)
    target = torch.randn(5, 6, dtype=torch.float64)

    def rate_map(z):
        return {"z": torch.tanh(z["z"] @ W.T + x @ U.T)}

    def fixed_point(W_, U_):
        z = torch.zeros(5, 6, dtype=torch.float64)
        for _ in range(200):
            z = torch.tanh(z @ W_.T + x @ U_.T)
        return z

    with torch.no_grad():
        star = fixed_point(W, U)
    for solver in ("broyden", "anderson", "fixed_point_iter"):
        z = implicit_rates(rate_map, {"z": star}, solver=solver, max_iter=100, tol=1e-12)["z"]
        assert torch.equal(z.detach(), star)
        gW, gU = torch.autograd.grad(((z - target) ** 2).sum(), (W, U))
        unrolled = fixed_point(W, U)
        uW, uU = torch.autograd.grad(((unrolled - target) ** 2).sum(), (W, U))
        assert torch.allclose(gW, uW, atol=1e-8) and torch.allclose(gU, uU, atol=1e-8), solver
    # and finite differences on one weight
    eps = 1e-6
    with torch.no_grad():
        Wp, Wm = W.clone(), W.clone()
        Wp[1, 2] += eps
        Wm[1, 2] -= eps
        fd = (((fixed_point(Wp, U) - target) ** 2).sum() - ((fixed_point(Wm, U) - target) ** 2).sum()) / (
            2 * eps
        )
    assert abs(float(gW[1, 2]) - float(fd)) < 1e-6


def test_bptt_gives_the_same_forward_and_a_surrogate_gradient():
    model = tiny()
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2])
    loss, implicit = _loss_and_grads(model, ids, mask, labels)
    model.config.gradient = "bptt"
    loss2, bptt = _loss_and_grads(model, ids, mask, labels)
    assert loss == loss2
    assert torch.isfinite(bptt).all() and bool(bptt.abs().sum() > 0)
    assert not torch.allclose(bptt, implicit)  # a different gradient: the surrogate's, through T steps


def _saved_bytes(model, ids, mask, labels) -> int:
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(ids, mask, labels=labels).loss
    loss.backward()
    return total


def test_the_implicit_gradient_saves_as_much_for_backward_at_every_T():
    ids, mask = batch()
    labels = torch.tensor([0, 1, 2])
    implicit = [_saved_bytes(tiny(time_steps=T), ids, mask, labels) for T in (2, 8, 32)]
    bptt = [_saved_bytes(tiny(time_steps=T, gradient="bptt"), ids, mask, labels) for T in (2, 8, 32)]
    assert implicit[0] == implicit[1] == implicit[2]
    assert bptt[0] < bptt[1] < bptt[2] and bptt[2] > 8 * implicit[2]


def test_save_load_round_trip_with_the_auto_classes(tmp_path):
    model = tiny(teacher_hidden_size=12).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), SpikingBertConfig)
    back = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert isinstance(back, SpikingBertForSequenceClassification)
    assert back.state_dict().keys() == model.state_dict().keys()  # fit_dense included
    assert torch.equal(back.fit_dense.weight, model.fit_dense.weight)
    ids, mask = batch()
    with torch.no_grad():
        assert torch.equal(back(ids, mask).logits, model(ids, mask).logits)
    encoder = AutoModel.from_pretrained(tmp_path)
    assert isinstance(encoder, SpikingBertModel)
    with pytest.raises(ValueError, match="safetensors only"):
        SpikingBertForSequenceClassification.from_pretrained(tmp_path, use_safetensors=False)


def test_text_classification_pipeline():
    from transformers import pipeline

    tok = PreTrainedTokenizerFast(
        tokenizer_object=tiny_tokenizer(), pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]"
    )
    model = tiny().eval()
    model.config.id2label = {0: "comedy", 1: "history", 2: "tragedy"}
    model.config.label2id = {v: k for k, v in model.config.id2label.items()}
    classify = pipeline("text-classification", model=model, tokenizer=tok)
    answers = classify(["love war", "king fool crown jest"])
    assert [a["label"] in ("comedy", "history", "tragedy") for a in answers] == [True, True]
    enc = tok(["love war"], return_tensors="pt")
    with torch.no_grad():
        probs = model(**enc).logits.softmax(-1)[0]
    assert answers[0]["label"] == model.config.id2label[int(probs.argmax())]
    assert abs(answers[0]["score"] - float(probs.max())) < 1e-6


@pytest.mark.parametrize(
    "fields, error, match",
    [
        ({"hidden_size": 10, "num_attention_heads": 4}, ValueError, "multiple of num_attention_heads"),
        ({"time_steps": 0}, ValueError, "time_steps"),
        ({"gradient": "rtrl"}, ValueError, "gradient must be one of"),
        ({"implicit_solver": "newton"}, ValueError, "implicit_solver must be one of"),
        ({"v_threshold": 0.0}, ValueError, "v_threshold"),
        ({"classifier_dropout": 1.5}, ValueError, "classifier_dropout"),
        ({"spiking": "yes"}, TypeError, "spiking"),
        ({"teacher_hidden_size": -1}, ValueError, "teacher_hidden_size"),
        ({"pad_token_id": 40000}, ValueError, "pad_token_id"),
    ],
)
def test_config_refuses_bad_fields(fields, error, match):
    with pytest.raises(error, match=match):
        SpikingBertConfig(**fields)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda ids, mask: {"input_ids": ids.float()}, TypeError, "input_ids must be an integer tensor"),
        (lambda ids, mask: {"input_ids": ids[0]}, ValueError, "add a batch axis"),
        (lambda ids, mask: {"input_ids": ids + 100}, ValueError, "vocabulary size"),
        (lambda ids, mask: {"input_ids": ids.repeat(1, 3)}, ValueError, "max_position_embeddings"),
        (
            lambda ids, mask: {"input_ids": ids, "attention_mask": mask[:, :3]},
            ValueError,
            "attention_mask must have",
        ),
        (
            lambda ids, mask: {"input_ids": ids, "attention_mask": mask * 2},
            ValueError,
            "attention_mask must hold",
        ),
        (
            lambda ids, mask: {"input_ids": ids, "attention_mask": mask.float()},
            TypeError,
            "attention_mask must be",
        ),
        (
            lambda ids, mask: {"input_ids": ids, "token_type_ids": mask * 2},
            ValueError,
            "token_type_ids must hold",
        ),
        (
            lambda ids, mask: {"input_ids": ids, "labels": torch.tensor([0, 1])},
            ValueError,
            "labels must have",
        ),
        (
            lambda ids, mask: {"input_ids": ids, "labels": torch.tensor([0, 1, 3])},
            ValueError,
            "labels must lie",
        ),
        (lambda ids, mask: {"input_ids": ids, "time_steps": 0}, ValueError, "time_steps"),
    ],
)
def test_forward_refuses_bad_input(make, error, match):
    model = tiny()
    ids, mask = batch()
    with pytest.raises(error, match=match):
        model(**make(ids, mask))


def test_track_spikes_counts_the_spikes_additions_and_the_twins_macs():
    from bt_neurons.accounting import track_spikes

    model = tiny().eval()
    ids, mask = batch()
    with torch.no_grad(), track_spikes() as stats:
        out = model(ids, mask)
    assert stats.spikes == float(out.spike_count.sum())
    tokens, length, d, d_ff = int(mask.sum()), ids.shape[1], 8, 16
    assert stats.macs == 2 * tokens * (4 * d * d + 2 * d * d_ff + 2 * length * d)  # BERT's, 2 blocks
    assert stats.dense_macs == 2 * 6 * tokens * (2 * 2 * d + 2 * length)  # LayerNorms and softmax, T = 6
    rows = stats.by_operator
    fan_out = {
        "key": length,
        "value": length,
        "attention": d,
        "attention_output": d_ff + 1,
        "intermediate": d,
    }
    for name, (spikes, additions, _, _) in rows.items():
        layer = name.removeprefix("spikingbert.").partition("_")[2] or "output"
        expected = 0.0 if name == "spikingbert.1_output" else spikes * fan_out.get(layer, 3 * d + 1)
        assert additions == expected, name
    assert stats.energy_pj > 0 and stats.ann_energy_pj > 0
