"""SpikingJelly's own neuron-node contracts, run against bt-neurons' SpikingJelly nodes.

Every test is parametrised over ``spikingjelly.activation_based.neuron.IFNode``
(the reference: each test must pass for it, which shows the test asks what
SpikingJelly does) and bt's `bt_neurons.EIIFNode` (a leaky, adaptive
configuration and the paper's defaults) and `bt_neurons.CustomNeuronNode`.
Each test names, in a one-line comment, the upstream SpikingJelly test (under
``test/activation_based/`` of github.com/fangwei123456/spikingjelly) or the
documented behaviour it re-expresses. The code is ours; upstream only told us
WHAT to check.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from spikingjelly.activation_based import base, functional, layer, monitor, neuron
from torch import nn

from bt_neurons import CustomNeuronNode, EIIFNode


# --------------------------------------------------------------------------- nodes under test
@dataclass(frozen=True)
class Spec:
    name: str
    cls: type
    build: Callable[..., nn.Module]
    theta0: float  # the threshold at the first step after a reset
    reference: bool = False


SPECS = [
    Spec("IFNode", neuron.IFNode, lambda **kw: neuron.IFNode(**kw), 1.0, reference=True),
    # leaky and adaptive: the membrane carries state across steps, theta_t = 0.5 + 0.25 t
    Spec("EIIFNode", EIIFNode, lambda **kw: EIIFNode(theta_0=0.5, alpha=0.25, r=0.5, **kw), 0.5),
    # the paper's defaults: r = 1 empties the membrane every step, theta_t = 0.5 + t
    Spec("EIIFNode-paper", EIIFNode, lambda **kw: EIIFNode(**kw), 0.5),
    Spec("CustomNeuronNode", CustomNeuronNode, lambda **kw: CustomNeuronNode(**kw), 1.0),
]


@pytest.fixture(params=SPECS, ids=[s.name for s in SPECS])
def spec(request) -> Spec:
    return request.param


def _x_seq(T: int = 6, *shape: int) -> torch.Tensor:
    return 1.5 * torch.randn(T, *(shape or (3, 4)))


def _net(spec: Spec, step_mode: str = "s") -> nn.Sequential:
    net = nn.Sequential(nn.Linear(4, 5), spec.build(), nn.Linear(5, 3), spec.build())
    functional.set_step_mode(net, step_mode)
    return net


def _memory_values_equal(a, b) -> bool:
    return torch.equal(torch.as_tensor(a).double(), torch.as_tensor(b).double())


# ------------------------------------------------------------------- test_memory.py (memories)
def test_named_memories_of_a_network(spec):
    # mirrors test_memory.py::test_named_memories (+ _with_prefix, _nested)
    net = _net(spec, "m")
    names = [name for name, _ in base.named_memories(net)]
    per_node = [name for name, _ in net[1].named_memories()]
    assert "v" in per_node
    assert names == [f"1.{n}" for n in per_node] + [f"3.{n}" for n in per_node]
    assert all(name.startswith("net.") for name, _ in base.named_memories(net, prefix="net"))


def test_memories_start_at_their_reset_values(spec):
    # mirrors test_memory.py::test_memories
    node = spec.build()
    for name, value in node.named_memories():
        assert _memory_values_equal(value, node.get_reset_value(name)), name
        assert _memory_values_equal(value, 0), name  # v = 0 and (bt) t = 0 after a reset


def test_every_memory_is_a_tensor_after_a_step(spec):
    # mirrors test_memory.py::test_load_memories (memories are tensors that can be saved/loaded)
    node = spec.build()
    node(torch.randn(3, 4))
    assert all(isinstance(value, torch.Tensor) for value in node.memories())


def test_extract_memories_lists_the_same_memories(spec):
    # mirrors test_memory.py::test_extract_memories
    net = _net(spec, "m")
    with torch.no_grad():
        net(_x_seq())
    extracted = base.extract_memories(net)
    assert isinstance(extracted, list)
    listed = list(base.memories(net))
    assert len(extracted) == len(listed) == len(list(base.named_memories(net)))
    for a, b in zip(extracted, listed, strict=True):
        assert _memory_values_equal(a, b)


def test_load_memories_restores_a_saved_state(spec):
    # mirrors test_memory.py::test_load_memories
    torch.manual_seed(1)
    net = _net(spec, "m")
    twin = copy.deepcopy(net)
    a, b, c = _x_seq(3), _x_seq(4), _x_seq(3)
    with torch.no_grad():
        net(a)
        twin(a)
        saved = [m.clone() if isinstance(m, torch.Tensor) else m for m in base.extract_memories(net)]
        net(b)  # move on, then go back to the state after `a`
        base.load_memories(net, saved)
        for current, kept in zip(base.extract_memories(net), saved, strict=True):
            assert _memory_values_equal(current, kept)
        assert torch.equal(net(c), twin(c))  # as if `b` had never run (the step count included)


def test_load_memories_rejects_a_wrong_count(spec):
    # mirrors test_memory.py::test_load_memories_length_mismatch
    net = _net(spec, "m")
    with torch.no_grad():
        net(_x_seq())
    memories = base.extract_memories(net)
    with pytest.raises(ValueError, match="Memory length mismatch"):
        base.load_memories(net, memories[:-1])
    with pytest.raises(ValueError, match="Memory length mismatch"):
        base.load_memories(net, memories + [torch.zeros(1)])


@pytest.mark.parametrize("step_mode", ["s", "m"])
def test_functional_forward_is_pure_and_backs_forward(spec, step_mode):
    # mirrors test_functional_neuron.py::test_neuron_functional_forward_is_pure_and_backs_regular_forward
    # (and test_memory.py::test_memory_module_functional_forward_is_pure_and_backs_regular_forward)
    node = spec.build(step_mode=step_mode)
    x = _x_seq(4, 2, 3) if step_mode == "m" else 1.5 * torch.randn(2, 3)
    with torch.no_grad():  # bring the node into the middle of a sequence
        node(_x_seq(2, 2, 3) if step_mode == "m" else torch.randn(2, 3))
    v = node.v.detach().clone().requires_grad_()
    node.v = v
    states = tuple(node._memories.values())
    outputs, new_states = node.functional_forward((x,), states)
    assert all(now is before for now, before in zip(node._memories.values(), states, strict=True))
    assert len(new_states) == len(states)
    y = node(x)
    assert torch.allclose(y, outputs[0])
    for now, expected in zip(node._memories.values(), new_states, strict=True):
        assert _memory_values_equal(now.detach(), torch.as_tensor(expected).detach())
    (outputs[0].sum() + new_states[0].sum()).backward()
    assert v.grad is not None and torch.isfinite(v.grad).all()


def test_to_functional_forward_runs_a_network_without_touching_it(spec):
    # mirrors test_memory.py::test_to_functional_forward_state_restoration
    # (and ::test_to_functional_forward_flat_sequential_uses_functional_states)
    torch.manual_seed(2)
    net = _net(spec, "m")
    fresh = copy.deepcopy(net)
    with torch.no_grad():
        net(_x_seq(3))
    before = [m.clone() for m in base.extract_memories(net)]
    f = base.to_functional_forward(net)
    x = _x_seq(4)
    with torch.no_grad():
        outputs, states = f((x,), tuple(base.memories(fresh)))  # run from a reset state
        expected = fresh(x)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    assert torch.equal(outputs[0], expected)
    assert len(states) == len(before)
    for got, want in zip(states, base.extract_memories(fresh), strict=True):
        assert _memory_values_equal(got, want)
    for now, kept in zip(base.extract_memories(net), before, strict=True):
        assert _memory_values_equal(now, kept)  # the stateful net is left as it was


def test_materialize_states_is_pure(spec):
    # mirrors test_functional_neuron.py::test_materialize_states_is_pure
    node = spec.build()
    x = torch.randn(2, 3)
    states = node.materialize_states((x,), tuple(node._memories.values()), "s")
    assert _memory_values_equal(node.v, 0.0)
    assert torch.equal(states[0], torch.zeros_like(x))


# --------------------------------------------------------------- test_functional.py (reset_net)
def test_reset_net_restarts_the_sequence(spec):
    # mirrors test_functional.py::test_reset_net_with_ifnode_actually_resets
    # (and ::test_reset_net_cached_produces_same_result_as_fresh)
    net = _net(spec, "m")
    x = _x_seq()
    with torch.no_grad():
        first = net(x)
        functional.reset_net(net)
        for node in (net[1], net[3]):
            for name, value in node.named_memories():
                assert _memory_values_equal(value, node.get_reset_value(name)), name
        again = net(x)
    assert torch.equal(first, again)


def test_reset_net_in_a_training_loop(spec):
    # mirrors test_functional.py::test_reset_net_in_training_loop
    net = nn.Sequential(nn.Linear(4, 8), spec.build(step_mode="m"), nn.Linear(8, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    for _ in range(4):
        x, y = _x_seq(3, 2, 4), torch.randn(3, 2, 2)
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()  # each batch's graph is its own: reset_net cut the last one
        opt.step()
        opt.zero_grad()
        functional.reset_net(net)
        assert _memory_values_equal(net[1].v, 0.0)
        assert all(_memory_values_equal(m, 0) for m in net[1].memories())


def test_reset_net_preserves_parameters(spec):
    # mirrors test_functional.py::test_reset_net_preserves_parameters
    net = _net(spec)
    with torch.no_grad():
        net(torch.randn(3, 4))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    functional.reset_net(net)
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_detach_net_cuts_the_graph_to_earlier_steps(spec):
    # no upstream test; functional.detach_net / BaseNode.detach docstrings (TBPTT)
    for detach in (False, True):
        node = spec.build()
        x1 = (1.5 * torch.randn(3, 4)).requires_grad_()
        node(x1)
        if detach:
            functional.detach_net(node)
            assert not any(m.requires_grad for m in node.memories() if isinstance(m, torch.Tensor))
        x2 = (1.5 * torch.randn(3, 4)).requires_grad_()
        y2 = node(x2)
        (y2.sum() + node.v.sum()).backward()
        assert x2.grad is not None
        if detach:
            assert x1.grad is None  # nothing flowed back into the earlier step
        else:
            assert x1.grad is not None  # without detach it would (the control)


def test_set_step_mode_switches_every_node(spec):
    # mirrors test_few_spike_neuron.py::test_few_spike_node_is_step_module_and_stateless (set_step_mode)
    net = _net(spec)
    functional.set_step_mode(net, "m")
    assert net[1].step_mode == net[3].step_mode == "m"
    x_seq = _x_seq(5)
    assert net(x_seq).shape == (5, 3, 3)
    functional.reset_net(net)
    functional.set_step_mode(net, "s")
    assert net[1].step_mode == "s" and net(x_seq[0]).shape == (3, 3)
    with pytest.raises(ValueError):
        net[1].step_mode = "x"


def test_single_step_loop_equals_multi_step(spec):
    # mirrors test_noisy_and_misc.py::test_cubalif_inherited_multi_step_matches_repeated_single_steps
    x_seq = _x_seq(7)
    multi, single = spec.build(step_mode="m"), spec.build(step_mode="s")
    y_multi = multi(x_seq)
    y_single = torch.stack([single(x) for x in x_seq])
    assert torch.equal(y_multi, y_single)
    for a, b in zip(multi.memories(), single.memories(), strict=True):
        assert _memory_values_equal(a.detach(), b.detach())


def test_chunked_multi_step_equals_one_call(spec):
    # mirrors test_functional.py::test_chunk_multi_step_forward_matches_unsplit_forward
    x_seq = _x_seq(7)
    whole, chunked = spec.build(step_mode="m"), spec.build(step_mode="m")
    assert torch.equal(functional.chunk_multi_step_forward(3, x_seq, chunked), whole(x_seq))
    assert torch.allclose(chunked.v, whole.v)


# ----------------------------------------------------------------------------------- store_v_seq
def test_store_v_seq_records_every_step_and_keeps_the_state_layout(spec):
    # mirrors test_functional_neuron.py::test_store_v_seq_does_not_change_functional_state_layout
    # (and test_activation_aware_ifnode.py::test_hard_reset_and_store_v_seq)
    x_seq = _x_seq(5)
    names = tuple(name for name, _ in spec.build().named_memories())
    node = spec.build(step_mode="m", store_v_seq=True)
    assert tuple(name for name, _ in node.named_memories()) == names
    node.functional_forward((x_seq,), tuple(node._memories.values()))
    assert node.v_seq is None  # the functional path records nothing
    node(x_seq)
    assert node.v_seq.shape == x_seq.shape
    assert torch.equal(node.v_seq[-1], node.v)
    stepper = spec.build()  # the same membranes, one step at a time
    expected = []
    for x in x_seq:
        stepper(x)
        expected.append(stepper.v)
    assert torch.allclose(node.v_seq, torch.stack(expected))


def test_store_v_seq_in_single_step_mode_appends_until_reset(spec):
    # no upstream test; BaseNode docstring: in step mode 's' every step's v is appended to v_seq
    node = spec.build(store_v_seq=True)
    vs = []
    for k, x in enumerate(_x_seq(3)):
        node(x)
        vs.append(node.v)
        assert node.v_seq.shape == (k + 1, 3, 4)
    assert torch.allclose(node.v_seq, torch.stack(vs))
    functional.reset_net(node)
    assert node.v_seq is None


def test_turning_store_v_seq_off_releases_the_sequence(spec):
    # mirrors test_activation_aware_ifnode.py::test_disabling_store_v_seq_releases_previous_sequence_storage
    node = spec.build(step_mode="m", store_v_seq=True)
    x_seq = _x_seq(4)
    node(x_seq)
    assert isinstance(node.v_seq, torch.Tensor)
    node.store_v_seq = False
    node(x_seq)
    assert node.v_seq is None
    assert node.v.untyped_storage().nbytes() == node.v.numel() * node.v.element_size()


# --------------------------------------------------------------------------- test_monitor.py
def test_output_and_input_monitor_lifecycle(spec):
    # mirrors test_monitor.py::test_input_and_output_monitor_lifecycle
    net = _net(spec, "m")
    out_mon = monitor.OutputMonitor(net, spec.cls)
    in_mon = monitor.InputMonitor(net, spec.cls)
    x_seq = _x_seq(4)
    with torch.no_grad():
        y = net(x_seq)
    assert out_mon.monitored_layers == in_mon.monitored_layers == ["1", "3"]
    assert len(out_mon.records) == len(in_mon.records) == 2
    assert torch.equal(out_mon["3"][0], y)
    with torch.no_grad():
        assert torch.equal(in_mon["1"][0], net[0](x_seq))
    out_mon.disable()
    in_mon.disable()
    functional.reset_net(net)
    with torch.no_grad():
        net(x_seq)
    assert len(out_mon.records) == len(in_mon.records) == 2
    out_mon.clear_recorded_data()
    assert out_mon.records == [] and out_mon["1"] == []
    out_mon.enable()
    out_mon.remove_hooks()
    with torch.no_grad():
        net(x_seq)
    assert out_mon.records == [] and out_mon.hooks == []
    in_mon.remove_hooks()


def test_attribute_monitor_records_v_before_and_after_forward(spec):
    # mirrors test_monitor.py::test_attribute_monitor_before_and_after_forward
    node = spec.build()
    before = monitor.AttributeMonitor("v", True, node, instance=spec.cls)
    after = monitor.AttributeMonitor("v", False, node, instance=spec.cls)
    xs = _x_seq(2)
    vs = []
    with torch.no_grad():
        for x in xs:
            node(x)
            vs.append(node.v)
    assert _memory_values_equal(before.records[0], 0.0)  # the reset value, before the first step
    assert torch.equal(before.records[1], vs[0])
    assert all(torch.equal(r, v) for r, v in zip(after.records, vs, strict=True))


def test_gradient_monitors_record_the_node_gradients(spec):
    # mirrors test_monitor.py::test_gradient_monitors_record_input_and_output_gradients
    node = spec.build(step_mode="m")
    grad_in = monitor.GradInputMonitor(node, instance=spec.cls)
    grad_out = monitor.GradOutputMonitor(node, instance=spec.cls)
    x = _x_seq(4).requires_grad_()
    node(x).sum().backward()
    assert torch.equal(grad_out.records[0], torch.ones_like(x))
    assert torch.allclose(grad_in.records[0], x.grad)
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --------------------------------------------------------------- copies, state dicts, shapes
def test_deepcopy_mid_sequence_continues_identically_and_independently(spec):
    # mirrors test_checkpointing.py::test_gc_container_deepcopy_pickle_spawn (for one node)
    node = spec.build()
    xs = _x_seq(4)
    with torch.no_grad():
        node(xs[0])
        node(xs[1])
        twin = copy.deepcopy(node)
        assert torch.equal(twin(xs[2]), node(xs[2]))
        kept = [m.clone() for m in node.memories()]
        twin(xs[3])  # stepping the copy leaves the original alone
    for now, before in zip(node.memories(), kept, strict=True):
        assert _memory_values_equal(now, before)
    restored = pickle.loads(pickle.dumps(twin))
    with torch.no_grad():
        assert torch.equal(restored(xs[0]), twin(xs[0]))


def test_state_dict_round_trip(spec):
    # mirrors test_compile_compat.py::test_standard_inductor_backend_matches_torch_backend (load_state_dict)
    src = spec.build()
    with torch.no_grad():
        for tensor in src.state_dict().values():
            if tensor.is_floating_point():
                tensor.mul_(0.9)  # stays within every parameter's range (r <= 1, theta > 0, ...)
    dst = spec.build()
    dst.load_state_dict(src.state_dict(), strict=True)
    memory_names = {name for name, _ in src.named_memories()}
    assert not memory_names & set(src.state_dict())  # memories are state, not parameters
    x_seq = _x_seq()
    with torch.no_grad():
        assert torch.equal(torch.stack([src(x) for x in x_seq]), torch.stack([dst(x) for x in x_seq]))


def test_new_batch_size_without_reset_starts_a_new_sequence(spec):
    # mirrors test_activation_aware_ifnode.py::test_shape_change_reinitializes_v_to_v_reset_with_hard_reset
    # IFNode: a membrane of another shape is replaced by zeros; bt: the same, and its step count restarts
    node = spec.build(step_mode="m")
    with torch.no_grad():
        node(_x_seq(3, 4, 4))
        x_new = _x_seq(5, 2, 4)
        y = node(x_new)
        assert torch.equal(y, spec.build(step_mode="m")(x_new))
        functional.reset_net(node)
        assert torch.equal(node(x_new), y)


def test_dtype_follows_the_input(spec):
    # mirrors test_activation_aware_ifnode.py::test_dtype_and_device_follow_input
    node = spec.build()
    x = torch.randn(2, 3, dtype=torch.float64)
    y = node(x)
    assert y.dtype == torch.float64 and node.v.dtype == torch.float64 and node.v.device == x.device


def test_input_at_exactly_the_threshold_fires(spec):
    # no upstream test; spikingjelly surrogate.heaviside docs: a spike when v - v_threshold >= 0
    node = spec.build()
    assert node(torch.tensor([spec.theta0])).item() == 1.0


def test_autograd_reaches_the_input(spec):
    # mirrors test_activation_aware_ifnode.py::test_autograd_smoke
    node = spec.build()
    x = (1.5 * torch.randn(3, 4)).requires_grad_()
    (node(x).sum() + node.v.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_spikingjellys_own_export_to_nir_exports_bt_nodes_exactly():
    # no upstream test for bt; SpikingJelly's nir_exchange round trip, with bt's nodes in the net
    pytest.importorskip("nirtorch")
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

    from bt_neurons.nir import import_

    net = nn.Sequential(
        layer.Linear(4, 6, step_mode="m"),
        EIIFNode(alpha=0.0, step_mode="m"),
        layer.Linear(6, 3, step_mode="m"),
        EIIFNode(alpha=0.0, r=0.5, step_mode="m"),
    )
    x = torch.randn(6, 3, 4) * 2
    with torch.no_grad():
        expected = net(x)
        functional.reset_net(net)
        graph = export_to_nir(net, x)
        assert expected.abs().sum() > 0
        assert torch.equal(import_(graph)(x), expected)  # bt's nodes back
        simulated, _ = import_from_nir(graph, step_mode="m")(x)  # SpikingJelly's own simulation
        assert torch.equal(simulated, expected)
    with pytest.raises(ValueError, match="alpha"):  # a rising threshold has no NIR equivalent
        export_to_nir(nn.Sequential(layer.Linear(4, 6, step_mode="m"), EIIFNode(step_mode="m")), x)
