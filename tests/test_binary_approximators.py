"""Binary-coded approximators: spikes are a binary expansion, the paths agree, the fitter keeps its budget."""

from __future__ import annotations

import json
import math

import pytest
import torch
from bt_neurons.approximators import (
    BUILTIN_APPROXIMATORS,
    NeuronArrayApproximator,
    cli,
    evaluate,
    fit_approximator,
    load_pretrained,
)
from bt_neurons.approximators.pareto import pareto_front, pareto_table
from bt_neurons.approximators.snntorch_face import SnnTorchApproximator
from bt_neurons.approximators.targets import BUILTIN_TARGETS
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional


def _random_binary(seed: int, P: int, T: int, symmetry: str) -> NeuronArrayApproximator:
    g = torch.Generator().manual_seed(seed)
    lo = 0.0 if symmetry != "none" else -3.0
    widths = 0.1 + torch.rand(P, generator=g)
    edges = lo + torch.cat([torch.zeros(1), widths.cumsum(0)])
    return NeuronArrayApproximator(
        edges,
        T,
        coding="binary",
        symmetry=symmetry,
        left_tail=(0.5, -1.0),
        right_tail=(2.0, 0.25),
        amplitudes=torch.randn(P, T, generator=g),
        bias=torch.randn(P, generator=g),
    )


def _local(approx: NeuronArrayApproximator, x: torch.Tensor):
    k, u, inside, _ = approx.route(x)
    return k, u - 1, inside  # r = u - 1 is exact in float32 for u in [1, 2)


def _bits(r: torch.Tensor, T: int) -> torch.Tensor:
    """The first T binary digits of r in [0, 1), by integer arithmetic: [N, T] (0 / 1)."""
    n = torch.floor(r.double() * 2**T).long()
    return torch.stack([(n >> (T - 1 - t)) & 1 for t in range(T)], -1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    P=st.integers(1, 6),
    T=st.integers(1, 12),
    symmetry=st.sampled_from(["none", "even", "odd"]),
)
def test_binary_spikes_are_the_binary_digits_and_both_paths_agree(seed, P, T, symmetry):
    approx = _random_binary(seed, P, T, symmetry)
    x = torch.linspace(-8, 8, 801)
    k, r, inside = _local(approx, x)
    bits = _bits(r, T)
    # the count path is the bias plus the amplitudes of the digits that are 1, times the sign
    expected = approx.bias.detach()[k].double() + (approx.amplitudes.detach()[k].double() * bits).sum(-1)
    if symmetry == "odd":
        expected = expected * torch.sign(x).double()
    with torch.no_grad():
        y = approx.count(x)
        spikes = approx.spikes_per_input(x)
    torch.testing.assert_close(y[inside].double(), expected[inside], rtol=1e-5, atol=1e-5)
    assert torch.equal(spikes[inside], bits.sum(-1)[inside])
    assert bool((spikes[~inside] == 0).all())
    # the spike path, summed over its T steps, is the count path
    approx.path = "spike"
    functional.reset_net(approx)
    with torch.no_grad():
        steps = approx(x.expand(T, -1).contiguous())
    torch.testing.assert_close(steps.sum(0), y, rtol=1e-5, atol=1e-5)


def test_binary_spike_path_fires_what_spikes_per_input_counts():
    """With every amplitude 1 and no bias, each step's output is the spike itself: count them."""
    shipped = load_pretrained("silu")
    assert shipped.coding == "binary"
    probe = load_pretrained("silu", path="spike", step_mode="s")
    with torch.no_grad():
        probe.amplitudes.fill_(1.0)
        probe.bias.zero_()
    x = torch.randn(4096, generator=torch.Generator().manual_seed(3)) * 3
    _, _, inside = _local(probe, x)
    functional.reset_net(probe)
    with torch.no_grad():
        steps = torch.stack([probe(x) for _ in range(probe.T)])
    spikes = steps[:, inside]
    assert bool(((spikes == 0) | (spikes == 1)).all())  # one spike of amplitude 1, or none, per step
    assert torch.equal(spikes.sum(0).long(), shipped.spikes_per_input(x)[inside])


def test_binary_gradients_reach_amplitudes_bias_and_input():
    approx = _random_binary(0, 4, 5, "none")
    x = torch.linspace(-4, 4, 301, requires_grad=True)
    approx.count(x).sum().backward()
    k, r, inside = _local(approx, x.detach())
    for cell in range(4):
        assert approx.bias.grad[cell].item() == pytest.approx(float(((k == cell) & inside).sum()))
    bits = _bits(r, 5)
    manual = torch.zeros(4, 5, dtype=torch.float64).index_add_(0, k[inside], bits[inside].double())
    torch.testing.assert_close(approx.amplitudes.grad.double(), manual)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_snntorch_face_of_a_binary_approximator_steps_to_the_count_path():
    approx = load_pretrained("gelu")
    face = SnnTorchApproximator(load_pretrained("gelu", path="spike"), init_hidden=True)
    x = torch.randn(500, generator=torch.Generator().manual_seed(1)) * 2
    total = sum(face(x) for _ in range(approx.T))
    torch.testing.assert_close(total, approx(x), rtol=1e-5, atol=1e-5)
    face.reset_hidden()
    again = sum(face(x) for _ in range(approx.T))
    assert torch.equal(again, total)


