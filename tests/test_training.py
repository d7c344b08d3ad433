"""Networks built from bt-neurons train: one optimiser step with finite, non-zero gradients."""

from __future__ import annotations

import torch
from spikingjelly.activation_based import functional, layer, surrogate
from torch import nn

from bt_neurons import CustomNeuronNode, EIIFNode


def test_two_layer_spikingjelly_net_trains_one_step():
    torch.manual_seed(0)
    net = nn.Sequential(
        layer.Linear(10, 32, step_mode="m"),
        EIIFNode(step_mode="m", r=0.5, learnable=("theta_0", "alpha"), surrogate_function=surrogate.ATan()),
        layer.Linear(32, 16, step_mode="m"),
        CustomNeuronNode(step_mode="m", decay=0.9, surrogate_function=surrogate.ATan()),
        layer.Linear(16, 3, step_mode="m"),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x_seq = torch.randn(6, 8, 10) * 2
    target = torch.randint(0, 3, (8,))
    before = [p.detach().clone() for p in net.parameters()]
    loss = nn.functional.cross_entropy(net(x_seq).mean(0), target)
    opt.zero_grad()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt.step()
    functional.reset_net(net)
    assert all(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    assert net[1].t == 0 and net[3].t == 0


def test_count_path_net_trains_with_straight_through_estimator():
    torch.manual_seed(0)
    T = 8
    net = nn.Sequential(nn.Linear(10, 32), EIIFNode(T=T, path="count"), nn.Linear(32, 3))
    x = torch.randn(16, 10) * 3
    target = torch.randint(0, 3, (16,))
    loss = nn.functional.cross_entropy(net(x) / T, target)
    loss.backward()
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
        for p in net.parameters()
    )
