"""NIR export and import (`bt_neurons.nir`), checked by simulating the graphs in other libraries.

Each exported graph is run by snnTorch's ``import_from_nir`` and SpikingJelly's
``import_from_nir`` (both step NIR's ``CubaLIF`` with forward Euler at
``dt = 1e-4``), or, for NIR's ``I`` and ``Threshold`` nodes that neither
imports, by nirtorch's interpreter with a node map written here from NIR's
equations. SpikingJelly fires on ``>=`` like bt-neurons, so its spikes must
match everywhere, ties at a threshold included; snnTorch and NIR's equations
fire on ``>``, so those comparisons only use inputs whose membranes stay away
from every threshold (``assume``).
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings

import pytest

nir = pytest.importorskip("nir")
nirtorch = pytest.importorskip("nirtorch")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from hypothesis import assume, event, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from spikingjelly.activation_based import functional, layer  # noqa: E402
from torch import nn  # noqa: E402

from bt_neurons import CustomNeuronNode, EIIFNode  # noqa: E402
from bt_neurons import nir as btnir  # noqa: E402
from bt_neurons.snntorch import EIIF, CustomNeuron  # noqa: E402

F32 = st.floats(allow_nan=False, allow_infinity=False, width=32)


# ------------------------------------------------------------------------------------- simulators
def run_snntorch(graph, x_seq: torch.Tensor) -> torch.Tensor:
    """snnTorch's import_from_nir, stepped over ``x_seq`` ``[T, N, F]``."""
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():  # it prints what it does
        net = import_from_nir(graph)
        return torch.stack([net(x)[0] for x in x_seq])


def run_spikingjelly(graph, x_seq: torch.Tensor) -> torch.Tensor:
    """SpikingJelly's import_from_nir in multi-step mode over ``x_seq`` ``[T, N, F]``."""
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir

    with torch.no_grad():
        out, _ = import_from_nir(graph, dt=btnir.DEFAULT_DT, step_mode="m")(x_seq)
    return out


class _EulerIntegrator(nn.Module):
    """nir.I, ``dv/dt = R I``, forward Euler: ``v_t = v_{t-1} + (dt R) I_t``."""

    def __init__(self, node, dt: float) -> None:
        super().__init__()
        self.gain = torch.tensor(dt * np.asarray(node.r, dtype=np.float64), dtype=torch.float32)

    def forward(self, x, state=None):
        v = (torch.zeros_like(x) if state is None else state) + self.gain * x
        return v, v


class _Heaviside(nn.Module):
    """nir.Threshold: ``z = [v > threshold]``."""

    def __init__(self, node) -> None:
        super().__init__()
        self.threshold = torch.tensor(np.asarray(node.threshold), dtype=torch.float32)

    def forward(self, x):
        return (x > self.threshold).to(x.dtype)


def _linear(node) -> nn.Linear:
    w = torch.tensor(np.asarray(node.weight), dtype=torch.float32)
    mod = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
    with torch.no_grad():
        mod.weight.copy_(w)
        if mod.bias is not None:
            mod.bias.copy_(torch.tensor(np.asarray(node.bias), dtype=torch.float32))
    return mod


def run_nirtorch(graph, x_seq: torch.Tensor) -> torch.Tensor:
    """nirtorch's interpreter with NIR's equations for I and Threshold (forward Euler at dt)."""
    node_map = {
        nir.I: lambda n: _EulerIntegrator(n, btnir.DEFAULT_DT),
        nir.Threshold: _Heaviside,
        nir.Linear: _linear,
        nir.Affine: _linear,
    }
    net = nirtorch.nir_to_torch(graph, node_map)
    state, outs = None, []
    with torch.no_grad():
        for x in x_seq:
            out, state = net(x, state)
            outs.append(out)
    return torch.stack(outs)


# ----------------------------------------------------------------------------------- networks
def _seeded_linear(gen: torch.Generator, n_in: int, n_out: int, bias: bool, scale: float) -> nn.Linear:
    lin = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(n_out, n_in, generator=gen) * scale)
        if bias:
            lin.bias.copy_(torch.randn(n_out, generator=gen))
    return lin


