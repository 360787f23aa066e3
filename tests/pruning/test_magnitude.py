from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning import count_params, get_method, zero_fraction
from sparsearch.pruning.magnitude import Magnitude

X8 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
Y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(3))


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.mark.parametrize("level", [0.1, 0.5, 0.73, 0.95])
def test_zero_fraction_per_layer_and_smallest_weights_go(make_net, level: float) -> None:
    net = make_net()
    originals = [m.weight.detach().abs().clone() for m in _layers(net)]
    report = Magnitude().prune(net, level, X8)
    for m, w_abs in zip(_layers(net), originals, strict=True):
        zeros = m.weight == 0
        assert abs(int(zeros.sum()) - level * m.weight.numel()) <= 1, m
        # every zeroed weight was no larger than every surviving one
        assert w_abs[zeros].max() <= w_abs[~zeros].min()
    assert report.zero_fraction == pytest.approx(zero_fraction(net))
    assert report.zero_fraction == pytest.approx(level, abs=0.02)
    assert report.params_before == report.params_after == count_params(net)
    assert report.channels_before == report.channels_after
    assert report.method == "magnitude" and report.level == level


def test_mask_survives_optimizer_steps(make_net) -> None:
    net = make_net()
    Magnitude().prune(net, 0.6, X8)
    masks = [m.weight_mask.clone() for m in _layers(net)]
    originals = [m.weight_orig.detach().clone() for m in _layers(net)]
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    net.train()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(net(X8), Y).backward()
        opt.step()
    net(X8)  # the forward pre-hook re-applies the mask
    for m, mask, orig in zip(_layers(net), masks, originals, strict=True):
        assert torch.equal(m.weight == 0, mask == 0)
        assert not torch.equal(m.weight_orig.detach(), orig)  # training did happen


def test_finalize_leaves_plain_weights_with_exact_zeros(make_net) -> None:
    net = make_net()
    method = get_method("magnitude")
    method.prune(net, 0.5, X8)
    expected = [(m.weight == 0).clone() for m in _layers(net)]
    method.finalize(net)
    method.finalize(net)  # idempotent
    keys = net.state_dict().keys()
    assert not any(k.endswith(("weight_orig", "weight_mask")) for k in keys)
    assert "0.weight" in keys and "14.weight" in keys
    for m, zeros in zip(_layers(net), expected, strict=True):
        assert isinstance(m.weight, nn.Parameter)
        assert torch.equal(m.weight == 0, zeros)
    fresh = make_net(seed=9)
    fresh.load_state_dict(net.state_dict(), strict=True)
    assert zero_fraction(fresh) == pytest.approx(0.5, abs=0.02)


def test_iterative_levels_are_totals(make_net) -> None:
    net = make_net()
    method = Magnitude()
    method.prune(net, 0.5, X8)
    method.prune(net, 0.8, X8)
    for m in _layers(net):
        assert abs(int((m.weight == 0).sum()) - 0.8 * m.weight.numel()) <= 1
    method.prune(net, 0.3, X8)  # never un-prunes
    assert zero_fraction(net) == pytest.approx(0.8, abs=0.02)


def test_level_zero_adds_no_masks(make_net) -> None:
    net = make_net()
    report = Magnitude().prune(net, 0.0)
    assert not any(hasattr(m, "weight_mask") for m in _layers(net))
    assert report.zero_fraction == 0.0


@pytest.mark.parametrize("level", [-0.01, 0.951, float("inf")])
def test_level_outside_range_raises(make_net, level: float) -> None:
    with pytest.raises(PruningError, match=r"outside \[0, 0.95\]"):
        Magnitude().prune(make_net(), level)


def test_model_without_weight_layers_raises() -> None:
    with pytest.raises(PruningError, match="no Conv2d or Linear"):
        Magnitude().prune(nn.Sequential(nn.ReLU()), 0.5)
