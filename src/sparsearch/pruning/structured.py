"""What the filter-removing methods share: which layers they prune, how many filters a level
leaves, and the physical removal through Torch-Pruning's dependency graph.

A structured method only says how to score a layer's filters (``scores``; lowest removed
first) and, where its criterion removes more than the level asks (a threshold), which filters
must go regardless (``forced``). :meth:`StructuredMethod.prune` does the rest: BatchNorm, the
next layer's inputs, depthwise convs tied to the pruned channels, a Flatten head's Linear
(``removed * H * W`` inputs) and channels coupled by a residual add all follow.

Pruned layers: every Conv2d with ``groups == 1`` (1x1 pointwise included) and every Linear
except the classifier (the last Linear in module order; without any Linear, the last Conv2d is
treated as the output layer and kept). Depthwise convs are never roots: their width is their
input's. Layers are pruned in module order, each scored on the model as it is when its turn
comes (Li et al.'s "greedy" strategy: without the input channels already removed upstream).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.context import PruneContext, as_context
from sparsearch.pruning.stats import count_params, out_channels, weight_layers
from sparsearch.space.pruned import pruned_width

Layer = nn.Conv2d | nn.Linear


def target_layers(model: nn.Module) -> list[tuple[str, Layer]]:
    """Layers whose output filters the structured methods rank and remove, in module order."""
    layers = list(weight_layers(model))
    linears = [i for i, (_, m) in enumerate(layers) if isinstance(m, nn.Linear)]
    output_index = linears[-1] if linears else len(layers) - 1
    return [
        (name, m)
        for i, (name, m) in enumerate(layers)
        if i != output_index and (isinstance(m, nn.Linear) or m.groups == 1)
    ]


def width_of(layer: Layer) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


def lowest_filters(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the ``n`` lowest scores (ties: lower index first), ascending."""
    if n <= 0:
        return []
    order = torch.argsort(scores, stable=True)
    return sorted(int(i) for i in order[:n])


class StructuredMethod(PruningMethod):
    """Remove, from every prunable layer, the lowest-scored filters down to the level's width
    (plus any the criterion forces out, always keeping at least one)."""

    def scores(
        self, model: nn.Module, name: str, layer: Layer, context: PruneContext
    ) -> torch.Tensor:
        """One score per output filter of ``layer``; the lowest are removed first."""
        raise NotImplementedError

    def forced(
        self, model: nn.Module, name: str, layer: Layer, scores: torch.Tensor, context: PruneContext
    ) -> list[int]:
        """Filters the criterion removes whatever the level (default: none)."""
        return []

    def layers(self, model: nn.Module) -> list[str]:
        return [name for name, _ in target_layers(model)]

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
        channels_before = out_channels(model)
        params_before = count_params(model)
        if not channels_before:
            raise PruningError(
                f"{self.name}: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        widths = base or channels_before
        plan = [
            (name, layer, pruned_width(widths.get(name, channels_before[name]), level))
            for name, layer in target_layers(model)
            if layers is None or name in layers
        ]
        if plan:
            ctx = as_context(example_inputs, context, self.name)
            self._remove(model, plan, ctx)
        return self._report(model, level, params_before, channels_before)

    def _remove(
        self,
        model: nn.Module,
        plan: list[tuple[str, Layer, int]],
        ctx: PruneContext,
    ) -> None:
        import torch_pruning as tp

        was_training = model.training
        # Score and trace in eval mode so no forward pass moves BatchNorm running statistics;
        # tracing follows autograd, so grad must be on even if the caller disabled it.
        model.eval()
        try:
            dg = None
            for name, layer, width in plan:
                current = width_of(layer)  # a coupled layer may already be narrower
                scores = self.scores(model, name, layer, ctx)
                idxs = set(lowest_filters(scores, current - width))
                idxs |= set(self.forced(model, name, layer, scores, ctx))
                if len(idxs) >= current:  # keep the best filter
                    keep = int(torch.argmax(scores))
                    idxs.discard(keep)
                if not idxs:
                    continue
                if dg is None:
                    dg = _graph(model, ctx.example_inputs, self.name)
                fn = (
                    tp.prune_conv_out_channels
                    if isinstance(layer, nn.Conv2d)
                    else tp.prune_linear_out_channels
                )
                group = dg.get_pruning_group(layer, fn, idxs=sorted(idxs))
                if not dg.check_pruning_group(group):
                    raise PruningError(
                        f"{self.name}: removing {len(idxs)} filters of {name!r} would leave "
                        "a coupled layer without channels",
                        hint="use a lower pruning level",
                    )
                group.prune()
        finally:
            model.train(was_training)


def _graph(model: nn.Module, example_inputs: torch.Tensor, method: str):  # type: ignore[no-untyped-def]
    import torch_pruning as tp

    with torch.enable_grad():
        try:
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
        except Exception as e:  # torch raises many types for a wrong input shape
            raise PruningError(
                f"{method} could not trace the model: {e}",
                hint="example_inputs must be a batch the model accepts (N, C, H, W)",
            ) from e
