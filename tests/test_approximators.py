"""Approximators: exact paths, shipped accuracy, files, gradients, faces and bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from bt_neurons.approximators import (
    BUILTIN_APPROXIMATORS,
    BUILTIN_TARGETS,
    NeuronArrayApproximator,
    SiLUApproximator,
    SnnTorchApproximator,
    fit_approximator,
    load_pretrained,
    make_edges,
)
from bt_neurons.approximators.builtin import PRETRAINED_DIR
from hypothesis import given
from hypothesis import strategies as st
from spikingjelly.activation_based import functional
from strategies import inputs

from bt_neurons.snntorch import reset


@st.composite
def arrays(draw):
    P = draw(st.integers(1, 6))
    T = draw(st.integers(1, 10))
    symmetry = draw(st.sampled_from(["none", "even", "odd"]))
    lo = 0.0 if symmetry != "none" else draw(st.floats(-5, 0))
    widths = draw(st.lists(st.floats(0.05, 3), min_size=P, max_size=P))
    edges = torch.tensor([lo] + [lo + sum(widths[: i + 1]) for i in range(P)])
    thr = torch.tensor(draw(st.lists(st.floats(0.3, 2.4), min_size=P * T, max_size=P * T))).reshape(P, T)
    amp = torch.tensor(draw(st.lists(st.floats(-3, 3), min_size=P * T, max_size=P * T))).reshape(P, T)
    tails = draw(st.tuples(st.floats(-2, 2), st.floats(-2, 2), st.floats(-2, 2), st.floats(-2, 2)))
    return NeuronArrayApproximator(
        edges,
        T,
        symmetry=symmetry,
        thresholds=thr,
        amplitudes=amp,
        left_tail=tails[:2],
        right_tail=tails[2:],
    )


def spike_sum(approx: NeuronArrayApproximator, x: torch.Tensor) -> torch.Tensor:
    approx.path, approx.step_mode = "spike", "m"
    functional.reset_net(approx)
    out = approx(x.expand(approx.T, *x.shape))
    approx.path = "count"
    return out


@given(approx=arrays(), data=st.data())
def test_count_path_equals_spike_path(approx, data):
    edge_values = approx.edges.tolist()
    x = data.draw(inputs((7, 3), scale=12.0, specials=edge_values + [0.0]))
    out_seq = spike_sum(approx, x)
    torch.testing.assert_close(approx.count(x), out_seq.sum(0), rtol=1e-6, atol=1e-5)
    # the spikes themselves: number of non-zero steps inside the domain
    fired = (out_seq != 0).sum(0)
    k, u, inside, _ = approx.route(x)
    thr, amp = approx.thresholds.detach().T[:, k], approx.amplitudes.detach().T[:, k]
    ref_fired = ((u.unsqueeze(0) >= thr) & (amp != 0)).sum(0)
    # an odd approximator multiplies by sign(x), which silences x = 0
    mask = inside & ~((x == 0) & (approx.symmetry == "odd"))
    assert torch.equal(torch.where(mask, fired, 0), torch.where(mask, ref_fired, 0))


@pytest.mark.parametrize("name", sorted(BUILTIN_APPROXIMATORS))
def test_builtin_count_equals_spike_path(name):
    approx = load_pretrained(name)
    lo, hi = BUILTIN_TARGETS[name].full_domain
    if lo > 0:
        x = torch.logspace(math.log10(lo) - 1, math.log10(hi) + 1, 3001)
    else:
        x = torch.linspace(lo - 2, hi + 2, 3001)
    torch.testing.assert_close(approx(x), spike_sum(approx, x).sum(0), rtol=1e-5, atol=1e-5)


# generous bounds: the benchmark records the real figures, these catch regressions
BOUNDS = {
    "silu": {"rel_l2": 0.01, "max_abs": 0.05},
    "gelu": {"rel_l2": 0.01, "max_abs": 0.05},
    "sigmoid": {"rel_l2": 0.01, "max_abs": 0.02},
    "tanh": {"rel_l2": 0.01, "max_abs": 0.02},
    "square": {"rel_l2": 0.01},
    "sqrt": {"max_rel": 0.01},
    "rsqrt": {"max_rel": 0.01},
    "reciprocal": {"max_rel": 0.01},
    "exp": {"max_abs": 0.01},
}


@pytest.mark.parametrize("name", sorted(BOUNDS))
def test_shipped_accuracy(name):
    from bt_neurons.approximators import evaluate

    spec = BUILTIN_TARGETS[name]
    approx = load_pretrained(name)
    assert approx.T <= 16
    report = evaluate(approx, spec.fn, spec.full_domain, spec.sampler(), samples=50_000)
    for metric, bound in BOUNDS[name].items():
        assert getattr(report, metric) <= bound, (name, metric, getattr(report, metric))
    assert report.max_spikes <= approx.T


def test_silu_is_linear_beyond_the_domain_unlike_the_reference():
    silu = SiLUApproximator()
    x = torch.tensor([8.5, 20.0, 100.0, 1000.0, -9.0, -100.0])
    torch.testing.assert_close(silu(x), torch.nn.functional.silu(x), atol=5e-3, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(BUILTIN_APPROXIMATORS))
def test_shipped_metadata(name):
    meta = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    for key in ("target", "domain", "neurons", "timesteps", "errors", "seed", "bt_neurons_version", "steps"):
        assert key in meta, key
    assert meta["target"] == name
    approx = load_pretrained(name)
    assert approx.metadata == meta and approx.neurons == meta["neurons"] and approx.T == meta["timesteps"]


@pytest.mark.parametrize("name", sorted(BUILTIN_APPROXIMATORS))
def test_fitter_reproduces_shipped_parameters(name):
    meta = json.loads((PRETRAINED_DIR / f"{name}.json").read_text())
    level = {"lr": meta["lr"], "samples_per_cell": meta["samples_per_cell"]} if "lr" in meta else {}
    result = fit_approximator(
        meta["target"],
        neurons=meta["neurons"],
        timesteps=meta["timesteps"],
        partition=meta["partition"],
        metric=meta["metric"],
        coding=meta.get("coding", "level"),
        spikes=meta.get("spikes"),
        steps=meta["steps"],
        seed=meta["seed"],
        **level,
    )
    shipped = load_pretrained(name)
    assert shipped.coding == meta.get("coding", "level")
    torch.testing.assert_close(result.approximator.bias, shipped.bias, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.approximator.thresholds, shipped.thresholds, rtol=0, atol=1e-6)
    torch.testing.assert_close(result.approximator.amplitudes, shipped.amplitudes, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result.approximator.edges, shipped.edges, rtol=0, atol=0)


def test_fit_is_deterministic_and_descent_helps_a_coarse_wiggly_target():
    def wiggle(x):
        return torch.sin(3 * x) + 0.3 * x

    a = fit_approximator(wiggle, (-4, 4), neurons=8, timesteps=8, steps=200)
    b = fit_approximator(wiggle, (-4, 4), neurons=8, timesteps=8, steps=200)
    assert torch.equal(a.approximator.thresholds, b.approximator.thresholds)
    assert a.settings["used_gradient_descent_result"]
    assert a.settings["final_loss"] < 0.95 * a.settings["initial_loss"]
    init_only = fit_approximator(wiggle, (-4, 4), neurons=8, timesteps=8, steps=0)
    assert a.report.rmse < init_only.report.rmse


def test_save_load_round_trip(tmp_path):
    approx = fit_approximator("tanh", neurons=4, timesteps=4, steps=5).approximator
    st_path, js_path = approx.save(tmp_path, "mine", {"note": "test"})
    loaded = NeuronArrayApproximator.load(tmp_path / "mine")
    x = torch.linspace(-8, 8, 501)
    assert torch.equal(loaded(x), approx(x))
    assert loaded.metadata["note"] == "test" and loaded.symmetry == "odd"
    assert oct(st_path.stat().st_mode & 0o777) == oct(js_path.stat().st_mode & 0o777)


def test_corrupt_and_missing_files(tmp_path):
    approx = fit_approximator("tanh", neurons=4, timesteps=4, steps=0).approximator
    approx.save(tmp_path, "a")
    (tmp_path / "a.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="not a valid safetensors file"):
        NeuronArrayApproximator.load(tmp_path / "a")
    approx.save(tmp_path, "b")
    (tmp_path / "b.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        NeuronArrayApproximator.load(tmp_path / "b")
    (tmp_path / "b.json").write_text(json.dumps({"hello": 1}))
    with pytest.raises(ValueError, match="not a bt-neurons approximator"):
        NeuronArrayApproximator.load(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="not found"):
        NeuronArrayApproximator.load(tmp_path / "missing")


def test_partitions():
    assert torch.allclose(make_edges((0, 4), 4), torch.tensor([0.0, 1, 2, 3, 4], dtype=torch.float64))
    log = make_edges((1e-2, 1e2), 4, "log")
    assert torch.allclose(log[1:] / log[:-1], torch.full((4,), 10.0, dtype=torch.float64))
    power = make_edges((0, 16), 4, "power", power=2)
    assert power.tolist() == [0.0, 1.0, 4.0, 9.0, 16.0]
    assert make_edges((0, 3), 99, [0, 0.5, 3]).tolist() == [0, 0.5, 3]
    with pytest.raises(ValueError, match="lo < hi"):
        make_edges((2, 2), 4)
    with pytest.raises(ValueError, match="above 0"):
        make_edges((-1, 2), 4, "log")
    with pytest.raises(ValueError, match="strictly increasing"):
        make_edges((0, 3), 2, [0, 2, 1, 3])
    with pytest.raises(ValueError, match="partition must be one of"):
        make_edges((0, 3), 2, "cubic")
    with pytest.raises(ValueError, match="neurons must be a positive int"):
        make_edges((0, 3), 0)


def test_gradients():
    approx = fit_approximator("silu", neurons=8, timesteps=6, steps=0).approximator
    x = torch.linspace(-9, 9, 200, requires_grad=True)
    approx(x).sum().backward()
    assert approx.amplitudes.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()
    # the STE slope follows silu's slope: about 1 far right, about 0 far left
    assert x.grad[-1].item() == pytest.approx(1.0) and abs(x.grad[0].item()) < 0.01
    approx.zero_grad()
    approx.path = "spike"
    x2 = torch.linspace(-7, 7, 50, requires_grad=True)
    approx(x2.expand(6, 50)).sum().backward()
    assert approx.thresholds.grad.abs().sum() > 0 and approx.amplitudes.grad.abs().sum() > 0
    assert x2.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_dtypes(dtype):
    silu = SiLUApproximator()
    x = torch.randn(64).to(dtype)
    y = silu(x)
    assert y.dtype == dtype and y.shape == x.shape
    torch.testing.assert_close(y.float(), silu(x.float()).to(dtype).float())


def test_outputs_are_elementwise_batch_independent():
    silu = SiLUApproximator()
    a = torch.randn(3, 5)
    b = a.clone()
    b[1:] = torch.randn(2, 5) * 100
    assert torch.equal(silu(a)[0], silu(b)[0])


def test_snntorch_face_steps_to_the_count_path():
    silu = SiLUApproximator()
    face = SnnTorchApproximator(silu)
    x = torch.randn(10) * 4
    step = face.init_approximator()
    total = torch.zeros(10)
    for _ in range(silu.T):
        spk, step = face(x, step)
        total += spk
    torch.testing.assert_close(total, silu(x), rtol=1e-5, atol=1e-5)
    hidden = torch.nn.Sequential(SnnTorchApproximator(silu, init_hidden=True))
    first = hidden(x)
    hidden(x)
    reset(hidden)
    assert torch.equal(hidden(x), first)
    with pytest.raises(TypeError, match="step should not be passed"):
        hidden[0](x, 0)


def test_bad_input():
    silu = SiLUApproximator()
    with pytest.raises(ValueError, match="x must be finite"):
        silu(torch.tensor([1.0, float("nan")]))
    with pytest.raises(TypeError, match="floating-point"):
        silu(torch.tensor([1, 2]))
    spiking = SiLUApproximator(path="spike")
    with pytest.raises(ValueError, match=r"\[T, N, \*\] or \[T\]"):
        spiking(torch.tensor(1.0))  # a 1-D input is [T] (one neuron), as in SpikingJelly
    with pytest.raises(ValueError, match=f"T={spiking.T} steps"):
        spiking(torch.ones(spiking.T + 1, 2))
    edges = torch.tensor([0.0, 1.0])
    with pytest.raises(ValueError, match="timesteps must be <= 64"):
        NeuronArrayApproximator(edges, 65)
    with pytest.raises(ValueError, match="strictly increasing"):
        NeuronArrayApproximator(torch.tensor([1.0, 0.0]), 4)
    with pytest.raises(ValueError, match=r"thresholds must have shape \[P, T\]"):
        NeuronArrayApproximator(edges, 4, thresholds=torch.ones(2, 4))
    with pytest.raises(ValueError, match="symmetry must be one of"):
        NeuronArrayApproximator(edges, 4, symmetry="mirror")
    with pytest.raises(ValueError, match="must start at >= 0"):
        NeuronArrayApproximator(torch.tensor([-1.0, 1.0]), 4, symmetry="odd")
    with pytest.raises(KeyError, match="Did you mean 'silu'"):
        load_pretrained("slu")
    with pytest.raises(ValueError, match="domain must be given"):
        fit_approximator(torch.sin)
    with pytest.raises(ValueError, match="not finite on its domain"):
        fit_approximator("sqrt", (-1.0, 1.0), partition="linear")
