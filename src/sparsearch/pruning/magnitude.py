"""``magnitude``: unstructured magnitude pruning (Han et al. 2015, "Learning both Weights and
Connections for Efficient Neural Networks").

Criterion: |w|. Per layer (every Conv2d and Linear weight, the classifier included) the
``level`` fraction of smallest-magnitude weights is masked with
``torch.nn.utils.prune.l1_unstructured``, so the mask is re-applied on every forward pass and
zeros stay zero while fine-tuning. ``finalize`` folds the masks in (``prune.remove``): the
state_dict then has plain ``weight`` keys holding exact zeros. Shapes never change, so dense
flash does not shrink; only the sparse (``nnz``) accounting does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.stats import count_params, out_channels, weight_layers


def _is_masked(module: nn.Module) -> bool:
    return torch_prune.is_pruned(module) and hasattr(module, "weight_mask")


class Magnitude(PruningMethod):
    """Zero the ``level`` fraction of smallest |w| in each Conv2d/Linear weight."""

    name = "magnitude"
    structured = False

    def prune(
        self, model: nn.Module, level: float, example_inputs: torch.Tensor | None = None
    ) -> PruneReport:
        level = check_level(level)
        layers = list(weight_layers(model))
        if not layers:
            raise PruningError(
                "magnitude: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        channels = out_channels(model)
        params_before = count_params(model)
        if level > 0:
            for _, module in layers:
                self._prune_layer(module, level)
        return self._report(model, level, params_before, channels)

    @staticmethod
    def _prune_layer(module: nn.Conv2d | nn.Linear, level: float) -> None:
        n = module.weight.numel()
        target = round(level * n)  # the same rounding torch uses for a float amount
        if _is_masked(module):
            # Iterative schedules: ``level`` is the total sparsity, so only add what is
            # missing; torch applies an int amount to the still-unmasked weights.
            already = int((module.weight_mask == 0).sum())
            extra = target - already
            if extra > 0:
                torch_prune.l1_unstructured(module, "weight", amount=extra)
        elif target > 0:
            torch_prune.l1_unstructured(module, "weight", amount=target)

    def finalize(self, model: nn.Module) -> nn.Module:
        """Fold masks into plain ``weight`` parameters (idempotent)."""
        for _, module in weight_layers(model):
            if _is_masked(module):
                torch_prune.remove(module, "weight")
        return model