@st.composite
def spike_neurons(draw, face: bool, integrators: bool = False):
    """A bt neuron whose spike dynamics export (alpha = 0, no subtractive reset with memory)."""
    theta = draw(st.floats(0.1, 2.0))
    kinds = [st.just(1.0), st.floats(0.05, 0.95)] if not integrators else [st.just(1.0)]
    if draw(st.booleans()):  # EI_IF: keep = 1 - r
        r = 0.0 if integrators else draw(st.one_of(*kinds))
        soft = draw(st.booleans()) if r == 1.0 else False
        if face:
            return EIIF(
                threshold=theta,
                alpha=0.0,
                r=r,
                reset_mechanism="subtract" if soft else "none",
                init_hidden=True,
            )
        return EIIFNode(theta, 0.0, r, soft_reset=soft, step_mode="m")
    decay = 1.0 if integrators else draw(st.one_of(st.just(0.0), st.floats(0.05, 0.95)))
    reset = draw(st.booleans()) if decay == 0.0 else False
    a_pos, a_neg = draw(st.floats(-2.0, 2.0)), draw(st.floats(-2.0, 2.0))
    if face:
        return CustomNeuron(
            threshold=theta,
            alpha=0.0,
            beta=decay,
            amp_pos=a_pos,
            amp_neg=a_neg,
            reset_mechanism="subtract" if reset else "none",
            init_hidden=True,
        )
    return CustomNeuronNode(theta, 0.0, decay, a_pos, a_neg, reset=reset, step_mode="m")


@st.composite
def spike_nets(draw, integrators: bool = False):
    """``(net, faces, input_shape)``: [Linear] neuron [Linear neuron], all SpikingJelly nodes or all faces."""
    face = draw(st.booleans())
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    sizes = [draw(st.integers(1, 5)) for _ in range(3)]
    layers: list[nn.Module] = []
    if draw(st.booleans()):
        layers.append(_seeded_linear(gen, sizes[0], sizes[1], draw(st.booleans()), 1.0))
        input_shape = sizes[0]
    else:
        input_shape = sizes[1]
    layers.append(draw(spike_neurons(face, integrators)))
    if draw(st.booleans()):
        layers += [
            _seeded_linear(gen, sizes[1], sizes[2], draw(st.booleans()), 1.0),
            draw(spike_neurons(face, integrators)),
        ]
    return nn.Sequential(*layers), face, input_shape


def run_bt(net: nn.Sequential, x_seq: torch.Tensor, faces: bool) -> torch.Tensor:
    with torch.no_grad():
        if faces:
            return torch.stack([net(x) for x in x_seq])
        functional.reset_net(net)
        return net(x_seq)


def membranes_clear_of_thresholds(
    net: nn.Sequential, x_seq: torch.Tensor, faces: bool, tol: float = 1e-4
) -> bool:
    """True when no neuron's membrane H comes within ``tol`` (relative) of a threshold ``±theta``.

    Only there ``>`` (snnTorch, NIR) and ``>=`` (bt-neurons) can disagree.
    """
    seen: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: seen.append((mod, args[0].detach().clone())))
        for m in net
        if btnir._bt_parts(m) is not None
    ]
    try:
        run_bt(net, x_seq, faces)
    finally:
        for h in hooks:
            h.remove()
    by_module: dict[int, list[torch.Tensor]] = {}
    for mod, x in seen:
        by_module.setdefault(id(mod), []).append(x)
    for m in net:
        neuron = btnir._neuron(m, "path", None)
        if neuron is None:
            continue
        xs = by_module[id(m)]
        xs = list(xs[0]) if not faces else xs  # [T, N, n] in one call, or one call per step
        for lv in neuron.levels:
            h = torch.zeros_like(xs[0])
            for x in xs:
                h = lv.keep * h + x if lv.keep else x
                if ((h.abs() - lv.threshold).abs() <= tol * max(1.0, lv.threshold)).any():
                    return False
    return True


def inputs(draw, shape: tuple[int, ...], gen_scale: float = 2.0) -> torch.Tensor:
    seed = draw(st.integers(0, 2**31 - 1))
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * gen_scale


