"""relevance (seed 003) and complexity (seed 001) on a torch model: their criteria by hand."""

from __future__ import annotations

import torch

from sparsearch.pruning.complexity import Complexity, layer_costs
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.relevance import Relevance, relevance
from sparsearch.worker.prune import model_macs


def test_relevance_is_the_mean_post_activation_output(make_net) -> None:
    net = make_net().eval()
    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    got = relevance(net, net[0], x, batch=16)  # three batches: the mean is over all images
    by_hand = net[2](net[1](net[0](x))).mean(dim=(0, 2, 3))
    torch.testing.assert_close(got, by_hand)
    # a layer without an activation after it: ReLU of its output
    head = relevance(net, net[-1], x)
    torch.testing.assert_close(head, torch.relu(net(x)).mean(dim=0))


def test_relevance_removes_the_least_active_filters_and_threshold_adds_the_quiet_ones(
    make_net,
) -> None:
    net = make_net().eval()
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    scores = relevance(net, net[6], x)
    lowest = set(torch.argsort(scores)[:4].tolist())
    ctx = PruneContext(example_inputs=x[:1], sample=x)
    kept = [i for i in range(16) if i not in lowest]
    w = net[6].weight.detach()[kept].clone()
    Relevance().prune(net, 0.25, context=ctx, layers=["6"])
    assert torch.equal(net[6].weight, w)

    net = make_net().eval()
    quiet = (scores < 0.5 * scores.mean()).sum().item()
    report = Relevance(criterion="threshold", threshold=0.5).prune(
        net, 0.0, context=ctx, layers=["6"]
    )
    assert report.channels_after["6"] == 16 - quiet


def test_complexity_costs_follow_their_mode_and_the_level_is_met(make_net) -> None:
    net = make_net().eval()
    x = torch.randn(1, 1, 8, 8)
    flops = layer_costs(net, x, "flops")
    assert sum(flops.values()) == model_macs(net, x)
    params = layer_costs(net, x, "params")
    assert params["0"] == net[0].weight.numel()
    memory = layer_costs(net, x, "memory")
    assert memory["0"] == 4 * (net[0].weight.numel() + 8 * 8 * 8)
    for mode in ("params", "flops", "memory"):
        model = make_net().eval()
        start = sum(layer_costs(model, x, mode).values())
        Complexity(mode=mode, seed=3).prune(model, 0.5, x)
        assert sum(layer_costs(model, x, mode).values()) <= 0.5 * start
        assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
