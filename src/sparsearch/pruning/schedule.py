"""How pruning and training interleave: one object owns it, for every method.

- ``one_shot``: (induce,) prune to the level once, fine-tune once.
- ``iterative``: ``steps`` rounds of prune to ``level * i / steps`` (counted from the widths
  the schedule started with), fine-tune (Han et al.'s and Li et al.'s iterative schedule).
- ``layerwise``: for each prunable layer in turn, induce (train with the method's loss term on
  that layer only), prune that layer; fine-tune at the end (seed 000's induce -> select ->
  remove, layer 1 then layer 2, ...).
- ``train_once``: prune the untrained network, (re)initialise it and train it once from
  scratch, no fine-tuning (seed 001). In a search the pruning happens on the architecture
  before the model is built (``space.pruned.effective_arch``), so the schedule has nothing
  left to do there; on a trained torch model (``sparsearch prune``) it prunes, re-initialises
  and trains for ``context.scratch_epochs`` at ``context.scratch_lr``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sparsearch.errors import PruningError
from sparsearch.pruning.base import PruneReport, PruningMethod, check_level
from sparsearch.pruning.context import PruneContext
from sparsearch.space.spec import PruningSpec
from sparsearch.vocabulary import PRUNING_SCHEDULES

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class Schedule:
    kind: str
    steps: int = 1

    def __post_init__(self) -> None:
        if self.kind not in PRUNING_SCHEDULES:
            raise PruningError(
                f"unknown schedule {self.kind!r}", f"choose among {', '.join(PRUNING_SCHEDULES)}"
            )
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise PruningError(f"steps must be a positive integer, got {self.steps!r}")

    @classmethod
    def of(cls, pruning: PruningSpec) -> Schedule:
        """The schedule a pruning setting asks for (its method's default when not given)."""
        kind = pruning.option("schedule")
        steps = pruning.option("steps") if kind == "iterative" else 1
        return cls(kind, steps)

    def run(
        self,
        method: PruningMethod,
        model: nn.Module,
        level: float,
        context: PruneContext,
        *,
        progress: Callable[[str], None] | None = None,
    ) -> PruneReport:
        """Prune ``model`` (already trained, except for ``train_once``) to ``level`` with
        ``method``, training through ``context.train`` as the schedule says. Returns one report
        from the untouched model to the final one. ``progress(phase)`` hears each phase."""
        level = check_level(level)
        if self.kind not in method.info.schedules:
            raise PruningError(
                f"{method.name} does not support the {self.kind} schedule",
                f"use one of {', '.join(method.info.schedules)}",
            )
        say = progress or (lambda phase: None)
        first: PruneReport | None = None
        if self.kind == "train_once":
            first = method.prune(model, level, context=context)
            _reinitialise(model, context.seed)
            say("train from scratch")
            train = context.need_train(method.name)
            train(model, epochs=context.scratch_epochs, lr=context.scratch_lr)
        elif self.kind == "layerwise":
            for name in method.layers(model):
                say(f"induce {name}")
                method.induce(model, context, layers=[name])
                report = method.prune(model, level, context=context, layers=[name])
                first = first or report
            first = first or method.prune(model, 0.0, context=context)
            self._fine_tune(method, model, context, say)
        else:
            base = _widths(model)
            steps = self.steps if self.kind == "iterative" else 1
            for i in range(1, steps + 1):
                if i == 1 and method.info.stage == "during_training":
                    say("induce")
                    method.induce(model, context)
                say(f"prune {i}/{steps}")
                report = method.prune(model, level * i / steps, context=context, base=base)
                first = first or report
                self._fine_tune(method, model, context, say)
        method.finalize(model)
        assert first is not None
        # one report from the model before the first step to the model as it is now
        return method._report(model, level, first.params_before, first.channels_before)

    @staticmethod
    def _fine_tune(
        method: PruningMethod, model: nn.Module, context: PruneContext, say: Callable[[str], None]
    ) -> None:
        if method.fine_tune_after and context.train is not None:
            say("fine-tune")
            context.train(model)


def _widths(model: nn.Module) -> dict[str, int]:
    from sparsearch.pruning.stats import out_channels

    return out_channels(model)


def _reinitialise(model: nn.Module, seed: int) -> None:
    """Fresh weights (PyTorch's default initialisation, seeded) for a training from scratch."""
    import torch

    torch.manual_seed(seed)
    for module in model.modules():
        reset = getattr(module, "reset_parameters", None)
        if callable(reset):
            reset()