# ------------------------------------------------------------------------- spike reading, simulated
@given(data=st.data())
def test_spike_reading_matches_spikingjelly_and_snntorch(data):
    net, faces, n_in = data.draw(spike_nets())
    T, N = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 3))
    x_seq = inputs(data.draw, (T, N, n_in), data.draw(st.sampled_from([0.5, 2.0, 5.0])))
    graph = btnir.export(net, n_in)
    ref = run_bt(net, x_seq, faces)
    assert torch.equal(run_spikingjelly(graph, x_seq), ref)  # >= on both sides: equal everywhere
    if membranes_clear_of_thresholds(net, x_seq, faces):
        event("compared with snnTorch")
        assert torch.equal(run_snntorch(graph, x_seq), ref)


@given(data=st.data())
def test_spike_reading_agrees_with_spikingjelly_at_the_threshold_itself(data):
    # inputs exactly at +-theta: SpikingJelly fires as bt-neurons does (>=); snnTorch (>) would not
    theta = data.draw(st.floats(0.1, 2.0))
    node = EIIFNode(theta, 0.0, data.draw(st.sampled_from([1.0, 0.5])), step_mode="m")
    t32 = float(np.float32(theta))
    x_seq = torch.tensor(data.draw(st.lists(st.sampled_from([t32, -t32, 0.0]), min_size=4, max_size=4)))
    x_seq = x_seq.reshape(4, 1, 1)
    ref = run_bt(nn.Sequential(node), x_seq, faces=False)
    assert torch.equal(run_spikingjelly(btnir.export(node, 1), x_seq), ref)


@given(data=st.data())
def test_integrator_neurons_match_nirtorch_with_nir_equations(data):
    # keep = 1 (EI_IF r = 0, CustomNeuron decay = 1, no reset): NIR's I then Threshold
    net, faces, n_in = data.draw(spike_nets(integrators=True))
    T, N = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 3))
    x_seq = inputs(data.draw, (T, N, n_in))
    graph = btnir.export(net, n_in)
    assert any(isinstance(n, nir.I) for n in graph.nodes.values())
    ref = run_bt(net, x_seq, faces)
    assume(membranes_clear_of_thresholds(net, x_seq, faces))
    assert torch.equal(run_nirtorch(graph, x_seq), ref)


# ------------------------------------------------------------------------- count reading, simulated
@st.composite
def count_neurons(draw, T: int):
    """``(node on its count path, the same neuron on its spike path)`` for any configuration."""
    if draw(st.booleans()):
        kw = {
            "theta_0": draw(st.floats(0.1, 2.0)),
            "alpha": draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))),
            "r": draw(st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 1.0))),
            "soft_reset": draw(st.booleans()),
        }
        return EIIFNode(**kw, T=T, path="count"), EIIFNode(**kw, step_mode="m")
    theta, alpha = draw(st.floats(0.2, 2.0)), draw(st.floats(-0.1, 0.5))
    assume(theta + alpha * (T - 1) > 0.05)
    per_step = draw(st.booleans())
    kw = {
        "theta_base": theta,
        "alpha": alpha,
        "decay": draw(st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.2))),
        "amp_pos": draw(st.floats(-2.0, 2.0)),
        "amp_neg": draw(st.floats(-2.0, 2.0)),
        "reset": draw(st.booleans()),
        "per_step": per_step,
        "learnable": False,
    }
    nodes = CustomNeuronNode(**kw, T=T, path="count"), CustomNeuronNode(**kw, T=T, step_mode="m")
    if per_step:
        gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
        amps = torch.randn(2, T, generator=gen)
        offsets = 0.05 * torch.rand(T, generator=gen)
        for node in nodes:
            node.amp_pos.copy_(amps[0])
            node.amp_neg.copy_(amps[1])
            node.offsets.copy_(offsets)
    return nodes


def clear_of_breakpoints(node, h: torch.Tensor, T: int, tol: float = 1e-4) -> bool:
    breaks = node.staircase(T).breaks[0]
    breaks = breaks[torch.isfinite(breaks)]
    return bool(((h.abs().unsqueeze(-1) - breaks).abs() > tol * breaks.clamp(min=1.0)).all())


