"""Counting helpers shared by the pruning methods and the worker."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def weight_layers(model: nn.Module) -> Iterator[tuple[str, nn.Conv2d | nn.Linear]]:
    """(name, module) for every Conv2d and Linear, in module order."""
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            yield name, module


def count_params(model: nn.Module) -> int:
    """Number of parameters (masked ones included: unstructured pruning keeps shapes)."""
    return sum(p.numel() for p in model.parameters())


def zero_fraction(model: nn.Module) -> float:
    """Fraction of exactly-zero weights over all Conv2d/Linear weights (biases excluded).

    Works before and after ``torch.nn.utils.prune.remove``: a masked module's ``weight``
    attribute is ``weight_orig * weight_mask``."""
    zeros = total = 0
    with torch.no_grad():
        for _, module in weight_layers(model):
            w = module.weight
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros / total if total else 0.0


def out_channels(model: nn.Module) -> dict[str, int]:
    """Output channels (Conv2d) or features (Linear) per module name."""
    return {
        name: (m.out_channels if isinstance(m, nn.Conv2d) else m.out_features)
        for name, m in weight_layers(model)
    }
