"""Search space: what a candidate means (ArchSpec), its torch model and its analytic cost.

``build_model`` is imported lazily so that importing this package (the search driver, the CLI)
does not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sparsearch.space._shapes import Layer, layer_shapes
from sparsearch.space.estimate import CostEstimate, estimate
from sparsearch.space.pruned import effective_arch, pruned_width
from sparsearch.space.spec import (
    BLOCK_KINDS,
    DOWNSAMPLES,
    HEAD_POOLS,
    ArchSpec,
    BlockSpec,
    PruningSpec,
    TrainSpec,
    TrialSpec,
)
from sparsearch.vocabulary import STRUCTURED_METHODS

if TYPE_CHECKING:
    from sparsearch.space.builder import build_model

__all__ = [
    "BLOCK_KINDS",
    "DOWNSAMPLES",
    "HEAD_POOLS",
    "STRUCTURED_METHODS",
    "ArchSpec",
    "BlockSpec",
    "CostEstimate",
    "Layer",
    "PruningSpec",
    "TrainSpec",
    "TrialSpec",
    "build_model",
    "effective_arch",
    "estimate",
    "layer_shapes",
    "pruned_width",
]


def __getattr__(name: str) -> Any:
    if name == "build_model":
        from sparsearch.space.builder import build_model

        return build_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
