"""``relevance``: activation-based filter relevance (seed 003).

A filter's relevance is the mean of its post-activation output (after BatchNorm and ReLU) over a
representative sample of the training data, over all images and positions: a filter that is
rarely active contributes little downstream. ``criterion`` ``fraction`` trims the ``level``
fraction of least relevant filters of each layer; ``threshold`` also trims every filter whose
relevance is below ``threshold`` x the layer's mean relevance (then ``level`` is a floor: the
final size depends on the trained weights). Removal and fine-tuning as for every structured
method (:mod:`sparsearch.pruning.structured`, :mod:`sparsearch.pruning.schedule`).
"""

from __future__ import annotations

import torch
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.structured import Layer, StructuredMethod

ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardtanh, nn.ELU, nn.GELU, nn.SiLU,
)  # fmt: skip
NORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d)
CRITERIA = ("fraction", "threshold")


@torch.no_grad()
def relevance(
    model: nn.Module, layer: nn.Module, sample: torch.Tensor, batch: int = 256
) -> torch.Tensor:
    """Mean post-activation output of each output channel of ``layer`` over ``sample``.

    The activation is the first activation module run after ``layer`` (BatchNorm in between
    is applied); where none follows directly, ReLU of the layer's (normalised) output."""
    order: list[nn.Module] = []
    outputs: dict[int, torch.Tensor] = {}
    sums: torch.Tensor | None = None
    count = 0

    def record(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        order.append(module)
        outputs[len(order) - 1] = output

    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(sample), batch):
            order.clear()
            outputs.clear()
            model(sample[start : start + batch])
            act = _post_activation(order, outputs, layer)
            per_channel = act.transpose(0, 1).flatten(1).mean(dim=1) * len(act)
            sums = per_channel if sums is None else sums + per_channel
            count += len(act)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    assert sums is not None
    return sums / max(1, count)


def _post_activation(
    order: list[nn.Module], outputs: dict[int, torch.Tensor], layer: nn.Module
) -> torch.Tensor:
    try:
        i = next(k for k, m in enumerate(order) if m is layer)
    except StopIteration:
        raise PruningError(
            "relevance: the layer did not run on the sample", "pass the model's own input shape"
        ) from None
    j = i
    while j + 1 < len(order) and isinstance(order[j + 1], NORMS):
        j += 1
    if j + 1 < len(order) and isinstance(order[j + 1], ACTIVATIONS):
        return outputs[j + 1]
    return torch.relu(outputs[j])


class Relevance(StructuredMethod):
    """Remove each layer's least relevant filters (lowest mean activation on a data sample)."""

    name = "relevance"

    def __init__(self, criterion: str = "fraction", threshold: float = 0.1, samples: int = 512):
        if criterion not in CRITERIA:
            raise PruningError(
                f"relevance: criterion={criterion!r} is not supported",
                hint="use criterion=fraction or threshold",
            )
        if not 0.0 <= threshold <= 1.0:
            raise PruningError(f"relevance: threshold={threshold!r} is outside [0, 1]")
        self.criterion, self.threshold, self.samples = criterion, threshold, int(samples)

    def scores(
        self, model: nn.Module, name: str, layer: Layer, context: PruneContext
    ) -> torch.Tensor:
        sample = context.need_sample(self.name)[: self.samples]
        return relevance(model, layer, sample)

    def forced(
        self, model: nn.Module, name: str, layer: Layer, scores: torch.Tensor, context: PruneContext
    ) -> list[int]:
        if self.criterion != "threshold":
            return []
        floor = self.threshold * float(scores.mean())
        return [int(i) for i in torch.nonzero(scores < floor).flatten()]
