"""SpikingJelly's op counter counts bt-neurons' signed spikes (`bt_neurons.synop_counter`).

The stock ``SynOpCounter`` sees only {0, 1} spikes; `SignedSynOpCounter`
counts {-1, 0, +1} spikes by their magnitudes (binary ones as before) and every
call of a bt-neurons module with the additions `track_spikes` reports for it.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.op_counter import (
    DispatchCounterMode,
    ModuleCounterMode,
    SynOpCounter,
)
from torch import nn

from bt_neurons import (
    EIIFEncoder,
    EIIFNode,
    QSynapsis,
    Quantizer,
    SNNMatmul,
    SNNMultiply,
    SNNRMSNorm,
    SNNSoftmax,
    Synapsis,
    track_spikes,
)
from bt_neurons.accounting import ADD_PJ
from bt_neurons.synop_counter import (
    SignedSynOpCounter,
    count_synops,
    is_signed_spike_tensor,
    signed_spike_rules,
)

aten = torch.ops.aten


def _signed_spikes(*shape: int, p: float = 0.3, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random spikes in {-1, 0, +1}, each nonzero with probability ``p``."""
    u = torch.rand(*shape, generator=generator)
    sign = torch.where(torch.rand(*shape, generator=generator) < 0.5, -1.0, 1.0)
    return torch.where(u < p, sign, torch.zeros(()))


def _outputs(net: nn.Module) -> tuple[list[torch.Tensor], list[torch.utils.hooks.RemovableHandle]]:
    """Forward hooks keeping every child's output, in call order."""
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _a, out: seen.append(out)) for m in net]
    return seen, handles


def _run_both(net: nn.Module, x: torch.Tensor) -> tuple[SignedSynOpCounter, SynOpCounter]:
    signed, stock = SignedSynOpCounter(), SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([signed, stock]):
        net(x)
    functional.reset_net(net)
    return signed, stock


def _sj_eiif_net(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        layer.Linear(n_in, hidden, step_mode="m"),
        EIIFNode(step_mode="m"),
        layer.Linear(hidden, n_out, step_mode="m"),
        EIIFNode(step_mode="m"),
    )