@given(data=st.data())
def test_count_reading_matches_spikingjelly_and_snntorch(data):
    T = data.draw(st.integers(1, 6))
    count_node, spike_node = data.draw(count_neurons(T))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    n_in, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    lin = _seeded_linear(gen, n_in, n, True, 1.0)
    count_net = nn.Sequential(lin, count_node)
    steps, N = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    x = torch.randn(steps, N, n_in, generator=gen) * data.draw(st.sampled_from([1.0, 3.0]))
    with torch.no_grad():
        ref = count_net(x)  # the count path: each step's input as a constant drive over T steps
        h = lin(x)
    graphs = [btnir.export(count_net), btnir.export(nn.Sequential(lin, spike_node), reading="count", T=T)]
    exact = isinstance(count_node, EIIFNode)  # integer counts: the levels' sums are exact
    for graph in graphs:
        out = run_spikingjelly(graph, x)
        assert torch.equal(out, ref) if exact else torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
        if clear_of_breakpoints(count_node, h, T):
            event("compared with snnTorch")
            out = run_snntorch(graph, x)
            assert torch.equal(out, ref) if exact else torch.allclose(out, ref, rtol=1e-5, atol=1e-5)


@given(data=st.data())
def test_count_reading_is_the_spike_count_of_the_spike_path(data):
    # what the count reading keeps: sum over T steps of the spikes under a constant input (not their timing)
    T = data.draw(st.integers(1, 8))
    alpha, r = data.draw(st.floats(0.0, 1.5)), data.draw(st.one_of(st.just(1.0), st.floats(0.0, 1.0)))
    node = EIIFNode(
        data.draw(st.floats(0.1, 2.0)), alpha, r, soft_reset=data.draw(st.booleans()), step_mode="m"
    )
    x = inputs(data.draw, (1, 3, 4), 3.0)
    with torch.no_grad():
        spikes = node(x.expand(T, 3, 4))
    counts = run_spikingjelly(btnir.export(node, 4, reading="count", T=T), x)
    assert torch.equal(counts[0], spikes.sum(0))


def test_staircase_of_r1_eiif_is_its_thresholds():
    node = EIIFNode(0.5, 1.0, 1.0, T=4, path="count")
    graph = btnir.export(node, 2)
    thresholds = sorted(
        float(np.unique(n.v_threshold)[0]) for n in graph.nodes.values() if isinstance(n, nir.CubaLIF)
    )
    assert thresholds == [0.5, 1.5, 2.5, 3.5]  # theta_0 + alpha * t, t = 0..T-1, one level each
    assert all(
        np.allclose(n.tau_syn, btnir.DEFAULT_DT) for n in graph.nodes.values() if isinstance(n, nir.CubaLIF)
    )


# ---------------------------------------------------------------------------------- bt round trip
def _strip_metadata(graph):
    for node in graph.nodes.values():
        node.metadata = {}
    return graph


@given(data=st.data())
def test_import_of_the_export_is_the_original_network(data):
    net, faces, n_in = data.draw(spike_nets(integrators=data.draw(st.booleans())))
    T, N = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 3))
    x_seq = inputs(data.draw, (T, N, n_in))
    ref = run_bt(net, x_seq, faces)
    graph = btnir.export(net, n_in)
    back = btnir.import_(graph)
    assert all(m.step_mode == "m" for m in back)
    assert torch.equal(run_bt(back, x_seq, faces=False), ref)
    if not faces:  # the very nodes come back: class and parameters
        for a, b in zip(
            [m for m in net if not isinstance(m, nn.Linear)],
            [m for m in back if not isinstance(m, nn.Linear)],
            strict=True,
        ):
            assert type(a) is type(b)
            assert a.extra_repr().replace("'s'", "'m'") == b.extra_repr()
    # without bt-neurons' metadata, the structure alone gives the same spikes
    assert torch.equal(run_bt(btnir.import_(_strip_metadata(graph)), x_seq, faces=False), ref)


