"""``filter_norm``: structured pruning by filter norm (Li et al. 2016, "Pruning Filters for
Efficient ConvNets"; seed 002).

Criterion: each output filter of a layer is scored by the Lp norm (p = 1 or 2) of its weights;
the lowest-scored ``width - pruned_width(width, level)`` filters are removed (physically, see
:mod:`sparsearch.pruning.structured`). One-shot or iterative (prune a share, fine-tune, k
times) through :class:`~sparsearch.pruning.schedule.Schedule`.
"""

from __future__ import annotations

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.structured import Layer, StructuredMethod


def filter_scores(layer: Layer, p: int = 1) -> torch.Tensor:
    """One score per output filter: the Lp norm of its weights."""
    with torch.no_grad():
        return layer.weight.detach().flatten(1).norm(p=p, dim=1)


class FilterNorm(StructuredMethod):
    """Remove the ``level`` fraction of lowest-norm filters from every prunable layer."""

    name = "filter_norm"

    def __init__(self, p: int = 1) -> None:
        if p not in (1, 2):
            raise PruningError(f"filter_norm: p={p!r} is not supported", hint="use p=1 or p=2")
        self.p = p

    def scores(
        self, model: nn.Module, name: str, layer: Layer, context: PruneContext
    ) -> torch.Tensor:
        return filter_scores(layer, self.p)
