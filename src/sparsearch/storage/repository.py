"""The Storage repository: every method is one transaction and returns frozen records.

Errors: ``NotFoundError`` for a missing job/trial/artifact, ``ConflictError`` (a
``StorageError``) for a duplicate job id or trial index, ``StorageError`` for anything the
database or the artifact directory refuses, ``ValueError`` for arguments no caller should
pass (an unknown status, artifact kind or metric key). Safe to share between threads (one
session per call); several processes may use one database.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Self

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from ..errors import NotFoundError, StorageError
from . import _convert as cv
from ._session import JOBS_HINT, job_missing, job_row, transaction, trial_row
from .artifacts import ArtifactStore, check_kind, missing_artifact
from .engine import build_engine, check_connection, mask_url
from .migrations import ensure_schema
from .models import Artifact, Job, Trial, utcnow
from .records import (
    ACTIVE_JOB_STATUSES,
    FINISHED_TRIAL_STATUSES,
    ArtifactInfo,
    JobInfo,
    TrialInfo,
    check_job_status,
    check_trial_status,
)


def open_storage(url: str, artifact_dir: Path | str, *, migrate: bool = True) -> Storage:
    """Connect to ``url``, migrate it to the current schema (under a lock), return a Storage.

    ``migrate=False`` refuses an outdated schema instead (hint: ``sparsearch db upgrade``).
    Any failure is a ``StorageError`` naming the URL with its password masked.
    """
    engine = build_engine(url)
    try:
        check_connection(engine)
        ensure_schema(engine, migrate=migrate)
        return Storage(engine, artifact_dir)
    except BaseException:
        engine.dispose()
        raise


class Storage:
    """Jobs, trials and artifacts in one SQL database plus an artifact directory."""

    def __init__(self, engine: Engine, artifact_dir: Path | str) -> None:
        self._engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._files = ArtifactStore(artifact_dir)
        try:
            self._files.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create artifact directory {self._files.root}: {e}",
                "set SPARSEARCH_ARTIFACT_DIR to a writable folder",
            ) from e

    @property
    def url(self) -> str:
        """The database URL with the password masked."""
        return mask_url(self._engine.url)

    @property
    def artifact_dir(self) -> Path:
        return self._files.root

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- jobs ---------------------------------------------------------------------------

    def create_job(
        self, *, dataset: str, config: dict[str, Any], job_id: str | None = None
    ) -> JobInfo:
        job_id = cv.check_job_id(job_id) if job_id is not None else uuid.uuid4().hex[:12]
        config = cv.check_json("config", config)
        with self._tx("creating a job", conflict=f"job {job_id} already exists") as s:
            row = Job(id=job_id, status="queued", dataset=str(dataset), config=config)
            s.add(row)
            s.flush()
            return cv.job_info(row)

    def get_job(self, job_id: str) -> JobInfo:
        with self._tx("reading a job") as s:
            return cv.job_info(job_row(s, job_id))

    def list_jobs(
        self, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[JobInfo]:
        """Jobs, newest first."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc())
        if status is not None:
            query = query.where(Job.status == check_job_status(status))
        with self._tx("listing jobs") as s:
            return [cv.job_info(r) for r in s.scalars(query.limit(limit).offset(offset))]

    def count_jobs(self, status: str | None = None) -> int:
        query = select(func.count()).select_from(Job)
        if status is not None:
            query = query.where(Job.status == check_job_status(status))
        with self._tx("counting jobs") as s:
            return int(s.scalar(query) or 0)

    def set_job_status(self, job_id: str, status: str, *, error: str | None = None) -> JobInfo:
        """Set the status; ``error`` replaces the job's error (None clears it).

        ``started_at`` is set the first time a job runs; ``finished_at`` whenever it leaves
        queued/running (and cleared when it goes back, e.g. a resumed interrupted job).
        """
        check_job_status(status)
        with self._tx("updating a job") as s:
            row = job_row(s, job_id)
            now = utcnow()
            row.status = status
            row.error = error
            if status == "running" and row.started_at is None:
                row.started_at = now
            row.finished_at = None if status in ACTIVE_JOB_STATUSES else now
            row.updated_at = now
            s.flush()
            return cv.job_info(row)

    def claim_next_job(self, statuses: Iterable[str] = ("queued",)) -> JobInfo | None:
        """Atomically move the oldest job in ``statuses`` to running; None if there is none.

        Safe with several schedulers: a job is claimed by exactly one caller.
        """
        wanted = [check_job_status(s) for s in statuses]
        with self._tx("claiming a job") as s:
            candidates = s.scalars(
                select(Job.id)
                .where(Job.status.in_(wanted))
                .order_by(Job.created_at, Job.id)
                .limit(10)
            ).all()
            for job_id in candidates:
                now = utcnow()
                result = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status.in_(wanted))
                    .values(
                        status="running",
                        error=None,
                        started_at=func.coalesce(Job.started_at, now),
                        finished_at=None,
                        updated_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:
                    return cv.job_info(s.get_one(Job, job_id, populate_existing=True))
            return None

    def update_job_summary(
        self, job_id: str, *, hypervolume: float | None, best_accuracy: float | None
    ) -> JobInfo:
        with self._tx("updating a job summary") as s:
            row = job_row(s, job_id)
            row.hypervolume = cv.float_or_none("hypervolume", hypervolume)
            row.best_accuracy = cv.float_or_none("best_accuracy", best_accuracy)
            row.updated_at = utcnow()
            s.flush()
            return cv.job_info(row)

    def delete_job(self, job_id: str) -> None:
        """Delete the job, its trials and artifact rows, then its artifact folder."""
        with self._tx("deleting a job") as s:
            if s.execute(delete(Job).where(Job.id == job_id)).rowcount == 0:
                raise job_missing(job_id)
        self._files.remove_job(job_id)

    # -- trials -------------------------------------------------------------------------

    def add_trial(
        self,
        job_id: str,
        index: int,
        *,
        status: str,
        params: dict[str, Any],
        generator: str | None,
        gen_seconds: float | None,
        estimates: dict[str, Any],
        feasible: bool,
        pruning: dict[str, Any],
        error: str | None = None,
    ) -> TrialInfo:
        index = cv.check_index(index)
        check_trial_status(status)
        row = Trial(
            job_id=job_id,
            index=index,
            status=status,
            params=cv.check_json("params", params),
            generator=generator,
            gen_seconds=cv.float_or_none("gen_seconds", gen_seconds),
            feasible=bool(feasible),
            pareto=False,
            pruning=cv.check_json("pruning", pruning),
            error=error,
            finished_at=utcnow() if status in FINISHED_TRIAL_STATUSES else None,
            **cv.estimate_values(estimates),
        )
        conflict = f"trial {index} of job {job_id} already exists"
        with self._tx("adding a trial", conflict=conflict) as s:
            job_row(s, job_id)
            s.add(row)
            s.flush()
            return cv.trial_info(row)

    def finish_trial(
        self,
        job_id: str,
        index: int,
        *,
        status: str,
        metrics: dict[str, Any],
        feasible: bool | None = None,
        error: str | None = None,
        train_seconds: float | None = None,
        worker_pid: int | None = None,
        worker_host: str | None = None,
        effective_spec: dict[str, Any] | None = None,
        artifacts: dict[str, bytes] | None = None,
    ) -> TrialInfo:
        """Record a trial's outcome and its artifact files, all or nothing.

        ``metrics`` may hold accuracy, test_accuracy and any estimate key (overwritten by the
        measured value). Arguments left at None keep the stored value. Artifacts of a kind
        already stored are replaced.
        """
        check_trial_status(status)
        values = cv.metric_values(metrics)
        if effective_spec is not None:
            effective_spec = cv.check_json("effective_spec", effective_spec)
        blobs = dict(artifacts or {})
        for kind in blobs:
            check_kind(kind)
        if blobs:
            self.get_trial(job_id, index)  # fail before touching files in the common case
        staged = self._files.stage(job_id, cv.check_index(index), blobs)
        try:
            with self._tx("finishing a trial") as s:
                row = trial_row(s, job_id, index)
                now = utcnow()
                row.status = status
                for key, value in values.items():
                    setattr(row, key, value)
                optional = {
                    "feasible": None if feasible is None else bool(feasible),
                    "error": error,
                    "train_seconds": cv.float_or_none("train_seconds", train_seconds),
                    "worker_pid": worker_pid,
                    "worker_host": worker_host,
                    "effective_spec": effective_spec,
                }
                for key, value in optional.items():
                    if value is not None:
                        setattr(row, key, value)
                if status in FINISHED_TRIAL_STATUSES:
                    row.finished_at = now
                existing = {
                    a.kind: a
                    for a in s.scalars(select(Artifact).where(Artifact.trial_id == row.id))
                }
                for item in staged:
                    art = existing.get(item.kind) or Artifact(trial_id=row.id, kind=item.kind)
                    art.sha256, art.size_bytes, art.path = (
                        item.sha256,
                        item.size_bytes,
                        item.rel_path,
                    )
                    art.effective_spec, art.created_at = effective_spec, now
                    s.add(art)
                s.flush()
                self._files.publish(staged)  # last step before commit: only commit can fail
                info = cv.trial_info(row)
        except BaseException:
            self._files.undo(staged)
            raise
        self._files.discard_backups(staged)
        return info

    def fail_unfinished_trials(self, job_id: str, reason: str) -> int:
        """Mark the job's queued/running trials failed with ``reason``; return how many."""
        with self._tx("failing unfinished trials") as s:
            job_row(s, job_id)
            result = s.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.status.in_(("queued", "running")))
                .values(status="failed", error=reason, finished_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)

    def get_trial(self, job_id: str, index: int) -> TrialInfo:
        with self._tx("reading a trial") as s:
            return cv.trial_info(trial_row(s, job_id, index))

    def list_trials(self, job_id: str, *, status: str | None = None) -> list[TrialInfo]:
        """The job's trials ordered by index (optionally only those with ``status``)."""
        query = select(Trial).where(Trial.job_id == job_id).order_by(Trial.index)
        if status is not None:
            query = query.where(Trial.status == check_trial_status(status))
        with self._tx("listing trials") as s:
            job_row(s, job_id)
            return [cv.trial_info(r) for r in s.scalars(query)]

    def set_pareto(self, job_id: str, indices: Iterable[int]) -> None:
        """Flag exactly the trials ``indices`` as the job's Pareto front."""
        wanted = {cv.check_index(i) for i in indices}
        with self._tx("setting the Pareto front") as s:
            job_row(s, job_id)
            of_job = Trial.job_id == job_id
            found = set(s.scalars(select(Trial.index).where(of_job, Trial.index.in_(wanted))))
            if wanted - found:
                missing = ", ".join(map(str, sorted(wanted - found)))
                raise NotFoundError(f"job {job_id} has no trial(s) {missing}", JOBS_HINT)
            opts = {"synchronize_session": False}
            s.execute(
                update(Trial)
                .where(of_job, Trial.pareto.is_(True), Trial.index.not_in(wanted))
                .values(pareto=False)
                .execution_options(**opts)
            )
            if wanted:
                s.execute(
                    update(Trial)
                    .where(of_job, Trial.index.in_(wanted))
                    .values(pareto=True)
                    .execution_options(**opts)
                )

    # -- artifacts ----------------------------------------------------------------------

    def list_artifacts(self, job_id: str, index: int) -> list[ArtifactInfo]:
        with self._tx("listing artifacts") as s:
            trial = trial_row(s, job_id, index)
            rows = s.scalars(
                select(Artifact).where(Artifact.trial_id == trial.id).order_by(Artifact.kind)
            )
            return [cv.artifact_info(r, job_id, trial.index) for r in rows]

    def artifact_path(self, info: ArtifactInfo) -> Path:
        """Absolute path of an artifact; refuses anything outside the artifact directory."""
        return self._files.resolve(info.path)

    def read_artifact(self, job_id: str, index: int, kind: str) -> bytes:
        """The artifact's bytes, verified against the stored sha256."""
        with self._tx("reading an artifact") as s:
            trial = trial_row(s, job_id, index)
            row = s.scalars(
                select(Artifact).where(Artifact.trial_id == trial.id, Artifact.kind == kind)
            ).one_or_none()
            if row is None:
                raise missing_artifact(job_id, index, kind)
            info = cv.artifact_info(row, job_id, trial.index)
        return self._files.read(info)

    def _tx(self, doing: str, *, conflict: str | None = None) -> AbstractContextManager[Session]:
        return transaction(self._sessions, self.url, doing, conflict=conflict)
