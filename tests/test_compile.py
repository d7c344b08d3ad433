"""torch.compile and torch.export: bt's nodes and Synapsis trace into one graph, equal to eager mode."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
from spikingjelly.activation_based import functional
from torch._dynamo.utils import counters

from bt_neurons import CustomNeuronNode, EIIFNode, Synapsis

NODES = [
    pytest.param(EIIFNode, {}, id="eiif"),
    pytest.param(EIIFNode, {"r": 0.5, "soft_reset": True, "alpha": 0.25}, id="eiif-r0.5-soft"),
    pytest.param(CustomNeuronNode, {"decay": 0.9}, id="cn"),
    pytest.param(CustomNeuronNode, {"T": 6, "per_step": True}, id="cn-per-step"),
]


def _inputs(T: int = 4) -> torch.Tensor:
    return torch.randn(T, 3, 5, generator=torch.Generator().manual_seed(1)) * 2


def _step_through(module, x: torch.Tensor, mode: str) -> torch.Tensor:
    return module(x) if mode == "m" else torch.stack([module(x[t]) for t in range(x.shape[0])])


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize(("cls", "kw"), NODES)
def test_compiled_spike_path_equals_eager_in_one_graph(cls, kw, mode):
    x = _inputs()
    node, ref = cls(step_mode=mode, **kw), cls(step_mode=mode, **kw)
    compiled = torch.compile(node, fullgraph=True)
    for _sequence in range(2):  # reset_net between sequences, as in training
        with torch.no_grad():
            assert torch.equal(_step_through(compiled, x, mode), _step_through(ref, x, mode))
        functional.reset_net(node)
        functional.reset_net(ref)
    # one graph for the first step (v and t not yet materialised) and one for every later step:
    # the step counter is a tensor memory, so stepping does not recompile
    assert counters["stats"]["unique_graphs"] <= 2


@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize(("cls", "kw"), NODES)
def test_compiled_spike_path_gradients_equal_eager(cls, kw, mode):
    x = _inputs()
    node, ref = cls(step_mode=mode, **kw), cls(step_mode=mode, **kw)
    ref.load_state_dict(node.state_dict())
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    _step_through(torch.compile(node, fullgraph=True), xa, mode).square().sum().backward()
    _step_through(ref, xb, mode).square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)
    for (name, p), q in zip(node.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


@pytest.mark.parametrize("mode", ["s", "m"])
@pytest.mark.parametrize(("cls", "kw"), NODES)
def test_exported_spike_path_equals_eager(cls, kw, mode):
    x = _inputs()
    node, ref = cls(step_mode=mode, **kw), cls(step_mode=mode, **kw)
    example = x if mode == "m" else x[0]
    program = torch.export.export(node, (example,))
    functional.reset_net(node)
    with torch.no_grad():
        assert torch.equal(program.module()(example), ref(example))


COUNT_NODES = [
    pytest.param(EIIFNode, {"T": 7}, id="eiif-closed-form"),
    pytest.param(EIIFNode, {"T": 7, "r": 0.5}, id="eiif-staircase"),
    pytest.param(CustomNeuronNode, {"T": 7, "decay": 0.8}, id="cn"),
    pytest.param(CustomNeuronNode, {"T": 7, "per_step": True}, id="cn-per-step"),
]


@pytest.mark.parametrize(("cls", "kw"), COUNT_NODES)
def test_compiled_count_path_equals_eager_even_before_any_eager_call(cls, kw):
    x = _inputs()[0] * 3
    node = cls(path="count", **kw)
    compiled = torch.compile(node, fullgraph=True)
    y = compiled(x)  # traced first: the staircase is built while tracing, kept as a constant
    assert torch.equal(y, cls(path="count", **kw)(x))
    assert counters["stats"]["unique_graphs"] == 1


@pytest.mark.parametrize(("cls", "kw"), COUNT_NODES)
def test_exported_count_path_equals_eager(cls, kw):
    x = _inputs()[0] * 3
    node = cls(path="count", **kw)
    eager = node(x)  # one eager call: the staircase exists before export traces
    program = torch.export.export(node, (x,))
    assert torch.equal(program.module()(x), eager)


def test_export_without_a_staircase_says_what_to_do():
    node = EIIFNode(T=7, r=0.5, path="count")
    with pytest.raises(RuntimeError, match=r"run the module once in eager mode.*staircase\(7"):
        torch.export.export(node, (torch.randn(4),))


def test_a_compiled_count_path_uses_the_parameters_loaded_before_compiling():
    x = torch.linspace(-4, 4, 41)
    node = EIIFNode(T=7, r=0.5, path="count")
    node(x)  # a staircase for r = 0.5
    other = EIIFNode(T=7, r=0.25, path="count")
    node.load_state_dict(other.state_dict())  # drops what was derived from r = 0.5
    assert torch.equal(torch.compile(node, fullgraph=True)(x), other(x))


@pytest.mark.parametrize("path", ["count", "spike"])
@pytest.mark.parametrize("post", [True, False])
def test_synapsis_compiles_and_exports_to_its_eager_values(path, post):
    x = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(2))
    syn = Synapsis(torch.nn.Linear(5, 4), 7, path=path, post=post)
    eager = syn(x)
    assert torch.equal(torch.compile(syn, fullgraph=True)(x), eager)
    assert counters["stats"]["unique_graphs"] == 1
    assert torch.equal(torch.export.export(syn, (x,)).module()(x), eager)


@pytest.mark.parametrize(("cls", "kw"), NODES)
def test_nan_still_raises_in_eager_mode(cls, kw):
    node = cls(step_mode="m", **kw)
    torch.compile(node, fullgraph=True)(_inputs())  # compiling does not switch the checks off
    functional.reset_net(node)
    with pytest.raises(ValueError, match="x must be finite, but it contains NaN"):
        node(torch.full((4, 3, 5), float("nan")))


def test_synapsis_nan_still_raises_in_eager_mode():
    syn = Synapsis(torch.nn.Linear(5, 4), 7)
    torch.compile(syn, fullgraph=True)(torch.randn(2, 5))
    with pytest.raises(ValueError, match="finite"):
        syn(torch.full((2, 5), float("nan")))


def test_an_approximator_compiles_on_both_paths_and_steps_without_recompiling():
    from bt_neurons.approximators import SiLUApproximator

    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3)) * 3
    stepped, ref = (SiLUApproximator(path="spike", step_mode="s") for _ in range(2))
    compiled = torch.compile(stepped, fullgraph=True)
    with torch.no_grad():
        for _sequence in range(2):
            got = torch.stack([compiled(x) for _ in range(stepped.T)])
            assert torch.equal(got, torch.stack([ref(x) for _ in range(ref.T)]))
            functional.reset_net(stepped)
            functional.reset_net(ref)
    assert counters["stats"]["unique_graphs"] == 1  # the step counter is a tensor memory
    counted = SiLUApproximator()
    assert torch.equal(torch.compile(counted, fullgraph=True)(x), counted(x))
