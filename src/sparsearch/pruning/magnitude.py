"""``magnitude``: unstructured magnitude pruning (Han et al. 2015, "Learning both Weights and
Connections for Efficient Neural Networks"; seed 002).

Criterion: |w|, over every Conv2d and Linear weight (the classifier included). ``scope``
``layer`` zeroes the ``level`` fraction of smallest-magnitude weights in each layer
(``torch.nn.utils.prune.l1_unstructured``); ``global`` ranks all weights together, one
threshold for the whole model (``global_unstructured``), so layers with many small weights
lose more. Either way the mask is re-applied on every forward pass, so zeros stay zero while
fine-tuning; an iterative schedule raises ``level`` step by step and masks accumulate.
``finalize`` folds the masks in (``prune.remove``): the state_dict then has plain ``weight``
keys holding exact zeros. Shapes never change, so dense flash does not shrink; only the sparse
(``nnz``) accounting does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.stats import count_params, out_channels, weight_layers

SCOPES = ("layer", "global")


def is_masked(module: nn.Module) -> bool:
    return torch_prune.is_pruned(module) and hasattr(module, "weight_mask")


def zeros_in_mask(module: nn.Module) -> int:
    return int((module.weight_mask == 0).sum()) if is_masked(module) else 0


def mask_more(module: nn.Module, extra: int) -> None:
    """Mask ``extra`` more of ``module``'s still-unmasked weights, smallest |w| first (torch
    applies an int amount to the weights not masked yet)."""
    if extra > 0:
        torch_prune.l1_unstructured(module, "weight", amount=int(extra))


def fold_masks(model: nn.Module) -> nn.Module:
    """Fold every weight mask into a plain ``weight`` parameter (idempotent)."""
    for _, module in weight_layers(model):
        if is_masked(module):
            torch_prune.remove(module, "weight")
    return model


class Magnitude(PruningMethod):
    """Zero the ``level`` fraction of smallest |w|, per layer or over the whole model."""

    name = "magnitude"

    def __init__(self, scope: str = "layer") -> None:
        if scope not in SCOPES:
            raise PruningError(
                f"magnitude: scope={scope!r} is not supported", hint="use scope=layer or global"
            )
        self.scope = scope

    def prune(
        self,
        model: nn.Module,
        level: float,
        example_inputs: torch.Tensor | None = None,
        *,
        context: PruneContext | None = None,
        base: dict[str, int] | None = None,
        layers: list[str] | None = None,
    ) -> PruneReport:
        level = check_level(level)
        chosen = [(n, m) for n, m in weight_layers(model) if layers is None or n in layers]
        if not chosen:
            raise PruningError(
                "magnitude: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        channels = out_channels(model)
        params_before = count_params(model)
        if level > 0:
            if self.scope == "global":
                self._prune_global([m for _, m in chosen], level)
            else:
                for _, module in chosen:
                    # ``level`` is the total sparsity: add only what is missing
                    mask_more(module, round(level * module.weight.numel()) - zeros_in_mask(module))
        return self._report(model, level, params_before, channels)

    @staticmethod
    def _prune_global(modules: list[nn.Module], level: float) -> None:
        total = sum(m.weight.numel() for m in modules)
        extra = round(level * total) - sum(zeros_in_mask(m) for m in modules)
        if extra <= 0:
            return
        # torch's global pruning counts already-masked weights as the smallest: rank the
        # weights still alive ourselves so masks accumulate exactly.
        with torch.no_grad():
            alive = torch.cat([m.weight.detach().abs().flatten() for m in modules])
            mask = torch.cat(
                [
                    (m.weight_mask if is_masked(m) else torch.ones_like(m.weight)).flatten()
                    for m in modules
                ]
            )
            alive[mask == 0] = float("inf")
            order = torch.argsort(alive, stable=True)[:extra]
            new_mask = mask.clone()
            new_mask[order] = 0
        start = 0
        for m in modules:
            n = m.weight.numel()
            torch_prune.custom_from_mask(m, "weight", new_mask[start : start + n].view_as(m.weight))
            start += n

    def finalize(self, model: nn.Module) -> nn.Module:
        """Fold masks into plain ``weight`` parameters (idempotent)."""
        return fold_masks(model)
