"""``sparsity_induction``: the multilayer sparsity-induced pruning framework (seed 000; Singh,
Ravikiran et al., WACV 2019).

Sparsity induction: the model is trained with a group-lasso term over the rows and columns of
each filter's weight matrix, so that zeros form whole groups. A Conv2d filter ``o`` (weight
``[Co, Ci/groups, kh, kw]``) is the matrix ``[Ci/groups, kh*kw]``: a row holds one input
channel's ``kh*kw`` weights, a column one kernel position's weights over all input channels.
A Linear filter (a weight row ``[in]``) is the matrix ``[in, 1]``: its rows are single
weights (an L1 term) and its one column is the whole filter.

The term is applied as a proximal step after every optimizer step (``after_step(lr)``),
because a penalty added to the loss and followed through Adam never reaches exact zeros: each
row group, then each column group ``g`` of a targeted layer becomes
``g * max(0, 1 - tau / ||g||_2)`` with ``tau = strength * lr * sqrt(len(g))``. The
``sqrt(len(g))`` is group lasso's usual weight (Yuan & Lin 2006: penalty
``sum_g sqrt(p_g) ||g||``) and makes the shrinkage of every weight ``strength * lr`` per step
whatever the group's size, a fixed fraction ``strength`` of the step Adam takes on a weight
(about ``lr``): ``strength`` means the same for a 1x1 and a 3x3 conv and for a Linear layer.
A weight of a dense row and column is shrunk twice a step (row pass, column pass), so from
``strength`` 0.5 on the shrinkage matches Adam's largest step and only the weights Adam
pushes consistently survive: in a layer without BatchNorm that may be none (on digits,
strength 1 at lr 1e-2 leaves a hidden Linear layer one unit). Zeroing a group of weights of
size about ``r`` takes ``strength * sum(lr over the steps) >= r``: the budget matters as much
as the strength.

A layer whose output goes straight into a BatchNorm computes the same function at any scale
of each filter, so the loss never resists a filter shrinking as a whole: the plain step
shrinks every filter of such a layer together until all are zero (the whole layer dies, at
once, rather than its unneeded groups). There the step keeps each filter's norm (it rescales
the filter to the norm it had before the step): it only moves weight from weak groups to
strong ones, which BatchNorm makes the only thing that matters, and zero groups stay zero.
Such a filter then never becomes entirely zero; its sparsity level still approaches 1.

Unused parameter selection: a filter's sparsity level is the fraction of its weights that lie
in an all-zero row or column; filters whose level exceeds ``threshold`` are removed (whatever
``level`` says, so ``level`` is a floor and the cost estimated at ``level`` an upper bound),
the others are ranked by sparsity level (then L2 norm) when ``level`` asks for more. At
``level`` 0 the threshold alone decides.

Removal guideline for classifiers: induce, select and remove layer by layer (the
``layerwise`` schedule: layer 1, then layer 2, ...); ``one_shot`` induces on every layer at
once and then removes. Removal itself is :mod:`sparsearch.pruning.structured`'s.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.structured import Layer, StructuredMethod, target_layers
from sparsearch.vocabulary import PRUNING_METHODS

#: Weight of the filter norm in a score: it only breaks ties between equally sparse filters.
NORM_TIE_BREAK = 1e-3
NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)


def filter_matrices(weight: torch.Tensor) -> torch.Tensor:
    """The weight as one ``[rows, columns]`` matrix per filter: ``[Co, Ci/groups, kh*kw]`` for
    a Conv2d weight, ``[out, in, 1]`` for a Linear one. A view: writing to it writes the weight.
    """
    if weight.dim() == 4:
        return weight.view(weight.shape[0], weight.shape[1], -1)
    if weight.dim() == 2:
        return weight.view(weight.shape[0], weight.shape[1], 1)
    raise PruningError(
        f"sparsity_induction: a weight of shape {tuple(weight.shape)} is neither Conv2d nor Linear",
        hint="only Conv2d and Linear layers are pruned",
    )


@torch.no_grad()
def zero_group_mask(weight: torch.Tensor) -> torch.Tensor:
    """``[filters, rows, columns]``: True where a weight lies in an all-zero row or column of
    its filter's matrix (:func:`filter_matrices`)."""
    zero = filter_matrices(weight.detach()) == 0
    return zero.all(dim=2, keepdim=True) | zero.all(dim=1, keepdim=True)


@torch.no_grad()
def sparsity_levels(weight: torch.Tensor) -> torch.Tensor:
    """Per filter: the fraction of its weights that lie in all-zero row or column groups."""
    return zero_group_mask(weight).flatten(1).float().mean(dim=1)


