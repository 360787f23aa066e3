from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning import get_method
from sparsearch.pruning.filter_norm import FilterNorm
from sparsearch.pruning.structured import target_layers
from sparsearch.space.pruned import pruned_width

X8 = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _silence(net: nn.Sequential, conv: int, bn: int, idxs: list[int]) -> None:
    """Make output channels ``idxs`` of ``net[conv]`` (+ its BN) produce exact zeros in eval."""
    with torch.no_grad():
        net[conv].weight[idxs] = 0
        if net[conv].bias is not None:
            net[conv].bias[idxs] = 0
        net[bn].bias[idxs] = 0
        net[bn].running_mean[idxs] = 0


def test_removes_lowest_l1_filters_and_keeps_the_rest_unchanged() -> None:
    conv = nn.Conv2d(1, 6, 1, bias=False)
    norms = [5.0, 1.0, 4.0, 0.5, 3.0, 2.0]  # lowest three: filters 3, 1, 5
    with torch.no_grad():
        for i, v in enumerate(norms):
            conv.weight[i] = v
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(6 * 2 * 2, 3))
    original = conv.weight.detach().clone()
    FilterNorm().prune(net, 0.5, torch.randn(1, 1, 2, 2))
    assert net[0].out_channels == 3
    torch.testing.assert_close(net[0].weight, original[[0, 2, 4]])


def test_p2_ranks_by_l2_norm() -> None:
    # filter 0: four ones (L1 4, L2 2); filter 1: a single 3 (L1 3, L2 3).
    conv = nn.Conv2d(1, 2, 2, bias=False)
    with torch.no_grad():
        conv.weight[0] = 1.0
        conv.weight[1] = 0.0
        conv.weight[1, 0, 0, 0] = 3.0
    net_l1 = nn.Sequential(conv, nn.Flatten(), nn.Linear(2, 2))
    net_l2 = nn.Sequential(nn.Conv2d(1, 2, 2, bias=False), nn.Flatten(), nn.Linear(2, 2))
    net_l2.load_state_dict(net_l1.state_dict())
    x = torch.randn(1, 1, 2, 2)
    FilterNorm(p=1).prune(net_l1, 0.5, x)
    get_method("filter_norm", p=2).prune(net_l2, 0.5, x)
    assert float(net_l1[0].weight.detach().sum()) == 4.0  # L1 removed the single-3 filter
    assert float(net_l2[0].weight.detach().sum()) == 3.0  # L2 removed the all-ones filter


@pytest.mark.parametrize("head", ["gap", "flatten"])
@pytest.mark.parametrize("level", [0.1, 0.25, 0.5, 0.7, 0.95])
def test_widths_follow_pruned_width_and_model_runs(make_net, head: str, level: float) -> None:
    net = make_net(7, 13, 10, head=head)
    report = FilterNorm().prune(net, level, X8)
    c1, c3, hidden = pruned_width(7, level), pruned_width(13, level), pruned_width(10, level)
    assert (net[0].out_channels, net[1].num_features) == (c1, c1)
    assert (net[3].in_channels, net[3].out_channels, net[3].groups) == (c1, c1, c1)
    assert (net[6].in_channels, net[6].out_channels, net[7].num_features) == (c1, c3, c3)
    lin, cls = (net[12], net[14]) if head == "gap" else (net[11], net[13])
    assert lin.in_features == (c3 if head == "gap" else c3 * 4 * 4)
    assert (lin.out_features, cls.in_features, cls.out_features) == (hidden, hidden, 10)
    assert net(X8).shape == (4, 10)
    assert report.params_after < report.params_before
    assert report.params_after == sum(p.numel() for p in net.parameters())
    assert report.channels_after["0"] == c1 and report.channels_after["6"] == c3
    assert report.channels_before["0"] == 7 and report.method == "filter_norm"


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_pruning_zero_filters_preserves_outputs_exactly(make_net, head: str) -> None:
    """Removed filters are all-zero with zero BN shift: the pruned net must compute the same
    function, which fails if BN stats, the depthwise conv or the head were sliced wrongly."""
    net = make_net(8, 16, 12, head=head)
    _silence(net, 0, 1, [1, 4, 6, 7])  # conv1: 4 of 8 removed at level 0.5
    _silence(net, 3, 4, [1, 4, 6, 7])  # the depthwise channels that go with them
    _silence(net, 6, 7, [0, 3, 5, 8, 9, 10, 12, 15])  # pointwise: 8 of 16
    lin = net[12] if head == "gap" else net[11]
    with torch.no_grad():
        lin.weight[[2, 3, 5, 7, 9, 11]] = 0
        lin.bias[[2, 3, 5, 7, 9, 11]] = 0
    net.eval()
    expected = net(X8).detach()
    net.train()  # tracing must neither move running stats nor leave the net in eval mode
    FilterNorm().prune(net, 0.5, X8)
    assert net.training
    net.eval()
    assert net[0].out_channels == 4 and net[6].out_channels == 8 and lin.out_features == 6
    torch.testing.assert_close(net(X8), expected, rtol=1e-5, atol=1e-6)