@given(data=st.data())
def test_import_of_a_count_reading_is_the_count_path_network(data):
    T = data.draw(st.integers(1, 6))
    count_node, spike_node = data.draw(count_neurons(T))
    x = inputs(data.draw, (2, 3, 2))
    lin = _seeded_linear(torch.Generator().manual_seed(0), 2, 3, True, 1.0)
    net = nn.Sequential(lin, count_node)
    with torch.no_grad():
        ref = net(x)
    for graph in (btnir.export(net), btnir.export(nn.Sequential(lin, spike_node), reading="count", T=T)):
        back = btnir.import_(graph)
        assert back[1].path == "count" and back[1].T == T
        with torch.no_grad():
            assert torch.equal(back(x), ref)


def test_round_trip_through_a_nir_file(tmp_path):
    net = nn.Sequential(
        nn.Linear(3, 4),
        EIIFNode(0.5, 0.0, 0.25, step_mode="m"),
        layer.Linear(4, 2, bias=False, step_mode="m"),
        EIIFNode(0.5, 1.0, 0.5, soft_reset=True, T=5, path="count"),
    )
    path = tmp_path / "net.nir"
    nir.write(path, btnir.export(net))
    back = btnir.import_(path)
    x = torch.randn(6, 2, 3) * 2
    with torch.no_grad():
        functional.reset_net(net)
        assert torch.equal(back(x), net(x))
    assert isinstance(back[3], EIIFNode) and back[3].soft_reset and back[3].T == 5


def test_flatten_exports_and_round_trips():
    net = nn.Sequential(layer.Flatten(step_mode="m"), nn.Linear(6, 4), EIIFNode(0.5, 0.0, 1.0, step_mode="m"))
    graph = btnir.export(net, (2, 3))
    assert isinstance(graph.nodes["flatten0"], nir.Flatten)
    x = torch.randn(3, 2, 2, 3) * 2
    ref = run_bt(net, x, faces=False)
    assert torch.equal(run_spikingjelly(graph, x), ref)  # (snnTorch's importer flattens the batch axis too)
    assert torch.equal(run_bt(btnir.import_(graph), x, faces=False), ref)


def test_graded_spikes_factor_scales_the_merge_weights():
    face = EIIF(alpha=0.0, r=1.0, init_hidden=True)
    face.graded_spikes_factor = torch.tensor(0.25)
    block = btnir._extract_bt_module(face, 3)
    merge = block.nodes["merge0"].weight
    assert np.array_equal(merge, np.concatenate([0.25 * np.eye(3), -0.25 * np.eye(3)], 1).astype(np.float32))
    back = btnir.import_(block)  # a scaled EI_IF comes back as the CustomNeuron with those amplitudes
    assert isinstance(back[0], CustomNeuronNode)
    assert back[0].amp_pos.item() == back[0].amp_neg.item() == 0.25
    counted = btnir.import_(btnir._extract_bt_module(face, 3, reading="count", T=4))[0]
    assert isinstance(counted, CustomNeuronNode) and counted.path == "count"
    x = torch.tensor([[2.5, -0.2, 0.7]])
    with torch.no_grad():
        assert torch.equal(counted(x), 0.25 * EIIFNode(alpha=0.0, r=1.0, T=4, path="count")(x))
    face.graded_spikes_factor = torch.ones(3)
    with pytest.raises(ValueError, match="graded_spikes_factor must be one number"):
        btnir._extract_bt_module(face, 3)


# ---------------------------------------------------------------------- configurations with no NIR
NOT_EXPORTABLE = [
    (lambda: EIIFNode(), "alpha=1.0 has no NIR equivalent: NIR thresholds do not change with the step"),
    (lambda: EIIFNode(alpha=0.0, r=0.5, soft_reset=True), "soft_reset=True has no NIR equivalent"),
    (lambda: EIIFNode(alpha=0.0, r=0.0, soft_reset=True), "soft_reset=True has no NIR equivalent"),
    (lambda: CustomNeuronNode(), "reset=True has no NIR equivalent"),
    (lambda: CustomNeuronNode(alpha=0.5, reset=False), "alpha=0.5 has no NIR equivalent"),
    (lambda: CustomNeuronNode(per_step=True, T=3, reset=False), "per_step=True has no NIR equivalent"),
    (lambda: CustomNeuronNode(decay=1.5, reset=False), "decay=1.5 has no NIR equivalent"),
    (lambda: EIIF(), "alpha=1.0 has no NIR equivalent"),
    (lambda: EIIF(alpha=0.0, r=0.5, reset_mechanism="subtract"), "soft_reset=True has no NIR equivalent"),
    (lambda: CustomNeuron(beta=0.5), "reset=True has no NIR equivalent"),
]


