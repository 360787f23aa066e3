"""Early stopping that knows the costs (issue 22): whether a running trial goes on.

Only accuracy depends on training; a candidate's flash and RAM are known before it starts (the
estimates the search screens with). So at a checkpoint a trial whose accuracy, extrapolated
optimistically to the end of its training, would still be dominated by the current front *at
its own costs* can stop: it could not join the front however its training went on.

- Checkpoints are rungs: ``grace * eta**k`` epochs (1, 3, 9, ... by default), below the trial's
  total epochs. Nothing stops before ``grace`` epochs, nor between rungs.
- The optimistic accuracy is the trial's accuracy at the rung plus the ``quantile`` of the
  gains (final accuracy minus accuracy at that rung) of the job's completed trials of the same
  kind: pruned trials (train, prune, fine-tune) against pruned ones, unpruned against
  unpruned. With fewer than ``min_completed`` such curves nothing is stopped at that rung.
- Accuracies compare float with float: the curve's points (``worker.curve``: float accuracy on
  a fixed validation sample) against the front trials' final curve points.
- Costs that training decides (``cost_is_exact`` False: sparsity induction, variational
  dropout, relevance by threshold) have only an upper bound before the trial ends; their lower
  bound is taken as nothing, so such a trial is never stopped on its costs.
- A final training (``finalize``) is never stopped.

Pure functions of plain values (no Ray, no torch, no storage): the driver feeds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sparsearch.vocabulary import PRUNING_METHODS


@dataclass(frozen=True)
class StopRule:
    """When and how optimistically to stop. ``grace``: epochs before any stop; ``eta``: the
    rungs' reduction factor; ``min_completed``: completed curves of the trial's kind needed at
    a rung; ``quantile``: of their gains from the rung to the end (0.9: nearly the best gain
    seen); ``margin``: accuracy added to that optimism. Its default covers what the float
    curve cannot see: the front is ranked by int8 accuracy, which quantization moves by a
    point or two either way, and a curve point is scored on a sample of at most 1,000 images
    (benchmarks/early_stop_replay.py: on real curves, no margin stopped a trial that ended on
    its int8 front; 0.02 stopped none such)."""

    grace: float = 1.0
    eta: float = 3.0
    min_completed: int = 3
    quantile: float = 0.9
    margin: float = 0.02

    def __post_init__(self) -> None:
        if not (self.grace > 0 and self.eta > 1 and self.min_completed >= 1):
            raise ValueError("StopRule needs grace > 0, eta > 1 and min_completed >= 1")
        if not 0.0 <= self.quantile <= 1.0:
            raise ValueError("StopRule.quantile must be within [0, 1]")

    def rungs(self, epochs: float) -> list[float]:
        """The checkpoints of a training of ``epochs`` epochs (its end excluded)."""
        out, r = [], self.grace
        while r < epochs - 1e-9:
            out.append(round(r, 6))
            r *= self.eta
        return out

    def is_rung(self, epoch: float, epochs: float) -> bool:
        return any(math.isclose(epoch, r, abs_tol=1e-6) for r in self.rungs(epochs))


@dataclass(frozen=True)
class FrontPoint:
    """A front trial: its final float curve accuracy and its flash and RAM (the job's
    target's, measured)."""

    index: int
    accuracy: float
    flash: int
    ram: int


@dataclass(frozen=True)
class Completed:
    """A completed trial's curve (``worker.curve`` points) and whether it pruned."""

    curve: Sequence[Mapping[str, Any]]
    pruned: bool

    @property
    def final(self) -> float | None:
        return self.curve[-1].get("accuracy") if self.curve else None

    def at(self, epoch: float) -> float | None:
        for p in self.curve:
            if p.get("phase", "train") == "train" and math.isclose(p["epoch"], epoch, abs_tol=1e-6):
                return p.get("accuracy")
        return None


@dataclass(frozen=True)
class Running:
    """A running trial at a checkpoint: epochs trained, its curve accuracy there, its known
    costs, its total epochs, whether it prunes and whether its costs are exact."""

    epoch: float
    accuracy: float
    flash: int
    ram: int
    epochs: float
    pruned: bool = False
    exact_cost: bool = True
    final: bool = False


@dataclass(frozen=True)
class Decision:
    stop: bool
    reason: str
    #: The accuracy the trial could still reach (None where no estimate was made).
    optimistic: float | None = None
    #: The front trial that dominates it.
    by: int | None = None


def cost_is_exact(pruning: Mapping[str, Any]) -> bool:
    """Whether a trial's estimated flash and RAM are its cost (else an upper bound that only
    training settles): the method's ``exact_cost``, and relevance only by fraction."""
    method = pruning.get("method", "none")
    info = PRUNING_METHODS.get(method)
    if info is None or method == "none":
        return True
    options = pruning.get("options") or {}
    if method == "relevance" and options.get("criterion") == "threshold":
        return False
    return bool(info.exact_cost)


def gains(rung: float, completed: Iterable[Completed], pruned: bool) -> list[float]:
    """Final minus rung accuracy of the completed curves of this kind that have the rung."""
    out = []
    for c in completed:
        at, final = c.at(rung), c.final
        if c.pruned == pruned and at is not None and final is not None:
            out.append(final - at)
    return out


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation between order statistics."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def decide(
    rule: StopRule,
    trial: Running,
    front: Sequence[FrontPoint],
    completed: Iterable[Completed],
) -> Decision:
    """Whether ``trial`` stops at this checkpoint, and why (or why not)."""
    if trial.final:
        return Decision(False, "a final training is never stopped")
    if trial.epoch < rule.grace - 1e-9:
        return Decision(False, f"within the grace period ({rule.grace:g} epochs)")
    if not rule.is_rung(trial.epoch, trial.epochs):
        return Decision(False, "not a checkpoint")
    if not trial.exact_cost:
        return Decision(False, "its cost is an upper bound until training ends")
    seen = gains(trial.epoch, completed, trial.pruned)
    if len(seen) < rule.min_completed:
        return Decision(False, f"{len(seen)} completed curves of its kind at this checkpoint")
    optimistic = min(1.0, trial.accuracy + max(0.0, _quantile(seen, rule.quantile)) + rule.margin)
    for p in front:
        no_worse = p.accuracy >= optimistic and p.flash <= trial.flash and p.ram <= trial.ram
        better = p.accuracy > optimistic or p.flash < trial.flash or p.ram < trial.ram
        if no_worse and better:
            return Decision(
                True,
                f"at epoch {trial.epoch:g} its accuracy {trial.accuracy:.3f} could reach "
                f"{optimistic:.3f}, and trial {p.index} has {p.accuracy:.3f} with no more flash "
                f"({p.flash} B) and RAM ({p.ram} B)",
                optimistic,
                p.index,
            )
    return Decision(False, f"it could still reach the front ({optimistic:.3f})", optimistic)
