"""``complexity``: complexity-driven pruning (seed 001; PA / FA / MA), then one training from
scratch.

In a search the method acts on the architecture before the model exists: the seeded, torch-free
:func:`sparsearch.space.complexity.prune_to_complexity` picks the widths, the estimator uses the
same function, and the pruned network is trained once (``train_once``). This class is the same
rule on a torch model (``sparsearch prune`` on a trained model or a user's own CNN): each
prunable layer's complexity c_l (its weights, its multiply-accumulates, or 4 bytes per weight
and output value) is measured on the model, a layer is drawn with probability c_l / sum c, a
``step`` fraction of its filters (at least one) is removed at random, until the model's
complexity fell by ``level``; the schedule then re-initialises and trains it from scratch.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, check_level
from sparsearch.pruning.context import PruneContext, as_context
from sparsearch.pruning.stats import count_params, out_channels, weight_layers
from sparsearch.pruning.structured import Layer, StructuredMethod, target_layers, width_of
from sparsearch.space.complexity import COMPLEXITY_MODES, DEFAULT_STEP


def layer_costs(model: nn.Module, example_inputs: torch.Tensor, mode: str) -> dict[str, int]:
    """c_l of every Conv2d/Linear of ``model`` under ``mode``, for one input image."""
    outputs: dict[str, int] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: outputs.__setitem__(n, o[0].numel()))
        for name, m in weight_layers(model)
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_inputs[:1])
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    costs = {}
    for name, m in weight_layers(model):
        weights = m.weight.numel()
        out = outputs.get(name, 0)
        channels = width_of(m)
        if mode == "params":
            costs[name] = weights
        elif mode == "flops":  # MACs: each output value costs weights / out_channels
            costs[name] = weights * (out // max(1, channels))
        else:
            costs[name] = 4 * (weights + out)
    return costs


class Complexity(StructuredMethod):
    """Remove random filters of complexity-weighted layers until complexity fell by ``level``."""

    name = "complexity"
    fine_tune_after = False

    def __init__(self, mode: str = "params", step: float = DEFAULT_STEP, seed: int = 0) -> None:
        if mode not in COMPLEXITY_MODES:
            raise PruningError(
                f"complexity: mode={mode!r} is not supported",
                hint=f"use one of {', '.join(COMPLEXITY_MODES)}",
            )
        if not 0.0 < step < 1.0:
            raise PruningError(f"complexity: step={step!r} is outside (0, 1)", "e.g. step=0.1")
        self.mode, self.step, self.seed = mode, step, seed

    def scores(
        self, model: nn.Module, name: str, layer: Layer, context: PruneContext
    ) -> torch.Tensor:
        # random filters: the network is retrained from scratch, so which ones does not matter
        return torch.rand(width_of(layer), generator=self._gen)

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
        ctx = as_context(example_inputs, context, self.name)
        channels_before = out_channels(model)
        if not channels_before:
            raise PruningError(
                "complexity: the model has no Conv2d or Linear layer to prune",
                hint="pass the trained CNN itself",
            )
        params_before = count_params(model)
        self._gen = torch.Generator().manual_seed(self.seed)
        rng = random.Random(self.seed)
        start = sum(layer_costs(model, ctx.example_inputs, self.mode).values())
        target = math.floor((1.0 - level) * start)
        value = start
        while value > target:
            costs = layer_costs(model, ctx.example_inputs, self.mode)
            units = {
                n: costs[n]
                for n, m in target_layers(model)
                if width_of(m) > 1 and (layers is None or n in layers)
            }
            if not units or sum(units.values()) <= 0:
                raise PruningError(
                    f"complexity: cannot remove {100 * level:.0f}% of the {self.mode} "
                    f"complexity: at {value} every prunable layer is down to one filter",
                    "use a lower level",
                )
            names = sorted(units)
            name = rng.choices(names, weights=[units[n] for n in names], k=1)[0]
            layer = dict(weight_layers(model))[name]
            width = width_of(layer)
            remove = max(1, math.floor(self.step * width + 1e-9))
            self._remove(model, [(name, layer, width - remove)], ctx)
            value = sum(layer_costs(model, ctx.example_inputs, self.mode).values())
        return self._report(model, level, params_before, channels_before)
