"""The Storage repository: every method is one transaction and returns frozen records.

``Storage`` is the one entry point; its methods live in parts: jobs (``jobs.py``), scheduler
heartbeats and claims (``schedulers.py``), API tokens (``tokens.py``), monitoring aggregates
(``stats.py``), uploaded datasets (``datasets.py``), server secrets (``app_secrets.py``), and
trials and artifacts here.

Errors: ``NotFoundError`` for a missing job/trial/artifact/token/scheduler (and for another
owner's job when ``owner=`` is given), ``ConflictError`` (a ``StorageError``) for a duplicate
job id or trial index, cancelling a finished job or deleting a running one, ``StorageError``
for anything the database or the artifact directory refuses, ``ValueError`` for arguments no
caller should pass (an unknown status, sort key, artifact kind or metric key). Safe to share
between threads (one session per call); several processes may use one database.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, update

from ..errors import NotFoundError
from ..vocabulary import FINISHED_TRIAL_STATUSES, flash_accounting_of
from . import _convert as cv
from ._session import JOBS_HINT, job_missing, job_owned, job_row, trial_row
from .app_secrets import AppSecretsMixin
from .artifacts import check_kind, missing_artifact
from .datasets import DatasetsMixin
from .engine import build_engine, check_connection
from .jobs import JobsMixin
from .migrations import ensure_schema
from .models import Artifact, Job, Trial, utcnow
from .queries import (
    JOB_FLASH_ACCOUNTING,
    accounted_flash_column,
    trial_filter,
    trial_order,
    trial_page_query,
)
from .records import UNFINISHED_TRIAL_STATUSES, ArtifactInfo, TrialInfo, check_trial_status
from .schedulers import SchedulersMixin
from .stats import StatsMixin
from .tokens import TokensMixin


def open_storage(url: str, artifact_dir: Path | str, *, migrate: bool = True) -> Storage:
    """Connect to ``url``, migrate it to the current schema (under a lock), return a Storage.

    ``migrate=False`` refuses an outdated schema instead (hint: ``sparsearch db upgrade``).
    Any failure is a ``StorageError`` naming the URL with its password masked. The artifact
    directory is created when the first artifact is written.
    """
    engine = build_engine(url)
    try:
        check_connection(engine)
        ensure_schema(engine, migrate=migrate)
        return Storage(engine, artifact_dir)
    except BaseException:
        engine.dispose()
        raise


class Storage(JobsMixin, SchedulersMixin, TokensMixin, StatsMixin, DatasetsMixin, AppSecretsMixin):
    """Jobs, trials, artifacts, tokens, scheduler heartbeats, uploaded datasets and server
    secrets in one SQL database plus an artifact directory. Construct with
    :func:`open_storage`."""

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
        charged: bool = True,
    ) -> TrialInfo:
        """Store a new trial. ``charged``: whether it counts against the job's budget once
        completed or failed (``TrialInfo.trained``)."""
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
            charged=bool(charged),
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
        worker_node: str | None = None,
        effective_spec: dict[str, Any] | None = None,
        artifacts: dict[str, bytes] | None = None,
        charged: bool | None = None,
        measured: bool | None = None,
        deployment: dict[str, Any] | None = None,
        curve: list[dict[str, Any]] | None = None,
    ) -> TrialInfo:
        """Record a trial's outcome and its artifact files, all or nothing.

        ``metrics`` may hold the float and int8 accuracies, export_seconds and any estimate
        key (``measured=True``: flash / RAM / activation are measured values, which replace
        the estimates while ``est_*`` keep them), and both deployment targets' numbers
        (``vocabulary.TARGET_METRICS``) with ``c_error``, the text saying why the C target's
        are null (``records.METRIC_KEYS``; a key given as None stores null, a key left out
        keeps the stored value). Arguments left at None keep the stored
        value (``charged`` too: False for a trial a graceful stop cut short, which then does
        not count against the budget). Artifacts of a kind already stored are replaced.
        """
        check_trial_status(status)
        values = cv.metric_values(metrics)
        if effective_spec is not None:
            effective_spec = cv.check_json("effective_spec", effective_spec)
        if deployment is not None:
            deployment = cv.check_json("deployment", deployment)
        if curve is not None:
            curve = cv.check_json("curve", curve, list)
        blobs = dict(artifacts or {})
        for kind in blobs:
            check_kind(kind)
        files = self._files
        if blobs:
            self.get_trial(job_id, index)  # fail before touching files in the common case
            files = self._job_files(self._recorded_dir(job_id))
        staged = files.stage(job_id, cv.check_index(index), blobs)
        try:
            with self._tx("finishing a trial") as s:
                row = trial_row(s, job_id, index)
                now = utcnow()
                row.status = status
                for key, value in values.items():
                    setattr(row, key, value)
                optional = {
                    "feasible": None if feasible is None else bool(feasible),
                    "charged": None if charged is None else bool(charged),
                    "error": error,
                    "train_seconds": cv.float_or_none("train_seconds", train_seconds),
                    "worker_pid": worker_pid,
                    "worker_host": worker_host,
                    "worker_node": worker_node,
                    "effective_spec": effective_spec,
                    "measured": None if measured is None else bool(measured),
                    "deployment": deployment,
                    "curve": curve,
                }
                for key, value in optional.items():
                    if value is not None:
                        setattr(row, key, value)
                if status in FINISHED_TRIAL_STATUSES:
                    row.finished_at = now
                _put_artifacts(s, row.id, staged, effective_spec, final=False)
                s.flush()
                files.publish(staged)  # last step before commit: only commit can fail
                info = cv.trial_info(row)
        except BaseException:
            files.undo(staged)
            raise
        files.discard_backups(staged)
        return info

    def set_final(
        self,
        job_id: str,
        index: int,
        final: dict[str, Any],
        *,
        artifacts: dict[str, bytes] | None = None,
        effective_spec: dict[str, Any] | None = None,
    ) -> TrialInfo:
        """Record a trial's final training (``final``: its status, epochs, metrics) and, when
        it completed, the final model's artifact files; all or nothing."""
        final = cv.check_json("final", final)
        blobs = dict(artifacts or {})
        for kind in blobs:
            check_kind(kind)
        self.get_trial(job_id, index)
        files = self._job_files(self._recorded_dir(job_id))
        staged = files.stage(job_id, cv.check_index(index), blobs, final=True)
        try:
            with self._tx("recording a final training") as s:
                row = trial_row(s, job_id, index)
                row.final = final
                _put_artifacts(s, row.id, staged, effective_spec, final=True)
                s.flush()
                files.publish(staged)
                info = cv.trial_info(row)
        except BaseException:
            files.undo(staged)
            raise
        files.discard_backups(staged)
        return info

    def _recorded_dir(self, job_id: str) -> str | None:
        with self._tx("reading a job's artifact folder") as s:
            return job_row(s, job_id).artifact_dir

    def fail_unfinished_trials(self, job_id: str, reason: str, *, charged: bool = True) -> int:
        """Mark the job's queued/running trials failed with ``reason``; return how many.

        ``charged``: whether they count against the job's budget. A graceful stop (Ctrl-C,
        SIGTERM, a scheduler shutting down) passes False: the trials were cut short on
        purpose and a resume trains others in their place. Trials lost to a crash (a stale
        holder, the driver's own start-of-run clean-up) stay charged, so a trial that crashes
        its worker cannot be retried without end."""
        with self._tx("failing unfinished trials") as s:
            job_row(s, job_id)
            result = s.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.status.in_(UNFINISHED_TRIAL_STATUSES))
                .values(status="failed", error=reason, finished_at=utcnow(), charged=bool(charged))
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)

    def uncharge_trials(self, job_id: str, indices: Iterable[int], *, error: str) -> int:
        """Make the job's failed trials ``indices`` count against no budget, with ``error`` as
        their reason; returns how many changed (trials in another status are left alone).

        For a finalize job resumed after a crash: the retrainings the crash lost are recorded
        but run again, under new indices (``search.finalize``)."""
        wanted = {cv.check_index(i) for i in indices}
        if not wanted:
            return 0
        with self._tx("uncharging trials") as s:
            job_row(s, job_id)
            result = s.execute(
                update(Trial)
                .where(Trial.job_id == job_id, Trial.index.in_(wanted), Trial.status == "failed")
                .values(charged=False, error=error)
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount)

    def get_trial(self, job_id: str, index: int) -> TrialInfo:
        with self._tx("reading a trial") as s:
            return cv.trial_info(trial_row(s, job_id, index))

    def list_trials(
        self,
        job_id: str,
        *,
        status: str | None = None,
        pareto: bool | None = None,
        sort: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[TrialInfo]:
        """The job's trials, by index unless ``sort`` (``queries.TRIAL_SORT_KEYS``, ``-`` for
        descending, NULLs last either way, ties by index); optionally filtered by ``status``
        and ``pareto``; ``limit=None`` = all."""
        cv.check_page(limit, offset)
        query = (
            select(Trial).where(*trial_filter(job_id, status, pareto)).order_by(*trial_order(sort))
        )
        if limit is not None:
            query = query.limit(limit)
        if offset:
            query = query.offset(offset)
        with self._tx("listing trials") as s:
            job_row(s, job_id)
            return [cv.trial_info(r) for r in s.scalars(query)]

    def trial_page(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        status: str | None = None,
        pareto: bool | None = None,
        sort: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[TrialInfo], int]:
        """One page of a job's trials and the total count (the API's hot path: one statement
        on the reader pool, ``queries.trial_page_query``). ``owner`` as in ``get_job``."""
        cv.check_page(limit, offset)
        with self._read("listing trials") as conn:
            return _page(conn, self.dialect, job_id, owner, status, pareto, sort, limit, offset)

    # -- the front (the trials flagged ``pareto`` by the search) ------------------------
    #
    # Each answer says the job's flash accounting (``vocabulary.ACCOUNTED_FLASH_FIELDS``):
    # the number its flash limit and front count is ``nnz_flash_bytes`` under ``sparse``,
    # while ``flash_bytes`` stays the dense size.

    def front(
        self, job_id: str, *, owner: str | None = None, sort: str | None = "-accuracy"
    ) -> tuple[str, list[TrialInfo]]:
        """The job's flash accounting and every trial on its front (most accurate first
        unless ``sort``), in one transaction. ``owner`` as in ``get_job``."""
        query = select(Trial).where(*trial_filter(job_id, None, True)).order_by(*trial_order(sort))
        with self._tx("listing the front") as s:
            accounting = flash_accounting_of(job_row(s, job_id, owner).config)
            return accounting, [cv.trial_info(r) for r in s.scalars(query)]

    def front_page(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        sort: str | None = "-accuracy",
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[TrialInfo], int, str]:
        """One page of the front, its total and the job's flash accounting (``trial_page``'s
        one statement after a primary-key read of the job's owner and accounting)."""
        cv.check_page(limit, offset)
        with self._read("listing the front") as conn:
            found = conn.execute(
                select(Job.owner, JOB_FLASH_ACCOUNTING).where(Job.id == job_id)
            ).first()
            if found is None or (owner is not None and found[0] != owner):
                raise job_missing(job_id)
            page = _page(conn, self.dialect, job_id, None, None, True, sort, limit, offset)
            return page[0], page[1], flash_accounting_of({"flash_accounting": found[1]})

    def best_front_trial(
        self,
        job_id: str,
        *,
        owner: str | None = None,
        max_flash: int | None = None,
        max_ram: int | None = None,
    ) -> tuple[str, TrialInfo | None]:
        """The job's flash accounting and its most accurate front trial (int8 accuracy where
        measured) whose *accounted*
        flash is at most ``max_flash`` and RAM at most ``max_ram`` (None: no such trial)."""
        with self._tx("finding the best front trial") as s:
            accounting = flash_accounting_of(job_row(s, job_id, owner).config)
            query = select(Trial).where(*trial_filter(job_id, None, True))
            if max_flash is not None:
                query = query.where(accounted_flash_column(accounting) <= max_flash)
            if max_ram is not None:
                query = query.where(Trial.ram_bytes <= max_ram)
            # Ranked by the accuracy that ships: int8 on TFLM where measured, else float.
            ranked = query.order_by(
                func.coalesce(Trial.int8_accuracy, Trial.accuracy).desc(), Trial.index
            )
            row = s.scalars(ranked.limit(1)).first()
            return accounting, None if row is None else cv.trial_info(row)

    def count_trials(
        self, job_id: str, *, status: str | None = None, pareto: bool | None = None
    ) -> int:
        query = select(func.count()).select_from(Trial).where(*trial_filter(job_id, status, pareto))
        with self._tx("counting trials") as s:
            job_row(s, job_id)
            return int(s.scalar(query) or 0)

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
        """The trial's artifacts: its search run's, then its final training's, by kind."""
        with self._tx("listing artifacts") as s:
            trial = trial_row(s, job_id, index)
            rows = s.scalars(
                select(Artifact)
                .where(Artifact.trial_id == trial.id)
                .order_by(Artifact.final, Artifact.kind)
            )
            return [cv.artifact_info(r, job_id, trial.index) for r in rows]

    def artifact_path(self, info: ArtifactInfo) -> Path:
        """Absolute path of an artifact's file (in this storage's folder if it holds it, else
        in the job's recorded one); refuses anything outside the artifact directory."""
        own = self._files
        if own.holds(info):
            return own.resolve(info.path)
        return self._job_files(self._recorded_dir(info.job_id)).resolve(info.path)

    def read_artifact(self, job_id: str, index: int, kind: str, *, final: bool = False) -> bytes:
        """The artifact's bytes (``final``: of the trial's final training), verified against
        the stored sha256."""
        with self._tx("reading an artifact") as s:
            trial = trial_row(s, job_id, index)
            row = s.scalars(
                select(Artifact).where(
                    Artifact.trial_id == trial.id,
                    Artifact.kind == kind,
                    Artifact.final.is_(bool(final)),
                )
            ).one_or_none()
            if row is None:
                raise missing_artifact(job_id, index, kind, final=final)
            info = cv.artifact_info(row, job_id, trial.index)
            recorded = job_row(s, job_id).artifact_dir
        return self._read_file(info, recorded)


def _put_artifacts(
    s: Any, trial_id: int, staged: list[Any], effective_spec: Any, *, final: bool
) -> None:
    """Insert or replace the artifact rows of ``staged`` files."""
    existing = {
        a.kind: a
        for a in s.scalars(
            select(Artifact).where(Artifact.trial_id == trial_id, Artifact.final.is_(final))
        )
    }
    now = utcnow()
    for item in staged:
        art = existing.get(item.kind) or Artifact(trial_id=trial_id, kind=item.kind, final=final)
        art.sha256, art.size_bytes, art.path = item.sha256, item.size_bytes, item.rel_path
        art.effective_spec, art.created_at = effective_spec, now
        s.add(art)


def _page(
    conn: Any,
    dialect: str,
    job_id: str,
    owner: str | None,
    status: str | None,
    pareto: bool | None,
    sort: str | None,
    limit: int,
    offset: int,
) -> tuple[list[TrialInfo], int]:
    """``Storage.trial_page`` on an open reader connection."""
    query = trial_page_query(dialect, sort, status, pareto, owner is not None)
    args = {"job_id": job_id, "limit": limit, "offset": offset, "owner": owner}
    # .all(): one fetchall; iterating a result fetches row by row (psycopg: ~1 ms a page)
    rows = conn.execute(query, args).all()
    if not rows:  # no such job (NotFoundError), or past the last page
        job_owned(conn, job_id, owner)
        count = select(func.count()).select_from(Trial)
        return [], int(conn.scalar(count.where(*trial_filter(job_id, status, pareto))) or 0)
    return [cv.trial_info_from_row(r) for r in rows], int(rows[0][-1])
