"""The contract every pruning method follows, and the report it returns.

A method is a criterion plus a removal step (Torch-Pruning style): ``prune`` scores weights or
filters, then zeroes (unstructured) or physically removes (structured) the lowest-scored ones.
Methods that act during training also ``induce`` (train with their loss term or layer swap)
before ``prune`` selects. ``finalize`` makes the result permanent after fine-tuning. How these
calls interleave with training is a :class:`~sparsearch.pruning.schedule.Schedule`'s business
(one-shot, iterative, layer by layer), never the method's or the worker's.

Levels: for unstructured methods ``level`` is the *total* fraction of weights that is zero
afterwards (masks accumulate); for structured methods it is the fraction of each layer's
filters removed, counted from ``base`` (the widths an iterative schedule started from) or, by
default, from the layer's current width.

This module imports no torch at run time, so ``import sparsearch.pruning`` stays cheap.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sparsearch.errors import PruningError
from sparsearch.vocabulary import PRUNING_METHODS, PruningMethodInfo

if TYPE_CHECKING:
    import torch
    from torch import nn

    from sparsearch.pruning.context import PruneContext

MAX_LEVEL = 0.95


@dataclass(frozen=True)
class PruneReport:
    """What one ``prune`` call did. Plain data: picklable and JSON-safe via ``to_dict``.

    ``channels_before``/``channels_after`` map each Conv2d/Linear module name (as in
    ``named_modules``) to its output channels/features. ``zero_fraction`` is the fraction of
    exactly-zero Conv2d/Linear weights after pruning."""

    method: str
    level: float
    params_before: int
    params_after: int
    zero_fraction: float
    channels_before: dict[str, int] = field(default_factory=dict)
    channels_after: dict[str, int] = field(default_factory=dict)

    @property
    def params_removed(self) -> int:
        return self.params_before - self.params_after

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_level(level: float) -> float:
    """Return ``level`` as a float, or raise PruningError when it is outside [0, 0.95]."""
    try:
        value = float(level)
    except (TypeError, ValueError) as e:
        raise PruningError(
            f"pruning level {level!r} is not a number", hint=f"use a fraction in [0, {MAX_LEVEL}]"
        ) from e
    if not math.isfinite(value) or not 0.0 <= value <= MAX_LEVEL:
        raise PruningError(
            f"pruning level {level!r} is outside [0, {MAX_LEVEL}]",
            hint=f"use a fraction in [0, {MAX_LEVEL}] (0 keeps the model unchanged)",
        )
    return value


class PruningMethod(ABC):
    """A pruning method: a name (its ``vocabulary.PRUNING_METHODS`` entry says when it acts,
    what it needs and its knobs), ``prune``, ``induce`` and ``finalize``.

    Contract:
    - ``prune`` mutates ``model`` in place and returns a :class:`PruneReport`. It never changes
      ``model.training`` and never updates BatchNorm running statistics.
    - Structured methods replace parameters with smaller ones: build the optimizer *after*
      pruning. Unstructured methods keep parameters (masks live in forward pre-hooks), so
      zeros stay zero during fine-tuning.
    - Level 0 leaves the model unchanged, except what a method's own criterion removes
      regardless of the level (a sparsity, relevance or log-alpha threshold). A level outside
      [0, 0.95] raises PruningError.
    - ``induce`` (methods that act during training) trains ``model`` with the method's loss
      term or layers, through ``context.train``; the others have nothing to induce.
    - ``finalize`` is called once after fine-tuning, before export or ``state_dict``; it is
      idempotent and a no-op for methods that have nothing to make permanent.
    """

    name: str
    #: Whether a schedule fine-tunes after ``prune`` (False where pruning ends training).
    fine_tune_after: bool = True

    @property
    def info(self) -> PruningMethodInfo:
        return PRUNING_METHODS[self.name]

    @property
    def structured(self) -> bool:
        return self.info.structured

    @abstractmethod
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
        """Prune ``model`` in place to ``level`` and report what changed.

        ``example_inputs`` is one input batch (N, C, H, W); structured methods need it to trace
        the model's dependency graph (or ``context``, which holds one, and a data sample and a
        trainer for the methods that need them). ``base``: widths the level counts from
        (structured); ``layers``: only these layers (a layer-by-layer schedule)."""

    def layers(self, model: nn.Module) -> list[str]:
        """Names of the layers the method prunes, in module order."""
        from sparsearch.pruning.stats import weight_layers

        return [name for name, _ in weight_layers(model)]

    def induce(
        self, model: nn.Module, context: PruneContext, layers: list[str] | None = None
    ) -> None:
        """Train ``model`` so that ``prune`` finds what to remove (default: nothing to do)."""
        return None

    def finalize(self, model: nn.Module) -> nn.Module:
        """Make the pruning permanent (default: nothing to do). Returns ``model``."""
        return model

    def _report(
        self, model: nn.Module, level: float, params_before: int, channels_before: dict[str, int]
    ) -> PruneReport:
        """The report of a finished ``prune``: measures the model as it is now."""
        from sparsearch.pruning.stats import count_params, out_channels, zero_fraction

        return PruneReport(
            method=self.name,
            level=level,
            params_before=params_before,
            params_after=count_params(model),
            zero_fraction=zero_fraction(model),
            channels_before=channels_before,
            channels_after=out_channels(model),
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, structured={self.structured})"