def test_binary_save_load_round_trip(tmp_path):
    approx = _random_binary(7, 3, 4, "odd")
    approx.save(tmp_path, "b")
    meta = json.loads((tmp_path / "b.json").read_text())
    assert meta["coding"] == "binary"
    loaded = NeuronArrayApproximator.load(tmp_path / "b")
    assert loaded.coding == "binary" and torch.equal(loaded.bias, approx.bias)
    x = torch.linspace(-6, 6, 401)
    assert torch.equal(loaded(x), approx(x))


@pytest.mark.parametrize("name", sorted(BUILTIN_APPROXIMATORS))
def test_every_shipped_approximator_fires_at_most_four_spikes_per_evaluation(name):
    spec = BUILTIN_TARGETS[name]
    approx = load_pretrained(name)
    report = evaluate(approx, spec.fn, spec.full_domain, spec.sampler(), samples=50_000)
    assert approx.coding == "binary"
    assert report.spikes_per_eval <= 4.0, (name, report.spikes_per_eval)
    # besides the spikes: at most one addition (the cell's bias, or a tail's linear map)
    assert 0 < report.additions_per_eval <= 1.0
    # the figure the shipped file records is the figure measured now
    assert report.spikes_per_eval == pytest.approx(approx.metadata["errors"]["spikes_per_eval"], abs=0.05)


@pytest.mark.parametrize("name", ["silu", "gelu"])
def test_silu_and_gelu_meet_their_goals_with_sixteen_neurons(name):
    spec = BUILTIN_TARGETS[name]
    approx = load_pretrained(name)
    assert approx.neurons <= 16
    report = evaluate(approx, spec.fn, (-8.0, 8.0), spec.sampler(), samples=50_000)
    assert report.rel_l2 <= 0.01 and report.max_abs <= 0.05
    far = torch.tensor([9.0, 50.0, 1e3, -9.0, -50.0, -1e3])
    torch.testing.assert_close(approx(far), spec.fn(far.double()).float(), atol=5e-3, rtol=1e-6)


def test_a_spike_budget_picks_the_most_steps_within_it():
    fit = fit_approximator("tanh", neurons=6, spikes=2.2, steps=0)
    assert fit.approximator.coding == "binary"
    assert fit.report.spikes_per_eval <= 2.2 + 0.02  # the fit's samples and the report's differ
    one_more = fit_approximator("tanh", neurons=6, timesteps=fit.approximator.T + 1, coding="binary", steps=0)
    assert one_more.report.spikes_per_eval > 2.2
    with pytest.raises(ValueError, match="below what one step costs"):
        fit_approximator("tanh", neurons=6, spikes=0.1, steps=0)


