"""The driver's side of early stopping (issue 22): the state a job's ``CurveBoard`` judges its
running trials by, and the judge itself.

The driver tells a ``Stopper`` when a trial starts (its known costs, whether it prunes and
whether those costs are exact), when one ends (a completed trial's curve joins the gains the
rule extrapolates with) and what the front is (its trials' final float curve accuracies and
measured flash and RAM); after each change it sends ``state()`` to the board. Workers report
every curve point to the board, which answers with ``judge`` at once, so a trial stops at the
checkpoint where the rule says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sparsearch.search.stopping import (
    Completed,
    Decision,
    FrontPoint,
    Running,
    StopRule,
    cost_is_exact,
    decide,
)


def decision(state: Mapping[str, Any], index: int, point: Mapping[str, Any]) -> Decision | None:
    """``decide`` for trial ``index`` at its new ``point`` over the driver's ``state``; None
    where there is nothing to decide (a trial the state does not know, a fine-tuning point,
    no accuracy)."""
    trial = state["trials"].get(index)
    if trial is None or point.get("phase", "train") != "train" or point.get("accuracy") is None:
        return None
    running = Running(epoch=float(point["epoch"]), accuracy=float(point["accuracy"]), **trial)
    return decide(state["rule"], running, state["front"], state["completed"])


def judge(state: Mapping[str, Any], index: int, point: Mapping[str, Any]) -> bool:
    """A ``CurveBoard`` judge: whether trial ``index`` stops at ``point``."""
    d = decision(state, index, point)
    return d is not None and d.stop


class Stopper:
    """What the rule needs of the job, kept by the driver."""

    def __init__(self, rule: StopRule, epochs: float) -> None:
        self.rule, self.epochs = rule, epochs
        self.trials: dict[int, dict[str, Any]] = {}
        self.front: list[FrontPoint] = []
        self.completed: list[Completed] = []

    def started(
        self, index: int, flash: int, ram: int, pruning: Mapping[str, Any], final: bool
    ) -> None:
        self.trials[index] = {
            "flash": int(flash),
            "ram": int(ram),
            "epochs": float(self.epochs),
            "pruned": _prunes(pruning),
            "exact_cost": cost_is_exact(pruning),
            "final": final,
        }

    def finished(
        self, index: int, curve: list[dict[str, Any]] | None = None, pruned: bool = False
    ) -> None:
        """Trial ``index`` ended; a completed one's ``curve`` joins the gains."""
        self.trials.pop(index, None)
        if curve:
            self.completed.append(Completed(tuple(curve), pruned))

    def set_front(self, trials: Iterable[Any]) -> None:
        """The front's trials (``TrialInfo``): those with a curve and measured numbers."""
        self.front = [
            FrontPoint(
                t.index, float(t.curve[-1]["accuracy"]), int(t.flash_bytes), int(t.ram_bytes)
            )
            for t in trials
            if t.curve
            and t.curve[-1].get("accuracy") is not None
            and t.flash_bytes is not None
            and t.ram_bytes is not None
        ]

    def state(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "trials": dict(self.trials),
            "front": list(self.front),
            "completed": list(self.completed),
        }


class EarlyStopping:
    """Early stopping during one run of a job's loop: the ``Stopper`` and the board its trials
    report to, kept in step with storage (the front, completed curves)."""

    def __init__(self, board: Any, stopper: Stopper, storage: Any, job_id: str) -> None:
        self.board, self.stopper = board, stopper
        self._storage, self._job_id = storage, job_id

    @classmethod
    def open(cls, cfg: Any, runner: Any, storage: Any, job_id: str) -> EarlyStopping | None:
        """For a job with ``early_stopping`` on whose runner has boards; a finalize job never
        stops. A resumed job starts from its completed trials' curves and its front."""
        if not cfg.early_stopping or cfg.finalize is not None or not hasattr(runner, "board"):
            return None
        stopper = Stopper(StopRule(), cfg.budget.epochs)
        for t in storage.list_trials(job_id):
            if t.status == "completed" and t.curve:
                stopper.finished(t.index, t.curve, _prunes(t.pruning))
        es = cls(runner.board(judge), stopper, storage, job_id)
        es.refresh_front()
        return es

    def _push(self) -> None:
        self.board.update(self.stopper.state())

    def refresh_front(self) -> None:
        self.stopper.set_front(self._storage.front(self._job_id, sort="index")[1])
        self._push()

    def started(self, index: int, flash: int, ram: int, pruning: Mapping[str, Any]) -> None:
        self.stopper.started(index, flash, ram, pruning, final=False)
        self._push()

    def completed(self, index: int, curve: list[dict[str, Any]]) -> None:
        """After the front was refreshed with this trial: its curve joins the gains."""
        pruned = bool(self.stopper.trials.get(index, {}).get("pruned", False))
        self.stopper.finished(index, curve, pruned)
        self.refresh_front()

    def ended(self, index: int, last: Mapping[str, Any] | None = None) -> str:
        """A trial ended without a curve to learn from (failed, stopped); for a stopped one
        (``last``: its last point) the rule's reason there."""
        d = decision(self.stopper.state(), index, last) if last is not None else None
        self.stopper.finished(index)
        self._push()
        return d.reason if d is not None else ""


def _prunes(pruning: Mapping[str, Any] | None) -> bool:
    return (pruning or {}).get("method", "none") != "none"
