"""Final training: from a front point to the model you ship.

A finalize job is a job like any other (claimed by a scheduler or a local CLI run, cancellable,
resumable, with progress), whose config carries a :class:`~sparsearch.jobconfig.FinalizePlan`:
the trials of another job to retrain from scratch on the whole training split for more epochs.
The search driver runs it with :class:`FinalizeStrategy` (which proposes exactly those trials'
parameters), and :class:`FinalRecorder` copies each outcome onto the source trial: its
``final`` (status queued / running / completed / failed, metrics measured on TFLM) and its final
artifacts, which ``pull`` then prefers.

A crash (its scheduler or CLI run killed while a retraining ran) loses that retraining: the trial
is failed "scheduler lost" by whoever takes the job over. A finalize has no search budget to
protect, so its resume retrains what a crash lost again, under a new trial index (the lost trial
stays recorded, not charged), up to :data:`FINALIZE_CRASH_RETRIES` times per chosen trial; then
that trial's final status is failed, naming the crashes, and the job goes on with the others and
ends ``completed``, as a search whose trials failed does (its trial counts show the failure).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sparsearch.jobconfig import FinalizePlan, JobConfig
from sparsearch.search.strategies.base import Proposal, Result
from sparsearch.vocabulary import TARGET_METRICS

log = logging.getLogger(__name__)

#: How many times a chosen trial's retraining lost to a crash is started again before the
#: finalize gives up on that trial (without a bound, a retraining that kills its holder would
#: loop for ever).
FINALIZE_CRASH_RETRIES = 2
#: The error of a trial whose holder died while it trained (``Storage.interrupt_stale_jobs``).
LOST = "scheduler lost"
#: The error of such a trial once a resume has queued its retraining again.
RETRIED = f"{LOST}; retrained again under a later index"


def lost_to_crash(trial: Any) -> bool:
    """Whether a finalize job's trial was lost to a crash: failed "scheduler lost" by a
    takeover, or failed "interrupted" but charged, by the driver's start-of-run clean-up of a
    trial still running (a graceful stop's "interrupted" trials are not charged)."""
    if trial.status != "failed" or not trial.error:
        return False
    return trial.error.startswith(LOST) or (trial.error == "interrupted" and trial.charged)


class FinalizeStrategy:
    """Proposes the plan's parameters in order, each once (told or pending ones skipped)."""

    name = "finalize"

    def __init__(self, screen: Any, plan: FinalizePlan) -> None:
        self._codec = screen.codec
        self._params = [screen.codec.canonical(p) for p in plan.params]
        self._told: set[str] = set()

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        busy = self._told | {self._codec.key(p) for p in pending}
        left = [p for p in self._params if self._codec.key(p) not in busy]
        return [Proposal(p, "finalize:retrain") for p in left[:k]]

    def tell(self, result: Result) -> None:
        self._told.add(self._codec.key(result.params))


class FinalRecorder:
    """Writes a finalize job's progress onto the source trials (``Storage.set_final``).

    Built by the driver when a run of the job starts, it first settles what crashes lost
    (:meth:`settle_crashes`), before the driver reads the stored trials: a lost retraining is
    uncharged (so the strategy proposes it again) or, after its retries, left charged and its
    source trial failed."""

    def __init__(self, storage: Any, job_id: str, cfg: JobConfig, codec: Any) -> None:
        assert cfg.finalize is not None
        self.storage, self.job_id, self.plan = storage, job_id, cfg.finalize
        self.epochs = cfg.budget.epochs
        self._source = {
            codec.key(codec.canonical(p)): i
            for p, i in zip(self.plan.params, self.plan.trials, strict=True)
        }
        self._codec = codec
        self._crashes: dict[str, int] = {}  # plan key -> retrainings of it lost to crashes
        self.settle_crashes()

    def settle_crashes(self) -> None:
        """Per chosen trial, its retrainings lost to crashes: all uncharged and the trial
        queued again while it has retries left; else the last one stays charged (the plan
        entry is done with) and the source trial's final is failed with the reason. Idempotent:
        every resume decides the same from the stored trials."""
        tried: dict[str, list[Any]] = {}
        for t in self.storage.list_trials(self.job_id):
            tried.setdefault(self._codec.key(t.params), []).append(t)
        for key, source in self._source.items():
            lost = [t for t in tried.get(key, []) if lost_to_crash(t)]
            if not lost:
                continue
            self._crashes[key] = len(lost)
            done = any(
                t.status == "completed" or (t.trained and not lost_to_crash(t)) for t in tried[key]
            )
            gave_up = not done and len(lost) > FINALIZE_CRASH_RETRIES
            keep = lost[-1].index if gave_up else None
            redo = [t.index for t in lost if t.index != keep and (t.charged or t.error != RETRIED)]
            self.storage.uncharge_trials(self.job_id, redo, error=RETRIED)
            if done:
                continue
            if gave_up:
                indices = ", ".join(str(t.index) for t in lost)
                reason = (
                    f"the retraining was lost to {len(lost)} scheduler crashes (trials {indices} "
                    f"of finalize job {self.job_id}); given up after {FINALIZE_CRASH_RETRIES} "
                    "retries — finalize the trial again to retry"
                )
                self._write(source, key, {"status": "failed", "error": reason})
                log.warning(
                    "finalize job %s, trial %d of job %s: %s",
                    self.job_id,
                    source,
                    self.plan.job_id,
                    reason,
                )
            else:
                self._write(source, key, {"status": "queued"})

    def _write(self, index: int, key: str, doc: dict[str, Any], **kw: Any) -> None:
        base: dict[str, Any] = {"job": self.job_id, "epochs": self.epochs}
        if self._crashes.get(key):
            base["crashes"] = self._crashes[key]
        self.storage.set_final(self.plan.job_id, index, {**base, **doc}, **kw)

    def _set(self, params: dict[str, Any], doc: dict[str, Any], **kw: Any) -> None:
        key = self._codec.key(params)
        index = self._source.get(key)
        if index is None:  # not one of the plan's (cannot happen with FinalizeStrategy)
            log.warning("finalize job %s trained a candidate outside its plan", self.job_id)
            return
        self._write(index, key, doc, **kw)

    def started(self, params: dict[str, Any]) -> None:
        self._set(params, {"status": "running"})

    def failed(self, params: dict[str, Any], reason: str) -> None:
        self._set(params, {"status": "failed", "error": reason})

    def stopped(self, params: dict[str, Any], status: str) -> None:
        """A stop cut the training short: queued again if the job can resume, else failed."""
        if status == "interrupted":
            self._set(params, {"status": "queued"})
        else:
            self._set(params, {"status": "failed", "error": status})

    def completed(self, params: dict[str, Any], outcome: Any, feasible: bool) -> None:
        doc = {
            "status": "completed",
            "test_accuracy": outcome.accuracy,
            "int8_test_accuracy": outcome.int8_test_accuracy,
            "flash_bytes": outcome.flash_bytes,
            "ram_bytes": outcome.ram_bytes,
            "activation_bytes": outcome.activation_bytes,
            **{k: getattr(outcome, k, None) for k in (*TARGET_METRICS, "c_error")},
            "feasible": feasible,
            "train_seconds": outcome.train_seconds,
            "export_seconds": outcome.export_seconds,
            "deployment": outcome.deployment,
            "curve": getattr(outcome, "curve", None),
        }
        self._set(params, doc, artifacts=outcome.artifacts, effective_spec=outcome.effective_spec)