def test_curvature_cells_are_finer_where_silu_bends_and_refining_never_hurts():
    fit = fit_approximator("silu", neurons=12, timesteps=4, coding="binary", partition="curvature", steps=1)
    widths = fit.approximator.edges[1:] - fit.approximator.edges[:-1]
    assert widths[len(widths) // 2] < widths[0] and widths[len(widths) // 2] < widths[-1]
    assert fit.settings["final_loss"] <= fit.settings["initial_loss"]
    linear = fit_approximator("silu", neurons=12, timesteps=4, coding="binary", partition="linear", steps=0)
    assert fit.report.rel_l2 < linear.report.rel_l2


def test_binary_fit_is_deterministic():
    a = fit_approximator("sigmoid", neurons=5, spikes=2, steps=1).approximator
    b = fit_approximator("sigmoid", neurons=5, spikes=2, steps=1).approximator
    assert torch.equal(a.edges, b.edges) and torch.equal(a.amplitudes, b.amplitudes)


def test_bad_binary_settings_are_refused_naming_the_argument():
    edges = torch.tensor([0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="coding"):
        NeuronArrayApproximator(edges, 4, coding="unary")
    with pytest.raises(ValueError, match="threshold must be > 0"):
        NeuronArrayApproximator(edges, 2, coding="binary", thresholds=torch.tensor([[0.5, 0.0], [0.5, 0.25]]))
    with pytest.raises(ValueError, match=r"bias must have shape \[P\] = \[2\]"):
        NeuronArrayApproximator(edges, 2, coding="binary", bias=torch.zeros(3))
    with pytest.raises(ValueError, match="bias must be finite"):
        NeuronArrayApproximator(edges, 2, coding="binary", bias=torch.tensor([0.0, math.inf]))
    with pytest.raises(ValueError, match="spikes must be finite and > 0"):
        fit_approximator("silu", spikes=0)
    with pytest.raises(TypeError, match="spikes must be a real number"):
        fit_approximator("silu", spikes="3")
    with pytest.raises(ValueError, match="needs coding='binary'"):
        fit_approximator("silu", spikes=3, coding="level")
    with pytest.raises(ValueError, match="curvature.*binary"):
        fit_approximator("silu", coding="level", partition="curvature")
    with pytest.raises(ValueError, match="error must be one of"):
        pareto_front("silu", neurons=(2,), spikes=(1,), error="worst")
    with pytest.raises(ValueError, match="at least one value"):
        pareto_front("silu", neurons=(), spikes=(1,))


def test_pareto_front_marks_exactly_the_undominated_fits():
    points = pareto_front("tanh", neurons=(2, 4), spikes=(1, 2, 3), steps=0)
    assert len(points) >= 4

    def key(p, axes):
        return (p.rel_l2, p.spikes_per_eval, p.neurons)[:axes]

    def dominated(p, axes):
        return any(
            all(a <= b for a, b in zip(key(q, axes), key(p, axes), strict=True))
            and key(q, axes) != key(p, axes)
            for q in points
        )

    for p in points:
        assert p.on_front == (not dominated(p, 3))
        assert p.best_for_spikes == (not dominated(p, 2))
        fit = fit_approximator("tanh", neurons=p.neurons, timesteps=p.timesteps, coding="binary", steps=0)
        assert fit.report.rel_l2 == pytest.approx(p.rel_l2)  # the table reports the fit it names
    assert any(p.best_for_spikes for p in points)
    assert "| 2 |" in pareto_table(points)


def test_bt_fit_spikes_and_pareto_write_six_files(tmp_path, capsys):
    argv = [
        "tanh",
        "--neurons",
        "4",
        "--spikes",
        "2",
        "--pareto",
        "--steps",
        "0",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    assert cli.main(argv) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(
        ["tanh.safetensors", "tanh.json", "tanh.png", "tanh-pareto.md", "tanh-pareto.csv", "tanh-pareto.png"]
    )
    meta = json.loads((tmp_path / "tanh.json").read_text())
    assert meta["coding"] == "binary" and meta["spikes"] == 2 and meta["errors"]["spikes_per_eval"] <= 2.02
    csv_lines = (tmp_path / "tanh-pareto.csv").read_text().splitlines()
    assert csv_lines[0].startswith("neurons,timesteps,budget,spikes_per_eval")
    assert len(csv_lines) >= 5
    assert (tmp_path / "tanh-pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    # the Pareto files already there are refused without --force, and nothing is rewritten
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    (tmp_path / "tanh.json").unlink()
    (tmp_path / "tanh.safetensors").unlink()
    (tmp_path / "tanh.png").unlink()
    assert cli.main(argv) == 2
    assert "tanh-pareto.md" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {
        k: v for k, v in before.items() if "pareto" in k
    }


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["silu", "--spikes", "0"], "--spikes must be a number > 0"),
        (["silu", "--spikes", "nan"], "--spikes must be a number > 0"),
        (["silu", "--spikes", "3", "--coding", "level"], "--spikes .* needs --coding binary"),
        (["silu", "--coding", "unary"], "invalid choice"),
        (["silu", "--distribution", "cauchy"], "--distribution: distribution must be 'uniform', 'normal'"),
        (["silu", "--distribution", "normal:-1"], "standard deviation S > 0"),
        (["tanh", "--distribution", "log-uniform"], "needs a domain above 0"),
    ],
)
def test_bt_fit_refuses_bad_spike_options(tmp_path, capsys, argv, message):
    try:
        status = cli.main([*argv, "--out", str(tmp_path)])
    except SystemExit as exc:  # argparse's own usage errors
        status = exc.code
    assert status == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_bt_fit_fits_and_measures_on_the_distribution_it_is_given(tmp_path):
    argv = ["tanh", "--neurons", "6", "--spikes", "2", "--steps", "0", "--quiet", "--out", str(tmp_path)]
    assert cli.main([*argv, "--distribution", "normal:2"]) == 0
    meta = json.loads((tmp_path / "tanh.json").read_text())
    assert meta["errors"]["distribution"] == "N(0, 2^2)"
    wide = NeuronArrayApproximator.load(tmp_path / "tanh")
    narrow = fit_approximator("tanh", neurons=6, spikes=2, steps=0).approximator  # N(0, 1)
    x = 2 * torch.randn(50_000, generator=torch.Generator().manual_seed(5))
    err = {
        n: ((a(x) - torch.tanh(x)).norm() / torch.tanh(x).norm()).item()
        for n, a in (("w", wide), ("n", narrow))
    }
    assert err["w"] < err["n"]  # fitted where the inputs fall


def test_curvature_cells_for_a_target_undefined_just_past_its_domain():
    fit = fit_approximator("sqrt", neurons=16, spikes=3, partition="curvature", steps=0)  # sqrt(x < 0) is NaN
    assert fit.report.rel_l2 < 0.02 and fit.report.spikes_per_eval <= 3  # it fits (no "not finite" error)