# ------------------------------------------------------------ signed spikes in SJ nets
@given(
    T=st.integers(1, 6),
    batch=st.integers(1, 4),
    n_in=st.integers(1, 9),
    hidden=st.integers(1, 9),
    n_out=st.integers(1, 9),
    spike_input=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sj_net_of_eiif_nodes_counts_every_signed_spike_times_fan_out(
    T, batch, n_in, hidden, n_out, spike_input, seed
):
    g = torch.Generator().manual_seed(seed)
    net = _sj_eiif_net(n_in, hidden, n_out)
    if spike_input:
        x = _signed_spikes(T, batch, n_in, generator=g)
    else:  # a float drive, large enough to fire at late steps too
        x = torch.randn(T, batch, n_in, generator=g) * (T + 1)
    seen, handles = _outputs(net)
    try:
        signed, stock = _run_both(net, x)
    finally:
        for h in handles:
            h.remove()
    s1 = seen[1]
    assert set(s1.unique().tolist()) <= {-1.0, 0.0, 1.0}
    first = int(x.count_nonzero()) * hidden if spike_input else 0  # a float input drives no SynOp
    second = int(s1.count_nonzero()) * n_out
    assert signed.get_total() == first + second
    counts = signed.get_counts()
    assert sum(counts.get("Sequential.2", {}).values()) == second
    assert sum(counts.get("Sequential.0", {}).values()) == first
    stock_counts = stock.get_counts()
    if not spike_input or bool(x.lt(0).any()):  # the bug the counter fixes: no {0, 1} tensor, no SynOp
        assert sum(stock_counts.get("Sequential.0", {}).values()) == 0
    if bool(s1.lt(0).any()):
        assert sum(stock_counts.get("Sequential.2", {}).values()) == 0


def test_stock_counter_counts_zero_on_a_signed_spike_net():
    torch.manual_seed(1)
    net = _sj_eiif_net(12, 16, 8)
    x = torch.randn(4, 3, 12) * 6
    seen, handles = _outputs(net)
    signed, stock = _run_both(net, x)
    for h in handles:
        h.remove()
    assert bool(seen[1].lt(0).any()) and bool(seen[1].gt(0).any())
    assert stock.get_total() == 0
    assert signed.get_total() == int(seen[1].count_nonzero()) * 8 > 0


@given(
    T=st.integers(1, 5),
    batch=st.integers(1, 3),
    n_in=st.integers(1, 8),
    hidden=st.integers(1, 8),
    seed=st.integers(0, 2**16),
)
def test_binary_spike_nets_are_counted_as_the_stock_counter_counts_them(T, batch, n_in, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        layer.Linear(n_in, hidden, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Linear(hidden, 3, step_mode="m"),
        neuron.IFNode(step_mode="m"),
    )
    x = (torch.rand(T, batch, n_in, generator=g) < 0.4).float()
    signed, stock = _run_both(net, x)
    assert signed.get_counts() == stock.get_counts()
    assert signed.get_total() == stock.get_total() >= int(x.count_nonzero()) * hidden


def test_binary_spike_conv_net_is_counted_as_the_stock_counter_counts_it():
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m"),
        neuron.IFNode(step_mode="m"),
        layer.Conv2d(4, 3, 3, stride=2, step_mode="m"),
        neuron.IFNode(step_mode="m"),
    )
    x = (torch.rand(3, 2, 2, 7, 7) < 0.3).float()
    signed, stock = _run_both(net, x)
    assert signed.get_counts() == stock.get_counts() and signed.get_total() > 0


def _conv_weight_uses(s: torch.Tensor, conv: nn.Conv2d) -> int:
    """Hand count: (nonzero input, output position, kernel tap) triples, times the output channels."""
    patches = F.unfold(s.abs(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    return int(patches.sum()) * conv.out_channels


@given(
    c_in=st.integers(1, 3),
    c_out=st.integers(1, 4),
    size=st.integers(3, 8),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    seed=st.integers(0, 2**16),
)
def test_signed_spikes_into_a_conv2d(c_in, c_out, size, k, stride, padding, seed):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=padding)
    s = _signed_spikes(2, c_in, size, size, generator=g)
    signed, stock = SignedSynOpCounter(), SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([signed]):
        conv(s)
    with torch.no_grad(), DispatchCounterMode([stock]):
        conv(s.abs())  # the same spikes, unsigned
    assert signed.get_total() == stock.get_total() == _conv_weight_uses(s, conv)


def test_sj_conv_net_with_eiif_nodes():
    torch.manual_seed(2)
    net = nn.Sequential(
        layer.Conv2d(2, 4, 3, padding=1, step_mode="m"),
        EIIFNode(step_mode="m"),
        layer.Conv2d(4, 3, 3, step_mode="m"),
        EIIFNode(step_mode="m"),
    )
    seen, handles = _outputs(net)
    signed, stock = _run_both(net, torch.randn(3, 2, 2, 6, 6) * 4)
    for h in handles:
        h.remove()
    s1 = seen[1].flatten(0, 1)
    assert bool(s1.lt(0).any())
    assert signed.get_total() == _conv_weight_uses(s1, net[2]) > 0
    assert stock.get_total() == 0


@given(
    b=st.integers(1, 3),
    m=st.integers(1, 6),
    k=st.integers(1, 6),
    n=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_spike_times_spike_products_follow_sj_convention(b, m, k, n, seed):
    """Spikes x spikes: the coincident nonzero pairs, sum |X| |Y| (SJ: sum X Y for binary spikes)."""
    g = torch.Generator().manual_seed(seed)
    x, y = _signed_spikes(b, m, k, generator=g), _signed_spikes(b, k, n, generator=g)
    bias = torch.randn(b, m, n, generator=g)
    pairs_b = int((x.abs() @ y.abs()).sum())
    pairs_0 = int((x[0].abs() @ y[0].abs()).sum())
    calls = (
        (torch.mm, (x[0], y[0]), pairs_0),
        (torch.addmm, (bias[0], x[0], y[0]), pairs_0),
        (torch.bmm, (x, y), pairs_b),
        (torch.baddbmm, (bias, x, y), pairs_b),
    )
    for fn, args, expected in calls:
        signed, stock = SignedSynOpCounter(), SynOpCounter()
        with DispatchCounterMode([signed]):
            fn(*args)
        with DispatchCounterMode([stock]):
            fn(*(a.abs() if a is not bias and a is not bias[0] else a for a in args))
        assert signed.get_total() == stock.get_total() == expected, fn.__name__


def test_spikes_times_weights_count_nnz_times_fan_out_in_every_product():
    x = _signed_spikes(2, 4, 5)
    w = torch.randn(5, 3)
    wb = torch.randn(2, 5, 3)
    nnz0, nnz = int(x[0].count_nonzero()), int(x.count_nonzero())
    for fn, args, expected in (
        (torch.mm, (x[0], w), nnz0 * 3),
        (torch.mm, (w.T, x[0].T), nnz0 * 3),  # spikes as the right factor: times the rows
        (torch.addmm, (torch.zeros(3), x[0], w), nnz0 * 3),
        (torch.bmm, (x, wb), nnz * 3),
        (torch.baddbmm, (torch.zeros(2, 4, 3), x, wb), nnz * 3),
    ):
        counter = SignedSynOpCounter()
        with DispatchCounterMode([counter]):
            fn(*args)
        assert counter.get_total() == expected, fn.__name__


def test_is_signed_spike_tensor():
    assert is_signed_spike_tensor(torch.tensor([-1.0, 0.0, 1.0]))
    assert is_signed_spike_tensor(torch.tensor([0, 1], dtype=torch.int8))
    assert is_signed_spike_tensor(torch.tensor([True, False]))
    assert is_signed_spike_tensor(torch.empty(0))
    assert not is_signed_spike_tensor(torch.tensor([-1.0, 2.0]))
    assert not is_signed_spike_tensor(torch.tensor([0.5]))
    assert not is_signed_spike_tensor([1, 0])


# ------------------------------------------------------------ bt modules and track_spikes
def _synapsis_net(n_in: int, hidden: int, n_out: int, T: int, path: str, bias: bool) -> nn.Sequential:
    torch.manual_seed(0)
    fc1, fc2 = nn.Linear(n_in, hidden, bias=bias), nn.Linear(hidden, n_out, bias=bias)
    return nn.Sequential(Synapsis(fc1, T, path=path), Synapsis(fc2, T, path=path))


def _count_and_track(net: nn.Module, *inputs: torch.Tensor) -> tuple[int, float]:
    with track_spikes() as stats:
        counter = count_synops(net, inputs)
    return counter.get_total(), stats.additions


@settings(max_examples=20)
@given(
    T=st.integers(1, 9),
    tokens=st.lists(st.integers(1, 3), min_size=1, max_size=2),
    n_in=st.integers(1, 8),
    hidden=st.integers(1, 8),
    n_out=st.integers(1, 8),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_synapsis_net_counter_equals_track_spikes_on_both_paths(T, tokens, n_in, hidden, n_out, bias, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*tokens, n_in, generator=g)
    totals = []
    for path in ("count", "spike"):
        net = _synapsis_net(n_in, hidden, n_out, T, path, bias)
        total, additions = _count_and_track(net, x)
        assert total == additions
        totals.append(total)
    assert totals[0] == totals[1]
    # the spike path, counted operator by operator (no module rule): the same spikes x fan-out
    net = _synapsis_net(n_in, hidden, n_out, T, "spike", bias)
    ops = SignedSynOpCounter()
    del ops.rules[("forward", Synapsis)]
    with torch.no_grad(), DispatchCounterMode([ops]):
        net(x)
    bias_additions = (x.numel() // n_in) * (hidden + n_out) if bias else 0
    assert ops.get_total() + bias_additions == totals[0]
    stock = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([stock]):
        net(x)
    assert stock.get_total() <= ops.get_total()  # the stock counter sees only the steps without a -1


def test_synapsis_counts_presynaptic_spikes_times_out_features_per_scope():
    net = _synapsis_net(6, 5, 4, 7, "count", False)
    x = torch.randn(3, 6)
    counter = count_synops(net, x)
    q = Quantizer(qmax=7)
    with torch.no_grad():
        pre1 = int(q.quantize(x)[0].abs().sum())
        pre2 = int(q.quantize(net[0](x))[0].abs().sum())
    counts = counter.get_counts()
    assert counts["Sequential.0"] == {("forward", Synapsis): pre1 * 5}
    assert sum(counts["Sequential.1"].values()) == pre2 * 4
    assert counter.get_total() == pre1 * 5 + pre2 * 4
    assert counter.uncounted_modules() == []


def test_mixed_net_sj_layers_and_synapsis():
    """SJ layers fed by EI_IF spikes (operator rules) and a Synapsis (module rule) in one count."""
    torch.manual_seed(3)
    T = 4
    head = nn.Sequential(layer.Linear(6, 8, step_mode="m"), EIIFNode(step_mode="m"))
    syn = Synapsis(nn.Linear(8, 5, bias=False), 7)
    net = nn.Sequential(head, syn)
    x = torch.randn(T, 2, 6) * 5
    seen, handles = _outputs(head)
    with track_spikes() as stats:
        counter = count_synops(net, x)
    for h in handles:
        h.remove()
    functional.reset_net(net)
    assert counter.get_total() == stats.additions  # the spikes into the Synapsis are its presynaptic drive
    with torch.no_grad():
        pre = int(Quantizer(qmax=7).quantize(seen[1])[0].abs().sum())
    assert counter.get_total() == pre * 5


def test_dispatch_mode_alone_skips_bt_modules_and_warns():
    net = _synapsis_net(4, 3, 2, 5, "spike", False)
    counter = SignedSynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(torch.randn(2, 4))
    assert counter.uncounted_modules() == ["Synapsis"]
    with pytest.warns(RuntimeWarning, match="Synapsis ran without a module event"):
        assert counter.get_total() == 0
    counter.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert counter.get_total() == 0


def test_both_modes_by_hand_equal_count_synops():
    net = _synapsis_net(5, 4, 3, 6, "spike", True)
    x = torch.randn(2, 5)
    counter = SignedSynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]), ModuleCounterMode([counter], model=net):
        net(x)
    assert counter.get_counts() == count_synops(net, x).get_counts()


@settings(max_examples=30)
@given(
    T=st.integers(1, 12),
    lead=st.lists(st.integers(1, 3), min_size=0, max_size=2),
    m=st.integers(1, 5),
    n=st.integers(1, 5),
    k=st.integers(1, 6),
    transpose_y=st.booleans(),
    path=st.sampled_from(["count", "spike"]),
    seed=st.integers(0, 2**16),
)
def test_snn_matmul_counter_equals_track_spikes(T, lead, m, n, k, transpose_y, path, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, m, k, generator=g)
    y = torch.randn(*lead, *((n, k) if transpose_y else (k, n)), generator=g)
    op = SNNMatmul(T, transpose_y=transpose_y, path=path)
    total, additions = _count_and_track(op, x, y)
    assert total == additions


def test_snn_matmul_with_grouped_heads_and_keyword_arguments():
    op = SNNMatmul(5)
    x, y = torch.randn(2, 4, 3, 6), torch.randn(2, 2, 5, 6)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qk = op

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.qk(x, y=y, groups=2)

    total, additions = _count_and_track(Attention(), x, y)
    assert total == additions > 0


@settings(max_examples=30)
@given(
    T=st.integers(1, 12),
    rows=st.integers(1, 4),
    channels=st.sampled_from([2, 4, 6]),
    calibrated=st.booleans(),
    group_size=st.sampled_from([None, 2]),
    path=st.sampled_from(["count", "spike"]),
    seed=st.integers(0, 2**16),
)
def test_snn_multiply_counter_equals_track_spikes(T, rows, channels, calibrated, group_size, path, seed):
    g = torch.Generator().manual_seed(seed)
    op = SNNMultiply(T, path=path, channels=channels if calibrated else None, group_size=group_size)
    if calibrated:
        op.x_channel_scale.uniform_(0.5, 2.0, generator=g)
        op.y_channel_scale.uniform_(0.5, 2.0, generator=g)
    x, y = torch.randn(rows, channels, generator=g), torch.randn(rows, channels, generator=g)
    total, additions = _count_and_track(op, x, y)
    assert total == additions


def test_group_scaled_synapsis_embedding_and_qsynapsis_equal_track_spikes():
    torch.manual_seed(4)
    grouped = Synapsis(nn.Linear(8, 3), 7, pre_quantizer=Quantizer(qmax=7, group_size=4), path="spike")
    embedding = Synapsis.from_embedding(nn.Embedding(10, 4), 7)
    qsyn = QSynapsis.from_linear(nn.Linear(4, 3), 7)
    ids = torch.tensor([[1, 2, 3]])

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding, self.q, self.grouped = embedding, qsyn, grouped

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            h = self.embedding(ids)
            return self.grouped(torch.cat([h, self.q(h) @ torch.full((3, 4), 0.5)], -1))

    net = Net()
    total, additions = _count_and_track(net, ids)
    assert total == additions > 0
    counts = count_synops(net, ids).get_counts()
    assert counts["Net.embedding"] == {("forward", Synapsis): 0}
    assert counts["Net.q"] == {("forward", QSynapsis): 0}  # the ANN twin: MACs, no synaptic operation


def test_encoder_rmsnorm_and_softmax_equal_track_spikes():
    class Net(nn.Module):
        def __init__(self, mode: str) -> None:
            super().__init__()
            spiking = mode == "spiking"
            self.encoder = EIIFEncoder(Quantizer(qmax=5), path="spike")
            self.norm = SNNRMSNorm(
                6, mode=mode, square=torch.square if spiking else None, rsqrt=torch.rsqrt if spiking else None
            )
            self.softmax = SNNSoftmax(
                mode, exp=torch.exp if spiking else None, reciprocal=torch.reciprocal if spiking else None
            )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.softmax(self.norm(self.encoder(x)))

    x = torch.randn(3, 6)
    for mode, expected in (("spiking", 2 * x.numel()), ("float", 0)):
        total, additions = _count_and_track(Net(mode), x)
        assert total == additions == expected


def test_energy_at_add_pj():
    net = _synapsis_net(8, 6, 4, 7, "count", True)
    x = torch.randn(5, 8)
    with track_spikes() as stats:
        counter = count_synops(net, x)
    assert counter.get_total() * ADD_PJ == pytest.approx(stats.energy_pj)


def test_rules_are_sj_shaped_and_extra_rules_replace_them():
    rules = signed_spike_rules()
    assert set(rules) >= {aten.mm.default, aten.addmm.default, aten.convolution.default}
    assert ("forward", Synapsis) in rules
    counter = SignedSynOpCounter(extra_rules={("forward", Synapsis): lambda module, a, k, out: 7})
    net = _synapsis_net(3, 2, 2, 3, "count", False)
    assert count_synops(net, torch.randn(1, 3), counter=counter).get_total() == 14
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        count_synops(lambda x: x, torch.ones(1))
    with pytest.raises(TypeError, match="counter must be a SignedSynOpCounter"):
        count_synops(net, torch.ones(1, 3), counter=SynOpCounter())