@pytest.mark.parametrize(("build", "message"), NOT_EXPORTABLE)
def test_configurations_without_nir_equivalent_raise_naming_the_parameter(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        btnir.export(nn.Sequential(nn.Linear(2, 3), build()))
    with pytest.raises(ValueError, match="count reading"):  # and the message says what does export
        btnir._extract_bt_module(build(), 3)


@pytest.mark.parametrize(("build", "message"), NOT_EXPORTABLE)
def test_every_configuration_exports_its_count_reading(build, message):
    graph = btnir.export(nn.Sequential(nn.Linear(2, 3), build()), reading="count", T=3)
    assert any(isinstance(n, nir.CubaLIF) for n in graph.nodes.values())


def test_count_reading_needs_T():
    with pytest.raises(ValueError, match="T must be given for the count reading"):
        btnir.export(EIIFNode(), 2, reading="count")
    with pytest.raises(ValueError, match=r"T must be <= 3"):
        btnir.export(CustomNeuronNode(per_step=True, T=3), 2, reading="count", T=4)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("net", "error", "message"),
    [
        ("net", TypeError, "net must be a torch.nn.Module"),
        (None, TypeError, "net must be a torch.nn.Module"),
        ([nn.Linear(2, 2), "relu"], TypeError, r"net\[1\] must be a torch.nn.Module, got str"),
        (nn.Sequential(nn.Linear(2, 2), nn.ReLU()), TypeError, "does not support ReLU"),
        (nn.Sequential(nn.Conv1d(1, 1, 1)), TypeError, "does not support Conv1d"),
        (nn.Sequential(nn.Linear(2, 3), nn.Linear(2, 2)), ValueError, "expects 2 input features"),
        (nn.Sequential(EIIFNode(alpha=0.0)), ValueError, "input_shape must be given"),
        (nn.Sequential(), ValueError, "at least one layer"),
    ],
)
def test_export_bad_input(net, error, message):
    with pytest.raises(error, match=message):
        btnir.export(net)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dt": 0.0}, ValueError, "dt must be finite and > 0"),
        ({"dt": "1e-4"}, TypeError, "dt must be a real number"),
        ({"reading": "spikes"}, ValueError, "reading must be one of"),
        ({"T": 0}, ValueError, "T must be a positive int"),
        ({"input_shape": "3"}, TypeError, "input_shape must be an int or a sequence"),
        ({"input_shape": (2, 0)}, ValueError, "input_shape must be an int >= 1"),
    ],
)
def test_export_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        btnir.export(nn.Linear(2, 2), **kwargs)


def test_neuron_after_a_multi_dimensional_shape_is_refused():
    with pytest.raises(ValueError, match="needs 1-D features"):
        btnir.export(EIIFNode(alpha=0.0), (2, 3))


def test_import_bad_input():
    with pytest.raises(TypeError, match="graph must be a nir.NIRGraph"):
        btnir.import_(42)
    lif = nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(ValueError, match="node 'lif' is a nir.LIF"):
        btnir.import_(nir.NIRGraph.from_list(nir.Linear(np.eye(2, dtype=np.float32)), lif))
    staircase = _strip_metadata(btnir.export(EIIFNode(0.5, 1.0, 1.0, T=3, path="count"), 2))
    with pytest.raises(ValueError, match="a staircase of 3 threshold levels"):
        btnir.import_(staircase)
    other_dt = btnir.export(EIIFNode(0.5, 0.0, 0.5), 2, dt=1e-3)
    with pytest.raises(ValueError, match="tau_mem=0.001 must equal dt=0.0001"):
        btnir.import_(_strip_metadata(other_dt), dt=1e-4)
    assert isinstance(btnir.import_(other_dt)[0], EIIFNode)  # the dt export recorded


