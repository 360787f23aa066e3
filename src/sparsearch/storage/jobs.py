"""Jobs: create, read, list, status changes, cancel and delete (part of ``Storage``).

Ownership: methods taking ``owner=`` treat another owner's job exactly like a missing one
(``NotFoundError``, same message), so callers never learn that it exists. ``owner=None``
means no restriction (the local CLI, the scheduler, admins).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from ..vocabulary import (
    ACTIVE_JOB_STATUSES,
    BUDGET_TRIAL_STATUSES,
    CANCELLABLE_AT_ONCE,
    FINISHED_JOB_STATUSES,
    UNFINISHED_JOB_STATUSES,
)
from . import _convert as cv
from ._base import StorageBase
from ._session import job_missing, job_row
from .models import Job, JobClaim, Trial, utcnow
from .queries import job_order
from .records import ConflictError, JobInfo, check_job_status


class JobsMixin(StorageBase):
    def create_job(
        self,
        *,
        dataset: str,
        config: dict[str, Any],
        job_id: str | None = None,
        owner: str = "local",
        max_active: int | None = None,
        scheduler_id: str | None = None,
    ) -> JobInfo:
        """A new queued job. ValueError for a bad id, owner or non-JSON config;
        ConflictError if ``job_id`` exists.

        ``scheduler_id``: the job is created ``running`` under that holder instead, with a
        heartbeat and its first claim recorded (a local ``sparsearch search`` runs the job it
        creates: no scheduler may claim it first).

        ``max_active``: the owner's quota of unfinished jobs; a ``QuotaError`` (a
        ConflictError) when the owner already has that many.

        A finalize job (``config["finalize"]``) is refused with a ``FinalizeConflictError``
        (a ConflictError naming the other job) while a trial it retrains is being finalized
        by an unfinished finalize job (queued, running or interrupted): two finalizes of one
        trial would both write its final result. Once that job settled, the trial can be
        finalized again.

        Both checks and the insert are one atomic step, so concurrent submissions never get
        past them together: the transaction first takes locks on the owner and on the job
        whose trials are finalized (PostgreSQL: transaction-scoped advisory locks keyed on
        them; SQLite: the database's write lock, ``BEGIN IMMEDIATE``), then reads.
        """
        job_id = cv.check_job_id(job_id) if job_id is not None else uuid.uuid4().hex[:12]
        owner = cv.check_owner(owner)
        config = cv.check_json("config", config)
        if max_active is not None and (isinstance(max_active, bool) or max_active < 0):
            raise ValueError(f"max_active must be a non-negative integer, got {max_active!r}")
        finalizing = _finalized_trials(config)
        with self._tx("creating a job", conflict=f"job {job_id} already exists") as s:
            quota_owner = owner if max_active is not None else None
            _lock(s, owner=quota_owner, source=finalizing[0] if finalizing else None)
            if finalizing:
                _refuse_finalizing(s, *finalizing)
            if max_active is not None:
                active = int(s.scalar(_active_count(owner)) or 0)
                if active >= max_active:
                    raise QuotaError(
                        f"owner {owner} already has {active} active jobs (the cap is {max_active})",
                        "wait for one to finish or cancel one",
                    )
            row = Job(
                id=job_id,
                status="queued",
                dataset=str(dataset),
                config=config,
                owner=owner,
                artifact_dir=str(self._files.root),
            )
            if scheduler_id is not None:
                now = utcnow()
                row.status, row.started_at = "running", now
                row.scheduler_id, row.heartbeat_at = scheduler_id, now
                s.add(
                    JobClaim(
                        job_id=job_id,
                        scheduler_id=scheduler_id,
                        previous_status="queued",
                        claimed_at=now,
                    )
                )
            s.add(row)
            s.flush()
            return cv.job_info(row)

    def get_job(self, job_id: str, *, owner: str | None = None) -> JobInfo:
        with self._tx("reading a job") as s:
            return cv.job_info(job_row(s, job_id, owner))

    def list_jobs(
        self,
        *,
        owner: str | None = None,
        status: str | None = None,
        sort: str = "-created_at",
        limit: int = 50,
        offset: int = 0,
    ) -> list[JobInfo]:
        """A page of jobs (default newest first); see ``queries.JOB_SORT_KEYS``."""
        cv.check_page(limit, offset)
        query = _filtered(select(Job), owner, status).order_by(*job_order(sort))
        with self._tx("listing jobs") as s:
            return [cv.job_info(r) for r in s.scalars(query.limit(limit).offset(offset))]

    def count_jobs(self, status: str | None = None, *, owner: str | None = None) -> int:
        query = _filtered(select(func.count()).select_from(Job), owner, status)
        with self._tx("counting jobs") as s:
            return int(s.scalar(query) or 0)

    def count_active_jobs(self, owner: str) -> int:
        """The owner's queued, running and interrupted jobs (what ``create_job(max_active=)``
        counts; to enforce the quota, pass that instead of counting first)."""
        with self._tx("counting active jobs") as s:
            return int(s.scalar(_active_count(owner)) or 0)

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

    def update_job_summary(
        self,
        job_id: str,
        *,
        hypervolume: float | None,
        best_accuracy: float | None,
        screened: int | None = None,
        trained: int | None = None,
    ) -> JobInfo:
        """Set the job's front summary; ``screened`` (candidates the screen rejected by
        estimate, a running total) is kept when None.

        With ``trained`` (the job's trials counted against its budget) and a hypervolume,
        ``[trained, hypervolume, best_accuracy]`` also goes on the job's hypervolume trace:
        appended, or replacing the entries at that count or above (a resumed job refreshes
        again at the same count; a re-measured front replaces its numbers). The trace so holds
        at most one entry per trained count, at most the job's budget + ``TRACE_SLACK``."""
        count = cv.int_or_none("screened", screened)
        if count is not None and count < 0:
            raise ValueError(f"screened must be >= 0, not {count}")
        at = cv.int_or_none("trained", trained)
        if at is not None and at < 0:
            raise ValueError(f"trained must be >= 0, not {at}")
        hv = cv.float_or_none("hypervolume", hypervolume)
        best = cv.float_or_none("best_accuracy", best_accuracy)
        with self._tx("updating a job summary") as s:
            row = job_row(s, job_id)
            row.hypervolume = hv
            row.best_accuracy = best
            if count is not None:
                row.screened = count
            if at is not None and hv is not None:
                row.hypervolume_trace = _traced(row.hypervolume_trace, [at, hv, best], row.config)
            row.updated_at = utcnow()
            s.flush()
            return cv.job_info(row)

    def hypervolume_trace(
        self, job_id: str, *, owner: str | None = None
    ) -> list[tuple[int, float, float | None]]:
        """The job's ``(trained, hypervolume, best_accuracy)`` after each refresh of its front,
        by trained count (``[]`` before the first); ``owner`` as in ``get_job``. One
        primary-key read."""
        with self._read("reading a hypervolume trace") as conn:
            found = conn.execute(
                select(Job.owner, Job.hypervolume_trace).where(Job.id == job_id)
            ).first()
        if found is None or (owner is not None and found.owner != owner):
            raise job_missing(job_id)
        return [
            (int(at), float(hv), None if best is None else float(best))
            for at, hv, best in found.hypervolume_trace or []
        ]

    def request_cancel(self, job_id: str, *, owner: str | None = None) -> JobInfo:
        """Cancel a job: queued/interrupted → ``cancelled`` now; running → ``cancel_requested``
        (its driver stops and sets ``cancelled``; asking again is fine).

        NotFoundError if missing (or another owner's); ConflictError if already finished.
        """
        with self._tx("cancelling a job") as s:
            # Conditional updates, so a concurrent claim or finish cannot slip in between.
            for _ in range(3):
                now = utcnow()
                at_once = {"status": "cancelled", "finished_at": now}
                flag = {"cancel_requested": True, "updated_at": now}
                if _update(s, job_id, owner, CANCELLABLE_AT_ONCE, **at_once, **flag):
                    break
                if _update(s, job_id, owner, ("running",), **flag):
                    break
                row = job_row(s, job_id, owner)
                s.refresh(row)
                if row.status in FINISHED_JOB_STATUSES:
                    raise ConflictError(
                        f"job {job_id} is already {row.status}",
                        "only queued, running or interrupted jobs can be cancelled; "
                        "delete the job if it is no longer needed",
                    )
            return cv.job_info(s.get_one(Job, job_id, populate_existing=True))

    def delete_job(self, job_id: str, *, owner: str | None = None) -> None:
        """Delete the job, its trials and artifact rows, then its artifact folder.

        NotFoundError if missing (or another owner's); ConflictError if it is running.
        """
        with self._tx("deleting a job") as s:
            recorded = s.scalar(select(Job.artifact_dir).where(Job.id == job_id))
            query = delete(Job).where(Job.id == job_id, Job.status != "running")
            if owner is not None:
                query = query.where(Job.owner == owner)
            if s.execute(query).rowcount == 0:
                job_row(s, job_id, owner)  # NotFoundError, else it is running
                raise ConflictError(
                    f"job {job_id} is running",
                    "cancel it first, and delete it once it has stopped",
                )
        self._files.remove_job(job_id)
        self._job_files(recorded).remove_job(job_id)

    def trial_counts(self, job_ids: list[str]) -> dict[str, dict[str, int]]:
        """Per job id, its number of trials by status (``{}`` for a job without trials or an
        unknown id), in one query. ``completed`` and ``failed`` count charged trials only, so
        their sum is what counts against the budget; completed or failed trials that are not
        charged (cut short by a graceful stop) are counted as ``uncharged`` instead, and
        ``over_limit`` counts the completed ones over a limit as measured (each key is there
        only when there are some)."""
        ids = list(dict.fromkeys(job_ids))
        counts: dict[str, dict[str, int]] = {job_id: {} for job_id in ids}
        if not ids:
            return counts
        query = (
            select(Trial.job_id, Trial.status, Trial.charged, Trial.feasible, func.count())
            .where(Trial.job_id.in_(ids))
            .group_by(Trial.job_id, Trial.status, Trial.charged, Trial.feasible)
        )
        with self._tx("counting trials") as s:
            for job_id, status, charged, feasible, n in s.execute(query):
                key = status if charged or status not in BUDGET_TRIAL_STATUSES else "uncharged"
                of_job = counts[job_id]
                of_job[key] = of_job.get(key, 0) + int(n)
                if key == "completed" and not feasible:  # over a limit as measured
                    of_job["over_limit"] = of_job.get("over_limit", 0) + int(n)
        return counts


#: Entries a hypervolume trace may hold beyond its job's budget (trained counts run from 0 to
#: the budget; a job whose config has no budget is bounded as if its budget were 1000).
TRACE_SLACK = 8
_UNBUDGETED_TRACE = 1000


def _traced(trace: list[list[Any]] | None, entry: list[Any], config: dict[str, Any]) -> list[Any]:
    """``trace`` with ``entry`` in place of its entries at ``entry``'s trained count or above,
    trimmed to the oldest entries that fit the bound (a new list: the JSON column only saves
    on assignment)."""
    kept = [e for e in trace or [] if e[0] < entry[0]]
    budget = (config.get("budget") or {}).get("trials")
    cap = budget if isinstance(budget, int) and budget >= 0 else _UNBUDGETED_TRACE
    return [*kept[: cap + TRACE_SLACK - 1], entry]


class QuotaError(ConflictError):
    """The owner already has as many unfinished jobs as ``create_job(max_active=)`` allows."""


class FinalizeConflictError(ConflictError):
    """A trial chosen for a finalize job is being finalized by another, unfinished one."""


#: First key of the PostgreSQL advisory locks on an owner's job quota ("jobs" in ASCII); the
#: second is a hash of the owner. The two-key form never collides with the migrations'
#: one-key lock.
PG_QUOTA_LOCK_SPACE = 0x6A6F6273
#: First key of the advisory locks on finalizing a job's trials ("fina"); the second is a hash
#: of the job whose trials are finalized.
PG_FINALIZE_LOCK_SPACE = 0x66696E61


def _active_count(owner: str) -> Any:
    return (
        select(func.count())
        .select_from(Job)
        .where(Job.owner == owner, Job.status.in_(UNFINISHED_JOB_STATUSES))
    )


def _lock(s: Session, *, owner: str | None, source: str | None) -> None:
    """Serialize quota checks of ``owner`` and finalize checks of job ``source``'s trials (each
    when given) until the transaction ends. Must be the transaction's first statement: on
    SQLite, so that no read runs outside the write lock; on PostgreSQL (READ COMMITTED), so
    that the reads after it see what the previous holder committed."""
    if owner is None and source is None:
        return
    if s.get_bind().dialect.name == "postgresql":
        # Always quota first, then finalize: two transactions never wait on each other.
        for space, name in ((PG_QUOTA_LOCK_SPACE, owner), (PG_FINALIZE_LOCK_SPACE, source)):
            if name is not None:
                key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big", signed=True)
                s.execute(
                    text("SELECT pg_advisory_xact_lock(:space, :key)"),
                    {"space": space, "key": key},
                )
    else:
        # pysqlite opens a deferred transaction only before a write, so the reads would run
        # outside it; an explicit BEGIN IMMEDIATE takes the write lock first (waiting up to
        # the busy timeout for other writers).
        s.execute(text("BEGIN IMMEDIATE"))


def _finalized_trials(config: dict[str, Any]) -> tuple[str, frozenset[int]] | None:
    """The job and trials a finalize job's config retrains; None for any other job."""
    plan = config.get("finalize")
    if not isinstance(plan, dict) or not isinstance(plan.get("job_id"), str):
        return None
    return plan["job_id"], frozenset(int(i) for i in plan.get("trials") or ())


def _refuse_finalizing(s: Session, source: str, trials: frozenset[int]) -> None:
    """FinalizeConflictError if an unfinished finalize job retrains one of ``trials`` of job
    ``source`` (the oldest such job is named)."""
    query = (
        select(Job.id, Job.status, Job.config)
        .where(
            Job.status.in_(UNFINISHED_JOB_STATUSES),
            Job.config[("finalize", "job_id")].as_string() == source,
        )
        .order_by(Job.created_at, Job.id)
    )
    for other, status, config in s.execute(query):
        found = _finalized_trials(config)
        busy = sorted(trials & found[1]) if found else []
        if not busy:
            continue
        which = (
            f"trial {busy[0]} of job {source} is"
            if len(busy) == 1
            else f"trials {', '.join(map(str, busy))} of job {source} are"
        )
        raise FinalizeConflictError(
            f"{which} being finalized by job {other}, which is {status}",
            f"wait for job {other} to end (`sparsearch status {other}`), or cancel it "
            f"(`sparsearch cancel {other}`, or POST /v1/jobs/{other}/cancel), then finalize "
            "again",
        )


def _filtered(query: Any, owner: str | None, status: str | None) -> Any:
    if owner is not None:
        query = query.where(Job.owner == owner)
    if status is not None:
        query = query.where(Job.status == check_job_status(status))
    return query


def _update(
    s: Session, job_id: str, owner: str | None, statuses: tuple[str, ...], **values: Any
) -> bool:
    """UPDATE the job if it is in ``statuses`` (and the owner's); whether a row changed."""
    query = update(Job).where(Job.id == job_id, Job.status.in_(statuses))
    if owner is not None:
        query = query.where(Job.owner == owner)
    result = s.execute(query.values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1
