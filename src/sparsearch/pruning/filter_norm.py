"""``filter_norm``: structured pruning by filter norm (Li et al. 2016, "Pruning Filters for
Efficient ConvNets").

Criterion: each output filter of a layer is scored by the Lp norm (p = 1 or 2) of its weights;
the lowest-scored ``width - pruned_width(width, level)`` filters are removed. Removal is physical
and done by Torch-Pruning's dependency graph, so BatchNorm, the next layer's inputs, depthwise
convs tied to the pruned channels and a Flatten head's Linear (``removed * H * W`` inputs) all
follow. Pruned layers: every Conv2d with ``groups == 1`` (1x1 pointwise included) and every
Linear except the classifier (the last Linear in module order; without any Linear, the last
Conv2d is treated as the output layer and kept). Depthwise convs are never roots: their width
is their input's. Layers are pruned in module order and each is scored on its current weights,
i.e. without the input channels already removed upstream (Li et al.'s "greedy" strategy).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.stats import count_params, out_channels, weight_layers
from sparsearch.space.spec import pruned_width


def filter_scores(layer: nn.Conv2d | nn.Linear, p: int = 1) -> torch.Tensor:
    """One score per output filter: the Lp norm of its weights."""
    with torch.no_grad():
        return layer.weight.detach().flatten(1).norm(p=p, dim=1)


def lowest_filters(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` lowest scores (ties: lower index first), ascending."""
    if n <= 0:
        return []
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[:n])


def target_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d | nn.Linear]]:
    """Layers whose output filters ``filter_norm`` ranks and removes, in module order."""
    layers = list(weight_layers(model))
    linears = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)]
    output_index = linears[-1] if linears else len(layers) - 1
    return [
        (name, m)
        for i, (name, m) in enumerate(layers)
        if i != output_index and (isinstance(m, nn.Linear) or m.groups == 1)
    ]


class FilterNorm(PruningMethod):
    """Remove the ``level`` fraction of lowest-norm filters from every prunable layer."""

    name = "filter_norm"
    structured = True

    def __init__(self, p: int = 1) -> None:
        if p not in (1, 2):
            raise PruningError(f"filter_norm: p={p!r} is not supported", hint="use p=1 or p=2")
        self.p = p

    def prune(
        self, model: nn.Module, level: float, example_inputs: torch.Tensor | None = None
    ) -> PruneReport:
        level = check_level(level)
        channels_before = out_channels(model)
        params_before = count_params(model)
        if not channels_before:
            raise PruningError(
                "filter_norm: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        plan = [
            (name, layer, pruned_width(channels_before[name], level))
            for name, layer in target_layers(model)
        ]
        if level > 0 and any(width < channels_before[n] for n, _, width in plan):
            if example_inputs is None:
                raise PruningError(
                    "filter_norm needs example_inputs to trace the model",
                    hint="pass one input batch of shape (N, C, H, W)",
                )
            self._remove(model, plan, example_inputs)
        return self._report(model, level, params_before, channels_before)

    def _remove(
        self,
        model: nn.Module,
        plan: list[tuple[str, nn.Conv2d | nn.Linear, int]],
        example_inputs: torch.Tensor,
    ) -> None:
        import torch_pruning as tp

        was_training = model.training
        # Trace in eval mode so the forward pass does not move BatchNorm running statistics;
        # tracing follows autograd, so grad must be on even if the caller disabled it.
        model.eval()
        try:
            with torch.enable_grad():
                try:
                    dg = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
                except Exception as e:  # torch raises many types for a wrong input shape
                    raise PruningError(
                        f"filter_norm could not trace the model: {e}",
                        hint="example_inputs must be a batch the model accepts (N, C, H, W)",
                    ) from e
                for name, layer, width in plan:
                    # A layer coupled to one pruned earlier (e.g. by a residual add) may
                    # already be narrower; never remove more than asked.
                    current = out_channels_of(layer)
                    idxs = lowest_filters(filter_scores(layer, self.p), current - width)
                    if not idxs:
                        continue
                    fn = (
                        tp.prune_conv_out_channels
                        if isinstance(layer, nn.Conv2d)
                        else tp.prune_linear_out_channels
                    )
                    group = dg.get_pruning_group(layer, fn, idxs=idxs)
                    if not dg.check_pruning_group(group):
                        raise PruningError(
                            f"filter_norm: removing {len(idxs)} filters of {name!r} would leave "
                            "a coupled layer without channels",
                            hint="use a lower pruning level",
                        )
                    group.prune()
        finally:
            model.train(was_training)


def out_channels_of(layer: nn.Conv2d | nn.Linear) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