# ---------------------------------------------------------------- hooks for snnTorch's exporters
def test_extract_bt_module_maps_bt_neurons_only():
    assert btnir._extract_bt_module(nn.Linear(2, 2)) is None
    block = btnir._extract_bt_module(EIIFNode(alpha=0.0), 4)
    assert isinstance(block, nir.NIRGraph) and set(block.nodes) == {
        "input",
        "split0",
        "unit0",
        "merge0",
        "output",
    }
    with pytest.raises(ValueError, match="size must be given"):
        btnir._extract_bt_module(EIIFNode(alpha=0.0))
    node = EIIFNode(alpha=0.0)
    node(torch.zeros(2, 7))  # a forward pass leaves the state that tells the size
    assert btnir._extract_bt_module(node).nodes["input"].input_type["input"].tolist() == [7]


def _face_net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(4, 5),
        EIIF(alpha=0.0, r=0.5, init_hidden=True),
        nn.Linear(5, 3),
        CustomNeuron(threshold=0.7, beta=0.0, amp_pos=0.5, init_hidden=True),
    )


def _snntorch_then_bt(module):
    from snntorch.export_nir import _extract_snntorch_module

    block = btnir._extract_bt_module(module)
    return block if block is not None else _extract_snntorch_module(module)


def test_hook_into_nirtorch_extract_nir_graph_as_snntorch_export_to_nir_does():
    import snntorch as snn

    net = _face_net()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = nirtorch.extract_nir_graph(
            net,
            _snntorch_then_bt,
            torch.zeros(2, 4),
            ignore_submodules_of=[snn.RLeaky, snn.RSynaptic, EIIF, CustomNeuron],
            ignore_dims=[0],
        )
    graph.infer_types()
    assert {"1.split0", "1.unit0", "1.merge0", "3.merge0"} <= set(graph.nodes)
    x = torch.randn(6, 2, 4) * 2
    ref = run_bt(_face_net(), x, faces=True)
    assert torch.equal(run_spikingjelly(graph, x), ref)
    assert torch.equal(run_bt(btnir.import_(graph), x, faces=False), ref)


def test_hook_into_nirtorch_torch_to_nir_with_spk_mem_outputs():
    class TwoOutputs(nn.Module):  # a face returning (spk, mem), as output=True does
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 5)
            self.lif = EIIF(alpha=0.0, r=1.0, init_hidden=True, output=True)

        def forward(self, x):
            spk, _ = self.lif(self.fc(x))
            return spk

    net = TwoOutputs()
    net(torch.zeros(2, 4))  # sizes for the hook
    graph = nirtorch.torch_to_nir(
        net,
        {
            EIIF: btnir._extract_bt_module,
            nn.Linear: lambda m: nir.Affine(m.weight.detach().numpy(), m.bias.detach().numpy()),
        },
        stateful_modules={EIIF},
    )
    assert isinstance(graph.nodes["lif"], nir.NIRGraph)  # kept as a subgraph: nirtorch runs it nested
    x = torch.randn(4, 3, 4) * 2
    with torch.no_grad():
        net.lif.reset_hidden()
        ref = torch.stack([net(xt) for xt in x])
    assert torch.equal(run_spikingjelly(graph, x), ref)
    assert torch.equal(run_bt(btnir.import_(graph), x, faces=False), ref)


def test_export_doc_numbers_are_finite():
    # the time constants of a block are plain finite numbers in seconds
    graph = btnir.export(CustomNeuronNode(0.5, 0.0, 0.75, reset=False), 2)
    unit = graph.nodes["0_unit0"]
    assert math.isclose(float(unit.tau_syn[0]), btnir.DEFAULT_DT / 0.25)
    assert float(unit.tau_mem[0]) == btnir.DEFAULT_DT and float(unit.w_in[0]) == pytest.approx(4.0)
