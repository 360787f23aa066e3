"""Small hand-built CNNs for the pruning tests (independent of space.builder)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn


def build_net(
    c1: int = 8, c3: int = 16, hidden: int = 12, *, head: str = "gap", hw: int = 8
) -> nn.Sequential:
    """conv(1->c1)+BN+ReLU, depthwise(c1)+BN+ReLU, pointwise(c1->c3)+BN+ReLU, maxpool,
    GAP or Flatten, Linear(->hidden)+ReLU, Linear(->10)."""
    layers: list[nn.Module] = [
        nn.Conv2d(1, c1, 3, padding=1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c1, 3, padding=1, groups=c1), nn.BatchNorm2d(c1), nn.ReLU(),
        nn.Conv2d(c1, c3, 1), nn.BatchNorm2d(c3), nn.ReLU(),
        nn.MaxPool2d(2),
    ]  # fmt: skip
    side = hw // 2
    if head == "gap":
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c3, hidden)]
    else:
        layers += [nn.Flatten(), nn.Linear(c3 * side * side, hidden)]
    layers += [nn.ReLU(), nn.Linear(hidden, 10)]
    return nn.Sequential(*layers)


def randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module that trains: its timing and float sums do not depend on
    the machine's cores (use with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_net() -> Callable[..., nn.Sequential]:
    def factory(*args, seed: int = 0, **kwargs) -> nn.Sequential:
        torch.manual_seed(seed)
        net = build_net(*args, **kwargs)
        randomize_bn(net, seed)
        return net

    return factory
