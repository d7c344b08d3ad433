"""The three training stages: quantized-ANN training, exact conversion, STDP-inspired learning."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch
from bt_neurons.models import BTSpikingConfig, BTSpikingForCausalLM, convert
from bt_neurons.models.training import (
    GlobalModulation,
    QuantizedActivation,
    StageThreeConfig,
    StageThreeLearner,
    combined_loss,
    distill,
    expected_first_spike_time,
    homeostasis_update,
    load_checkpoint,
    prepare_qat,
    save_checkpoint,
    stdp_delta,
    stdp_update,
    synaptic_tags,
    to_spiking,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional, layer, surrogate
from spikingjelly.activation_based.functional.learning import stdp_linear_step
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from bt_neurons import EIIFEncoder, EIIFNode, QSynapsis, Quantizer, Synapsis
from tests.test_models import VOCAB, ids, tiny_ann

ROOT = Path(__file__).resolve().parent.parent


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def tiny_bt(T: int = 7) -> BTSpikingForCausalLM:
    torch.manual_seed(0)
    cfg = BTSpikingConfig(
        vocab_size=61,
        hidden_size=24,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=6,
        timesteps=T,
        rotated=False,
    )
    return BTSpikingForCausalLM(cfg)


# ---------------------------------------------------------------- stage 1
def test_prepare_qat_swaps_linear_layers_and_activation_points():
    net = prepare_qat(mlp(), bits=5, activations=(nn.ReLU,))
    assert isinstance(net[0], QSynapsis) and isinstance(net[2], QSynapsis)
    assert isinstance(net[1], QuantizedActivation)
    assert net[0].pre.qmax == 15 and net[0].post is None
    x = torch.randn(6, 10)
    q = Quantizer(5)
    h = q(torch.relu(nn.functional.linear(q(x), net[0].layer.weight, net[0].layer.bias)))
    expected = nn.functional.linear(q(h), net[2].layer.weight, net[2].layer.bias)
    assert torch.equal(net(x), expected)


def test_prepare_qat_post_quantizers_and_skip():
    net = prepare_qat(mlp(), timesteps=7, post=True, skip=("2",))
    assert isinstance(net[0], QSynapsis) and net[0].post.qmax == 7
    assert type(net[2]) is nn.Linear


def test_stage1_trains_with_an_ordinary_loop():
    net = prepare_qat(mlp(), timesteps=15, activations=(nn.ReLU,))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_stage1_trains_with_a_transformers_trainer(tmp_path):
    pytest.importorskip("accelerate")
    from transformers import Trainer, TrainingArguments

    model = prepare_qat(tiny_ann("llama", tied=False).train(), timesteps=7)
    data = [{"input_ids": row, "labels": row} for row in ids(8, 12, seed=3)]
    before = model.model.layers[0].mlp.up_proj.layer.weight.detach().clone()
    args = TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=2,
        per_device_train_batch_size=4,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        learning_rate=1e-2,
    )
    result = Trainer(model=model, args=args, train_dataset=data).train()
    assert math.isfinite(result.training_loss)
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.layer.weight)


def test_a_prepared_tied_transformers_model_saves_with_save_pretrained(tmp_path):
    from safetensors.torch import load_file

    model = prepare_qat(tiny_ann("llama", tied=True), timesteps=7)
    model.save_pretrained(tmp_path)
    twin = prepare_qat(tiny_ann("llama", tied=True, seed=5), timesteps=7)
    missing, unexpected = twin.load_state_dict(load_file(tmp_path / "model.safetensors"), strict=False)
    assert not unexpected and set(missing) <= {"lm_head.layer.weight"}
    assert twin.lm_head.layer.weight is twin.model.embed_tokens.weight
    with torch.no_grad():
        assert torch.equal(twin(input_ids=ids()).logits, model(input_ids=ids()).logits)


# ---------------------------------------------------------------- stage 2
def test_eiif_encoder_spike_path_equals_count_path_equals_quantizer():
    torch.manual_seed(0)
    x = torch.randn(5, 9) * 3
    for q in (Quantizer(qmax=7), Quantizer(4, granularity="channel", dynamic=False)):
        if not q.dynamic:
            with q.calibrating():
                q(x)
        expected = q(x)
        assert torch.equal(EIIFEncoder(q)(x), expected)
        assert torch.equal(EIIFEncoder(q, path="spike")(x), expected)
        spikes = EIIFEncoder(q).spikes(x)
        assert spikes.shape == (q.qmax, 5, 9) and set(spikes.unique().tolist()) <= {-1.0, 0.0, 1.0}


def test_converted_mlp_equals_the_trained_quantized_ann():
    net = prepare_qat(mlp(), timesteps=15, activations=(nn.ReLU,), post=True)
    x = torch.randn(8, 10)
    nn.functional.cross_entropy(net(x), torch.zeros(8, dtype=torch.long)).backward()
    with torch.no_grad():
        for p in net.parameters():
            p -= 0.1 * p.grad
        ann_out = net(x)
    to_spiking(net)
    assert isinstance(net[0], Synapsis) and isinstance(net[1][1], EIIFEncoder)
    assert net[0].layer.weight is not None and net[0].T == 15 and net[0].T_post == 15
    with torch.no_grad():
        assert torch.equal(net(x), ann_out)
        to_spiking_spike = to_spiking(prepare_qat(mlp(), timesteps=15), path="spike")
        count_twin = to_spiking(prepare_qat(mlp(), timesteps=15))
        torch.testing.assert_close(to_spiking_spike(x), count_twin(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_converted_hf_llm_equals_the_trained_quantized_ann(kind):
    model = prepare_qat(tiny_ann(kind, bias=True).train(), timesteps=7)
    x = ids(2, 9)
    loss = model(input_ids=x, labels=x).loss
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.05 * p.grad
    model.eval()
    with torch.no_grad():
        before = model(input_ids=x).logits
        to_spiking(model, timesteps=7)
        assert sum(isinstance(m, Synapsis) for m in model.modules()) == 2 * 7 + 1
        assert torch.equal(model(input_ids=x).logits, before)


def test_converted_spiking_llm_equals_its_trained_quantized_ann():
    model = tiny_bt(7).train()
    prepare_qat(model, timesteps=7)
    assert not any(isinstance(m, Synapsis) for m in model.modules())
    x = ids(2, 10)
    x = x % 61
    model(input_ids=x, labels=x).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.05 * p.grad
    model.eval()
    with torch.no_grad():
        before = model(input_ids=x).logits
        to_spiking(model)
        assert torch.equal(model(input_ids=x).logits, before)


def _kl_to(teacher, student, x: torch.Tensor) -> float:
    with torch.no_grad():
        t = torch.log_softmax(teacher(input_ids=x).logits, -1)
        s = torch.log_softmax(student(input_ids=x).logits, -1)
    return float(torch.nn.functional.kl_div(s, t, log_target=True, reduction="batchmean")) / x.shape[1]


def _confident_llama() -> LlamaForCausalLM:
    """A random Llama with larger weights: confident predictions, so conversion at T = 3 costs visibly."""
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.1,
    )
    return LlamaForCausalLM(config).eval()


def test_distill_brings_a_converted_llm_closer_to_its_teacher_and_converts_back():
    ann = _confident_llama()
    teacher_state = {k: v.clone() for k, v in ann.state_dict().items()}
    snn = convert(ann, timesteps=3, group_size=0)  # one scale per token: conversion costs more
    tokens = torch.randint(0, 100, (2000,), generator=torch.Generator().manual_seed(5))
    held_out = torch.randint(0, 100, (8, 32), generator=torch.Generator().manual_seed(9))
    before = _kl_to(ann, snn, held_out)
    losses = distill(snn, ann, tokens, steps=30, lr=3e-4, batch=8, seq=32)
    assert len(losses) == 30 and all(math.isfinite(v) for v in losses)
    assert not snn.training and any(isinstance(m, Synapsis) for m in snn.modules())
    assert not any(isinstance(m, QSynapsis) for m in snn.modules())
    assert _kl_to(ann, snn, held_out) < 0.9 * before
    assert all(
        torch.equal(v, ann.state_dict()[k]) for k, v in teacher_state.items()
    )  # the teacher is untouched


@pytest.mark.parametrize("group_size", [None, 8])
def test_clip_ratio_gets_the_learned_step_size_gradient_and_the_value_is_unchanged(group_size):
    x = torch.randn(3, 16, dtype=torch.float64) * 2
    q = Quantizer(qmax=7, clip=0.7, group_size=group_size).double()
    plain = q(x)
    q.clip_ratio.requires_grad_(True)
    assert q.learns_clip
    y = q(x)
    assert torch.equal(y.detach(), plain)
    w = torch.randn(3, 16, dtype=torch.float64)
    (y * w).sum().backward()
    s, levels = q.scales(x)[0].detach(), q.quantize(x)[0]
    v = x / s
    ds = torch.where(v.abs() <= 7.5, levels - v, levels)  # LSQ: d x_hat / d s
    expected = (w * ds * s / 0.7).sum()  # s = clip * max|x| / Q, so ds / dclip = s / clip
    assert torch.allclose(q.clip_ratio.grad.double(), expected, rtol=1e-6)


def test_distill_can_learn_the_clip_ratios():
    ann = _confident_llama()
    snn = convert(ann, timesteps=3)
    before = {n: float(b) for n, b in snn.named_buffers() if n.endswith("pre.clip_ratio")}
    tokens = torch.randint(0, 100, (2000,), generator=torch.Generator().manual_seed(5))
    losses = distill(snn, ann, tokens, steps=10, lr=3e-4, batch=4, seq=32, learn_clip=True, clip_lr=1e-2)
    assert all(math.isfinite(v) for v in losses)
    after = {n: b for n, b in snn.named_buffers() if n.endswith("pre.clip_ratio")}
    assert after.keys() == before.keys() and len(after) == 2 * 7 + 1  # 7 Synapses a layer, lm_head
    assert any(float(after[n]) != before[n] for n in after)
    assert all(0.05 <= float(b) <= 1.0 and not b.requires_grad and b.grad is None for b in after.values())


def test_distill_rejects_bad_arguments():
    ann = tiny_ann("llama")
    snn = convert(ann, timesteps=3)
    tokens = torch.randint(0, VOCAB, (100,))
    cases = [
        (dict(steps=0), "steps"),
        (dict(batch=True), "batch"),
        (dict(seq=0), "seq"),
        (dict(lr=-1.0), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(clip_lr=0.0), "clip_lr"),
        (dict(seq=100), "seq=100"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            distill(snn, ann, tokens, **kwargs)
    for bad in (tokens.float(), tokens.reshape(10, 10)):
        with pytest.raises(ValueError, match="token_ids"):
            distill(snn, ann, bad, seq=8)
    with pytest.raises(TypeError, match="model"):
        distill(nn.Linear(2, 2), ann, tokens, seq=8)
    assert not any(isinstance(m, QSynapsis) for m in snn.modules())  # nothing was prepared


def test_a_converted_checkpoint_goes_back_to_its_quantized_twin_and_returns_exactly():
    model = convert(tiny_ann("llama"), timesteps=7)
    x = ids(2, 9)
    with torch.no_grad():
        spiking = model(input_ids=x).logits
        prepare_qat(model, timesteps=7)
        assert torch.equal(model(input_ids=x).logits, spiking)
        to_spiking(model)
        assert torch.equal(model(input_ids=x).logits, spiking)


# ---------------------------------------------------------------- stage 3: the rules
def test_stdp_two_neurons_by_hand():
    T = 4
    pre = torch.zeros(T, 1, 1)
    post = torch.zeros(T, 1, 1)
    pre[0], post[2] = 1, 1  # post fires 2 steps after pre: potentiation
    assert stdp_delta(pre, post, a_plus=0.3, tau_plus=2.0).item() == pytest.approx(0.3 * math.exp(-1.0))
    pre.zero_(), post.zero_()
    pre[2], post[1] = 1, 1  # post before pre (dt = -1): depression
    assert stdp_delta(pre, post, a_minus=0.2, tau_minus=4.0).item() == pytest.approx(-0.2 * math.exp(-0.25))
    post[1], post[2] = 0, -1  # simultaneous (dt = 0) counts as depression; a negative spike flips the sign
    assert stdp_delta(pre, post, a_minus=0.2).item() == pytest.approx(0.2)


def test_one_learner_update_on_a_two_neuron_synapsis_by_hand():
    lin = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(0.5)
    syn = Synapsis(lin, 3, post=False)
    learner = StageThreeLearner(nn.Sequential(syn).train(), StageThreeConfig(eta_w=0.1))
    syn(torch.tensor([[2.0]]))  # pre count 3 (fires at steps 1, 2, 3); output 1.0, encoded: also 3 spikes
    info = learner.step(2.0)
    # delta = A+ (2 e^{-1/2} + e^{-1}) - A- (3 + 2 e^{-1/2} + e^{-1}) = -3 A- = -0.03
    # Tag = sigmoid(1 + 1 - 2) = 0.5; G = 0.5 (the first loss is its own baseline)
    expected = 0.5 + 0.1 * 0.5 * 0.5 * (-0.03 - 0.5)
    assert info["modulation"] == 0.5
    assert lin.weight.item() == pytest.approx(expected, abs=1e-7)


def test_zero_modulation_leaves_weights_and_neurons_unchanged():
    w = torch.randn(3, 4)
    delta = torch.randn(3, 4)
    assert torch.equal(stdp_update(w, delta, 0.0, eta_w=1.0), torch.zeros_like(w))
    node = EIIFNode(step_mode="m", r=0.5)
    before = [t.clone() for t in (node.theta_0, node.alpha, node.r)]
    homeostasis_update(node, 0.9, 3.0, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(before, (node.theta_0, node.alpha, node.r), strict=True))

    class Zero(GlobalModulation):
        def __call__(self, task_loss):
            super().__call__(task_loss)
            return 0.0

    syn = Synapsis(nn.Linear(4, 3), 7, post=False)
    net = nn.Sequential(syn, EIIFNode(step_mode="m")).train()
    learner = StageThreeLearner(net, StageThreeConfig(eta_w=1.0, eta_theta=1.0, eta_alpha=1.0, eta_r=1.0))
    learner.modulation = Zero()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.randn(5, 2, 4))
    learner.step(1.5)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


@settings(max_examples=25, deadline=None)
@given(
    T=st.integers(1, 6),
    N=st.integers(1, 4),
    tau_plus=st.floats(0.5, 8.0),
    tau_minus=st.floats(0.5, 8.0),
    seed=st.integers(0, 2**16),
)
def test_stdp_delta_equals_spikingjelly_stdp_with_matched_traces(T, N, tau_plus, tau_minus, seed):
    g = torch.Generator().manual_seed(seed)
    pre = torch.randint(-1, 2, (T, N, 5), generator=g).double()
    post = torch.randint(-1, 2, (T, N, 3), generator=g).double()
    a_plus, a_minus = 0.7, 0.3
    weight = torch.zeros(3, 5, dtype=torch.float64)
    traces = (torch.zeros(N, 5, dtype=torch.float64), torch.zeros(N, 3, dtype=torch.float64))
    sj = torch.zeros_like(weight)
    for t in range(T):  # SpikingJelly's decay 1 - 1/tau equals e^{-1/tau} for tau = 1 / (1 - e^{-1/tau})
        dw, traces = stdp_linear_step(
            pre[t],
            post[t],
            traces,
            weight,
            tau_pre=1 / (1 - math.exp(-1 / tau_plus)),
            tau_post=1 / (1 - math.exp(-1 / tau_minus)),
            f_pre=lambda w: a_minus,
            f_post=lambda w: a_plus,
        )
        sj += dw - a_plus * post[t].T @ pre[t]  # SpikingJelly also potentiates simultaneous pairs
    ours = stdp_delta(pre, post, a_plus=a_plus, a_minus=a_minus, tau_plus=tau_plus, tau_minus=tau_minus)
    torch.testing.assert_close(ours, sj / N)


def test_tags_and_global_modulation_by_hand():
    tags = synaptic_tags(torch.tensor([0.2, 0.0]), torch.tensor([0.5]), 0.4)
    torch.testing.assert_close(tags, torch.sigmoid(torch.tensor([[0.3, 0.1]])))
    m = GlobalModulation(beta=2.0, window=2)
    assert m(3.0) == 0.5
    assert m(1.0) == pytest.approx(1 / (1 + math.exp(-2.0 * (2.0 - 1.0))))
    assert m(2.0) == pytest.approx(1 / (1 + math.exp(1.0)))  # window of 2: baseline (1 + 2) / 2 = 1.5
    assert m.baseline == pytest.approx(1.5)


def test_global_modulation_window_follows_eq_28():
    m = GlobalModulation(beta=1.0, window=3)
    for loss in (4.0, 2.0, 3.0):
        g = m(loss)
    assert m.baseline == pytest.approx(3.0) and g == 0.5
    g = m(1.0)  # baseline over the last 3: (2 + 3 + 1) / 3 = 2
    assert g == pytest.approx(1 / (1 + math.exp(-1.0)))


def test_expected_first_spike_time_by_hand():
    charge = torch.tensor([[1.0], [1.0]])
    thr = torch.tensor([0.5, 1.5])
    p1, p2 = torch.sigmoid(torch.tensor(0.5 / 0.2)), torch.sigmoid(torch.tensor(-0.5 / 0.2))
    out = expected_first_spike_time(charge, thr, 0.2)
    assert out.item() == pytest.approx(float(1 * p1 + 2 * p2 * (1 - p1)), rel=1e-6)


def test_homeostasis_moves_toward_the_targets():
    node = EIIFNode(step_mode="m", r=0.5)
    homeostasis_update(node, spike_rate=0.5, membrane=2.0, modulation=1.0, s_target=0.1, v_target=0.5)
    assert node.theta_0.item() == pytest.approx(0.5 + 0.01 * 0.4)  # fires too much: higher threshold
    assert node.alpha.item() == pytest.approx(1.0 + 0.01 * 1.5)
    assert node.r.item() == pytest.approx(0.5 + 0.01 * 2.0)


def test_combined_loss_weighs_every_term():
    cfg = StageThreeConfig(lambda_task=2.0, lambda_stdp=0.5, lambda_time=0.25)
    terms = {"task": torch.tensor(1.0), "stdp": torch.tensor(4.0), "time": torch.tensor(8.0)}
    assert float(combined_loss(terms, cfg)) == pytest.approx(2.0 + 2.0 + 2.0)
    with pytest.raises(ValueError, match="unknown loss terms"):
        combined_loss({"task": torch.tensor(1.0), "energy": torch.tensor(1.0)}, cfg)
    with pytest.raises(ValueError, match="task"):
        combined_loss({"stdp": torch.tensor(1.0)}, cfg)


def test_learner_on_a_spikingjelly_net_updates_neurons_and_trains():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(6, 12, step_mode="m"),
        EIIFNode(step_mode="m", r=0.8, learnable=True, surrogate_function=surrogate.ATan()),
        layer.Linear(12, 3, step_mode="m"),
    ).train()
    prepare_qat(net, timesteps=7)
    to_spiking(net)
    assert isinstance(net[0], Synapsis)
    learner = StageThreeLearner(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    theta = net[1].theta_0.item()
    x, y = torch.randn(4, 8, 6) * 2, torch.randint(0, 3, (8,))
    for _ in range(3):
        info = learner.training_step(nn.functional.cross_entropy(net(x).mean(0), y), opt)
        functional.reset_net(net)
    assert set(learner.last_terms) >= {"task", "stdp", "rate", "adaptation", "rest", "time", "row_sum"}
    assert net[1].theta_0.item() != theta and math.isfinite(info["loss"])
    learner.close()
    net(x)
    assert learner._inputs == {}


def test_learner_on_an_snntorch_net_updates_the_neuron_it_steps():
    from bt_neurons.snntorch import EIIF

    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif, self.fc2 = (
                nn.Linear(6, 12),
                EIIF(r=0.7, learn_threshold=True),
                nn.Linear(12, 3),
            )

        def forward(self, x_seq):
            mem = self.lif.init_mem()
            out = []
            for x in x_seq:
                spk, mem = self.lif(self.fc1(x), mem)
                out.append(self.fc2(spk))
            return torch.stack(out)

    net = to_spiking(prepare_qat(Net(), timesteps=7)).train()
    learner = StageThreeLearner(net)
    assert set(learner.nodes) == {"lif"} and set(learner.synapses) == {"fc1", "fc2"}
    theta = net.lif.node.theta_0.item()
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = torch.randn(5, 8, 6) * 2, torch.randint(0, 3, (8,))
    info = learner.training_step(nn.functional.cross_entropy(net(x).mean(0), y), opt)
    assert math.isfinite(info["loss"]) and "rate" in learner.last_terms
    assert net.lif.node.theta_0.item() != theta


def test_learner_on_the_spiking_llm_changes_the_watched_synapses():
    model = tiny_bt(7)
    prepare_qat(model, timesteps=7)
    to_spiking(model)
    model.train()
    learner = StageThreeLearner(model)
    assert "model.layers.0.self_attn.q_proj" in learner.synapses
    q = model.model.layers[0].self_attn.q_proj.layer.weight
    before = q.detach().clone()
    x = ids(2, 10) % 61
    learner.step(model(input_ids=x, labels=x).loss)
    assert not torch.equal(before, q)
    model.eval()
    model(input_ids=x)
    assert learner._inputs == {}  # evaluation passes are not recorded


# ---------------------------------------------------------------- bad input and safe state
def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="nothing to quantize"):
        prepare_qat(nn.Sequential(nn.ReLU()), timesteps=7)
    with pytest.raises(ValueError, match="exactly one of bits"):
        prepare_qat(mlp(), bits=4, timesteps=7)
    with pytest.raises(ValueError, match="exactly one of bits"):
        prepare_qat(mlp())
    with pytest.raises(ValueError, match="bits"):
        prepare_qat(mlp(), bits=1)
    with pytest.raises(ValueError, match="skip"):
        prepare_qat(mlp(), timesteps=7, skip=("nope",))
    with pytest.raises(TypeError, match="activations"):
        prepare_qat(mlp(), timesteps=7, activations=("relu",))
    with pytest.raises(ValueError, match="nothing to convert"):
        to_spiking(mlp())
    with pytest.raises(ValueError, match="mismatched bit widths"):
        to_spiking(prepare_qat(mlp(), bits=4), timesteps=15)
    with pytest.raises(ValueError, match="mismatched bit widths"):
        prepare_qat(nn.Sequential(Synapsis(nn.Linear(3, 3), 7)), timesteps=15)
    with pytest.raises(ValueError, match="nothing for stage 3"):
        StageThreeLearner(mlp())
    with pytest.raises(ValueError, match="synapses"):
        StageThreeLearner(nn.Sequential(Synapsis(nn.Linear(3, 3), 7)), synapses=["1"])
    with pytest.raises(ValueError, match="tau_plus"):
        StageThreeConfig(tau_plus=0.0)
    with pytest.raises(ValueError, match="lambda_task"):
        StageThreeConfig(lambda_task=float("nan"))
    with pytest.raises(ValueError, match="pre and post"):
        stdp_delta(torch.zeros(3, 2, 4), torch.zeros(4, 2, 1))
    with pytest.raises(ValueError, match="window"):
        GlobalModulation(window=0)


def test_a_non_finite_loss_changes_nothing():
    torch.manual_seed(0)
    net = nn.Sequential(Synapsis(nn.Linear(4, 3), 7, post=False)).train()
    learner = StageThreeLearner(net)
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    x = torch.randn(5, 4)
    learner.training_step(net(x).pow(2).mean(), opt)  # one good step: the optimiser has state
    state = {k: v.clone() for k, v in net.state_dict().items()}
    opt_state = {k: v.clone() for k, v in opt.state[net[0].layer.weight].items()}
    history = list(learner.modulation.history)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="finite"):
            learner.training_step(net(x).sum() * bad, opt)
        with pytest.raises(ValueError, match="finite"):
            learner.step(bad)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert all(torch.equal(opt_state[k], v) for k, v in opt.state[net[0].layer.weight].items())
    assert list(learner.modulation.history) == history


def test_checkpoint_round_trip_with_tied_weights_optimizer_and_learner(tmp_path):
    model = tiny_bt(7)
    prepare_qat(model, timesteps=7)
    to_spiking(model)
    model.train()
    learner = StageThreeLearner(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = ids(2, 10) % 61
    learner.training_step(model(input_ids=x, labels=x).loss, opt)
    path = save_checkpoint(
        tmp_path / "ckpt.safetensors", model, optimizer=opt, learner=learner, info={"step": 1}
    )
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]

    other = tiny_bt(7)
    prepare_qat(other, timesteps=7)
    to_spiking(other)
    other_opt = torch.optim.Adam(other.parameters(), lr=1e-3)
    other_learner = StageThreeLearner(other)
    assert load_checkpoint(path, other, optimizer=other_opt, learner=other_learner) == {"step": 1}
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    )
    assert other.lm_head.layer.weight is other.model.embed_tokens.weight
    assert other_learner.state_dict() == learner.state_dict()
    model.eval(), other.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, other(input_ids=x).logits)
    assert other_opt.state_dict()["state"].keys() == opt.state_dict()["state"].keys()


def test_checkpoint_writes_are_atomic_and_loads_check_before_changing(tmp_path, monkeypatch):
    net = prepare_qat(mlp(), timesteps=7)
    path = save_checkpoint(tmp_path / "ckpt.safetensors", net, info={"stage": 1})
    good = path.read_bytes()

    import bt_neurons.models.training.checkpoint as ck

    def broken(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, info={"stage": 2})
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]
    monkeypatch.undo()

    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(tmp_path / "x.safetensors", net, info={"bad": float("nan")})
    other = nn.Sequential(nn.Linear(10, 4))
    before = other[0].weight.detach().clone()
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(path, other)
    assert torch.equal(before, other[0].weight)
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "corrupt.safetensors", net)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors", net)


# ---------------------------------------------------------------- end to end, tiny
def test_three_stages_end_to_end_tiny(capsys):
    spec = importlib.util.spec_from_file_location("bench_training", ROOT / "benchmarks" / "bench_training.py")
    bench = importlib.util.module_from_spec(spec)
    sys.modules["bench_training"] = bench
    spec.loader.exec_module(bench)
    results = bench.main(["--quick"])
    assert results["stage2_equal"] is True
    assert results["stage2"] == results["stage1"]
    for key in (
        "ann",
        "stage1",
        "stage2",
        "stage2_spike",
        "stage3_paper",
        "stage3_local_only",
        "stage3_task_only",
    ):
        assert 1.0 < results[key] < 256.0, key
    assert "| 3: StageThreeLearner" in capsys.readouterr().out
