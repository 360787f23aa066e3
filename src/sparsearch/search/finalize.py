"""Final training: from a front point to the model you ship.

A finalize job is a job like any other (claimed by a scheduler or a local CLI run, cancellable,
resumable, with progress), whose config carries a :class:`~sparsearch.jobconfig.FinalizePlan`:
the trials of another job to retrain from scratch on the whole training split for more epochs.
The search driver runs it with :class:`FinalizeStrategy` (which proposes exactly those trials'
parameters), and :class:`FinalRecorder` copies each outcome onto the source trial: its
``final`` (status queued / running / completed / failed, metrics measured on TFLM) and its final
artifacts, which ``pull`` then prefers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sparsearch.jobconfig import FinalizePlan, JobConfig
from sparsearch.search.strategies.base import Proposal, Result

log = logging.getLogger(__name__)


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
    """Writes a finalize job's progress onto the source trials (``Storage.set_final``)."""

    def __init__(self, storage: Any, job_id: str, cfg: JobConfig, codec: Any) -> None:
        assert cfg.finalize is not None
        self.storage, self.job_id, self.plan = storage, job_id, cfg.finalize
        self.epochs = cfg.budget.epochs
        self._source = {
            codec.key(codec.canonical(p)): i
            for p, i in zip(self.plan.params, self.plan.trials, strict=True)
        }
        self._codec = codec

    def _set(self, params: dict[str, Any], doc: dict[str, Any], **kw: Any) -> None:
        index = self._source.get(self._codec.key(params))
        if index is None:  # not one of the plan's (cannot happen with FinalizeStrategy)
            log.warning("finalize job %s trained a candidate outside its plan", self.job_id)
            return
        base = {"job": self.job_id, "epochs": self.epochs}
        self.storage.set_final(self.plan.job_id, index, {**base, **doc}, **kw)

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
            "feasible": feasible,
            "train_seconds": outcome.train_seconds,
            "export_seconds": outcome.export_seconds,
            "deployment": outcome.deployment,
        }
        self._set(params, doc, artifacts=outcome.artifacts, effective_spec=outcome.effective_spec)