def test_running_stats_untouched_when_pruning_a_training_model(make_net) -> None:
    net = make_net(8, 16, 12)
    _silence(net, 0, 1, [0, 1, 2, 3])
    kept_mean = net[1].running_mean[4:].clone()
    # greedy ranking: the pointwise filters are scored over the input channels that survive
    pw_norms = net[6].weight.detach()[:, 4:].flatten(1).abs().sum(1)
    pw_kept = sorted(torch.argsort(pw_norms, descending=True)[:8].tolist())
    bn = net[7]
    expected = {
        k: getattr(bn, k).detach()[pw_kept].clone()
        for k in ("weight", "bias", "running_mean", "running_var")
    }
    net.train()
    FilterNorm().prune(net, 0.5, X8)
    torch.testing.assert_close(net[1].running_mean, kept_mean, rtol=0, atol=0)
    assert net[1].num_batches_tracked.item() == 0
    for key, value in expected.items():  # the pointwise BN is sliced like its conv
        torch.testing.assert_close(getattr(net[7], key).detach(), value, rtol=0, atol=0)


@pytest.mark.parametrize("head", ["gap", "flatten"])
def test_state_dict_loads_into_fresh_smaller_model(make_net, head: str) -> None:
    net = make_net(8, 16, 12, head=head)
    FilterNorm().prune(net, 0.3, X8)
    widths = (pruned_width(8, 0.3), pruned_width(16, 0.3), pruned_width(12, 0.3))
    fresh = make_net(*widths, head=head, seed=5)
    fresh.load_state_dict(net.state_dict(), strict=True)
    net.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(X8), net(X8))


def test_works_under_no_grad(make_net) -> None:
    net = make_net()
    with torch.no_grad():
        FilterNorm().prune(net, 0.5, X8)
    assert net[0].out_channels == 4


def test_level_zero_is_a_no_op(make_net) -> None:
    net = make_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    report = FilterNorm().prune(net, 0.0, X8)
    after = net.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert report.params_before == report.params_after
    assert report.channels_before == report.channels_after


def test_classifier_and_depthwise_are_not_roots(make_net) -> None:
    net = make_net()
    names = [name for name, _ in target_layers(net)]
    assert names == ["0", "6", "12"]  # conv, pointwise, hidden linear; not dw "3", not "14"
    only_convs = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 3, 1))
    assert [n for n, _ in target_layers(only_convs)] == ["0"]  # last conv is the output


@pytest.mark.parametrize("level", [-0.1, 0.96, float("nan"), "x"])
def test_level_outside_range_raises(make_net, level) -> None:
    with pytest.raises(PruningError, match="level"):
        FilterNorm().prune(make_net(), level, X8)


def test_missing_or_wrong_example_inputs(make_net) -> None:
    with pytest.raises(PruningError, match="example_inputs"):
        FilterNorm().prune(make_net(), 0.5, None)
    with pytest.raises(PruningError, match="trace"):
        FilterNorm().prune(make_net(), 0.5, torch.randn(2, 3, 8, 8))


def test_invalid_norm_order() -> None:
    with pytest.raises(PruningError, match="p=3"):
        FilterNorm(p=3)