@torch.no_grad()
def group_shrink(weight: torch.Tensor, tau: float, keep_norm: bool = False) -> None:
    """One proximal step of the row-and-column group lasso, in place: every row group, then
    every column group ``g`` of every filter becomes ``g * max(0, 1 - t / ||g||_2)`` with
    ``t = tau * sqrt(len(g))``. Groups with ``||g|| <= t`` become exactly zero.

    ``keep_norm``: then rescale each filter to the norm it had before the step (a filter that
    a BatchNorm normalizes: the step changes its direction only; see the module's doc)."""
    work = weight.contiguous()  # the weight itself unless its layout is not (then copied back)
    m = filter_matrices(work)
    _, rows, cols = m.shape
    before = m.flatten(1).norm(dim=1) if keep_norm else None
    for dim, size in ((2, cols), (1, rows)):  # a row holds `cols` weights, a column `rows`
        norm = m.norm(dim=dim, keepdim=True)
        t = tau * math.sqrt(size)
        m.mul_((1.0 - t / norm.clamp_min(1e-12)).clamp_min(0.0))
    if before is not None:
        after = m.flatten(1).norm(dim=1)
        scale = torch.where(after > 0, before / after.clamp_min(1e-30), torch.zeros_like(after))
        m.mul_(scale.view(-1, 1, 1))
    if work is not weight:
        weight.copy_(work)


@torch.no_grad()
def normalized_layers(model: nn.Module, example_inputs: torch.Tensor) -> set[nn.Module]:
    """The Conv2d/Linear layers whose output goes straight into a BatchNorm (found by running
    ``example_inputs`` through ``model`` in eval mode: no running statistic moves)."""
    outputs: list[tuple[torch.Tensor, nn.Module]] = []  # held, so no tensor id is reused
    found: set[nn.Module] = set()

    def record(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            outputs.append((output, module))
        elif isinstance(module, NORMS) and inputs:
            found.update(layer for out, layer in outputs if out is inputs[0])

    hooks = [m.register_forward_hook(record) for m in model.modules() if not list(m.children())]
    was_training = model.training
    model.eval()
    try:
        model(example_inputs)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return found


class SparsityInduction(StructuredMethod):
    """Train with a row/column group lasso (proximal), remove the filters whose share of
    weights in all-zero groups exceeds ``threshold`` (at least ``level`` of each layer)."""

    name = "sparsity_induction"

    def __init__(self, threshold: float = 0.5, strength: float = 0.3) -> None:
        info = PRUNING_METHODS[self.name]
        try:
            self.threshold = float(info.knob("threshold").check(self.name, threshold))
            self.strength = float(info.knob("strength").check(self.name, strength))
        except ValueError as e:
            lo_t, hi_t = info.knob("threshold").bounds or (0, 1)
            lo_s, hi_s = info.knob("strength").bounds or (0, 1)
            raise PruningError(
                f"sparsity_induction: {e}",
                hint=f"use threshold in [{lo_t}, {hi_t}] and strength in [{lo_s}, {hi_s}]",
            ) from None

    # --- induction --------------------------------------------------------------------------

    def induce(
        self, model: nn.Module, context: PruneContext, layers: list[str] | None = None
    ) -> None:
        """Train ``model`` (all its parameters) through ``context.train`` with the proximal
        group-lasso step on ``layers`` (default: every prunable layer).

        Budget: the trainer's default (the fine-tuning epochs) for all layers at once; a share
        ``len(layers) / len(self.layers(model))`` of ``context.finetune_epochs`` for some of
        them (a layer-by-layer schedule spends one fine-tuning on inducing the whole model), or
        the trainer's default where the context does not say the budget (``finetune_epochs``
        0). ``model.training`` is restored; BatchNorm statistics move only in training."""
        train = context.need_train(self.name)
        every = dict(target_layers(model))
        names = list(every) if layers is None else list(layers)
        unknown = [n for n in names if n not in every]
        if unknown:
            raise PruningError(
                f"sparsity_induction: {', '.join(map(repr, unknown))} is not a prunable layer",
                hint=f"choose among {', '.join(map(repr, every))}",
            )
        if not names:
            return
        normalized = normalized_layers(model, context.example_inputs)
        targets = [(every[n], every[n] in normalized) for n in names]
        epochs: float | None = None
        if len(names) < len(every) and context.finetune_epochs > 0:
            epochs = context.finetune_epochs * len(names) / len(every)

        def after_step(lr: float) -> None:
            tau = self.strength * lr
            for layer, keep_norm in targets:
                group_shrink(layer.weight, tau, keep_norm=keep_norm)

        was_training = model.training
        try:
            train(model, epochs=epochs, after_step=after_step)
        finally:
            model.train(was_training)

    # --- selection --------------------------------------------------------------------------

    def scores(
        self, model: nn.Module, name: str, layer: Layer, context: PruneContext
    ) -> torch.Tensor:
        """``1 - sparsity level`` (sparsest filters lowest), ties broken by L2 norm: plus
        ``1e-3 * norm / max norm`` of the layer."""
        with torch.no_grad():
            weight = layer.weight.detach()
            norms = weight.flatten(1).norm(dim=1)
            top = float(norms.max()) if norms.numel() else 0.0
            tie = norms / top if top > 0 else torch.zeros_like(norms)
            return (1.0 - sparsity_levels(weight)) + NORM_TIE_BREAK * tie

    def forced(
        self, model: nn.Module, name: str, layer: Layer, scores: torch.Tensor, context: PruneContext
    ) -> list[int]:
        """Filters whose sparsity level exceeds ``threshold``."""
        levels = sparsity_levels(layer.weight)
        return [int(i) for i in torch.nonzero(levels > self.threshold).flatten()]
