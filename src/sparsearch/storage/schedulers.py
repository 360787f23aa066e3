"""Schedulers: registration and heartbeats, claiming jobs, per-job heartbeats and cancel flags
(part of ``Storage``).

Timestamps come from the writing process's clock (UTC): schedulers on several hosts need
roughly synchronised clocks for ``scheduler_state`` and ``interrupt_stale_jobs``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from ..vocabulary import FINISHED_JOB_STATUSES
from . import _convert as cv
from ._base import StorageBase
from ._session import job_missing
from .models import Job, JobClaim, Scheduler, Trial, utcnow
from .records import (
    HOLDER_KINDS,
    UNFINISHED_TRIAL_STATUSES,
    ClaimInfo,
    ConflictError,
    JobInfo,
    check_job_status,
)

_SCHEDULER_HINT = "restart the scheduler so that it registers again"


def _scheduler_missing(scheduler_id: str) -> NotFoundError:
    return NotFoundError(f"scheduler {scheduler_id!r} is not registered", _SCHEDULER_HINT)


class HeldError(ConflictError):
    """The job is running under another holder that is alive (its heartbeat is fresh): a
    scheduler, or a local ``sparsearch search``."""


class SchedulersMixin(StorageBase):
    def register_scheduler(self, *, host: str, pid: int, kind: str = "scheduler") -> str:
        """Record a starting process that holds jobs; returns its id: ``host:pid:random`` for a
        scheduler, ``cli:host:pid:random`` for a local ``sparsearch search`` (``kind`` "cli",
        which ``scheduler_state`` does not count)."""
        host = cv.check_name(host, what="host", max_len=255)
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
            raise ValueError(f"pid must be an integer >= 0, not {pid!r}")
        if kind not in HOLDER_KINDS:
            raise ValueError(f"unknown holder kind {kind!r}; expected one of {HOLDER_KINDS}")
        prefix = "" if kind == "scheduler" else f"{kind}:"
        scheduler_id = f"{prefix}{host[:100]}:{pid}:{secrets.token_hex(4)}"
        with self._tx("registering a scheduler", conflict="scheduler id collision") as s:
            now = utcnow()
            s.add(
                Scheduler(
                    id=scheduler_id, kind=kind, host=host, pid=pid, started_at=now, heartbeat_at=now
                )
            )
        return scheduler_id

    def beat_scheduler(self, scheduler_id: str) -> None:
        """Record that the scheduler is alive. NotFoundError if it is not registered."""
        with self._tx("recording a scheduler heartbeat") as s:
            result = s.execute(
                update(Scheduler).where(Scheduler.id == scheduler_id).values(heartbeat_at=utcnow())
            )
            if result.rowcount == 0:
                raise _scheduler_missing(scheduler_id)

    def stop_scheduler(self, scheduler_id: str) -> None:
        """Mark the scheduler stopped (idempotent). NotFoundError if it is not registered."""
        with self._tx("stopping a scheduler") as s:
            row = s.get(Scheduler, scheduler_id)
            if row is None:
                raise _scheduler_missing(scheduler_id)
            if row.stopped_at is None:
                row.stopped_at = utcnow()

    def scheduler_state(self, *, stale_after: float) -> str:
        """``running`` if a scheduler that has not stopped beat within ``stale_after`` seconds,
        ``stale`` if schedulers are registered as running but all beats are older, else
        ``none``."""
        # The newest row rather than max(): aggregates lose the UTC column type on SQLite.
        query = (
            select(Scheduler.heartbeat_at)
            .where(Scheduler.stopped_at.is_(None), Scheduler.kind == "scheduler")
            .order_by(Scheduler.heartbeat_at.desc())
            .limit(1)
        )
        with self._tx("reading scheduler heartbeats") as s:
            latest = s.scalar(query)
        if latest is None:
            return "none"
        age = (utcnow() - latest).total_seconds()
        return "running" if age <= stale_after else "stale"

    def claim_next_job(
        self, statuses: Iterable[str] = ("queued",), *, scheduler_id: str | None = None
    ) -> JobInfo | None:
        """Atomically move the oldest job in ``statuses`` to running; None if there is none.

        Safe with several schedulers: a job is claimed by exactly one caller. Sets the job's
        ``scheduler_id`` and ``heartbeat_at``. An interrupted job whose cancel was requested
        is cancelled instead of claimed.
        """
        wanted = [check_job_status(s) for s in statuses]
        with self._tx("claiming a job") as s:
            self._cancel_requested_unclaimed(s, wanted)
            query = (
                select(Job.id, Job.status)
                .where(Job.status.in_(wanted), Job.cancel_requested.is_(False))
                .order_by(Job.created_at, Job.id)
            )
            if self.dialect == "postgresql":
                query = query.limit(1).with_for_update(skip_locked=True)
            else:  # SQLite serialises writers; the conditional UPDATE decides.
                query = query.limit(10)
            for job_id, previous in s.execute(query).all():
                if _claim(s, job_id, previous, scheduler_id):
                    return cv.job_info(s.get_one(Job, job_id, populate_existing=True))
            return None

    def list_claims(self, job_id: str) -> list[ClaimInfo]:
        """Every claim of the job, oldest first (who ran it, resumed it or took it over)."""
        with self._tx("reading a job's claims") as s:
            rows = s.scalars(
                select(JobClaim).where(JobClaim.job_id == job_id).order_by(JobClaim.id)
            ).all()
            return [
                ClaimInfo(
                    job_id=r.job_id,
                    scheduler_id=r.scheduler_id,
                    previous_status=r.previous_status,
                    claimed_at=r.claimed_at,
                )
                for r in rows
            ]

    def beat_job(self, job_id: str, scheduler_id: str) -> bool:
        """Record that ``scheduler_id`` still runs the job. False if the job is gone, no longer
        running, or now claimed by another scheduler: its driver should stop."""
        with self._tx("recording a job heartbeat") as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.scheduler_id == scheduler_id, Job.status == "running")
                # Keep updated_at: a heartbeat is not a change of the job.
                .values(heartbeat_at=utcnow(), updated_at=Job.updated_at)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount == 1

    def holds_job(self, job_id: str, scheduler_id: str) -> bool:
        """Whether the job is ``running`` under ``scheduler_id`` (a read, unlike ``beat_job``).
        False once another scheduler took it over, or when it ended or is gone."""
        with self._tx("reading a job's scheduler") as s:
            row = s.execute(select(Job.status, Job.scheduler_id).where(Job.id == job_id)).first()
        return row is not None and row.status == "running" and row.scheduler_id == scheduler_id

    def is_cancel_requested(self, job_id: str) -> bool:
        """Whether a user asked to cancel the job. NotFoundError if it does not exist."""
        with self._tx("reading a job's cancel flag") as s:
            flag = s.scalar(select(Job.cancel_requested).where(Job.id == job_id))
            if flag is None:
                raise job_missing(job_id)
            return bool(flag)

    def interrupt_stale_jobs(self, *, stale_after: float) -> list[str]:
        """Mark running jobs whose holder has not beaten for them within ``stale_after``
        seconds as ``interrupted`` (so any scheduler can resume them); returns their ids.
        Their in-flight trials died with the holder: failed ("scheduler lost") and charged.

        Jobs run without a holder (``scheduler_id`` None: a ``sparsearch search`` of a version
        before holders) are never touched.
        """
        cutoff = utcnow() - timedelta(seconds=float(stale_after))
        done: list[str] = []
        with self._tx("interrupting stale jobs") as s:
            for (job_id,) in s.execute(
                select(Job.id).where(*_stale(cutoff)).order_by(Job.id)
            ).all():
                if _interrupt_stale(s, job_id, cutoff):
                    done.append(job_id)
        return done

    def claim_job(self, job_id: str, *, scheduler_id: str, stale_after: float) -> JobInfo:
        """Claim one job by id for ``scheduler_id`` (``sparsearch search --resume``), as
        ``claim_next_job`` would: running, its holder and heartbeat set, the claim recorded.

        A queued or interrupted job is claimed; a running one only if its holder is gone: its
        heartbeat is older than ``stale_after`` seconds (it is first interrupted as
        ``interrupt_stale_jobs`` does, its in-flight trials failed "scheduler lost"), or it has
        no holder at all. NotFoundError if it does not exist; ``HeldError`` naming the holder
        (id, kind, host, pid, heartbeat age) while one is alive; ConflictError if the job has
        finished, or had a cancel requested (it is then cancelled instead of claimed).
        """
        cutoff = utcnow() - timedelta(seconds=float(stale_after))
        refusal: ConflictError | None = None
        with self._tx("claiming a job") as s:
            if self.dialect == "sqlite":
                # The write lock before the first read: the read and the update below cannot be
                # split by another writer (whose commit would make this one fail).
                s.execute(text("BEGIN IMMEDIATE"))
            for _ in range(3):
                row = s.execute(
                    select(
                        Job.status, Job.scheduler_id, Job.heartbeat_at, Job.cancel_requested
                    ).where(Job.id == job_id)
                ).first()
                if row is None:
                    raise job_missing(job_id)
                status = row.status
                if status in FINISHED_JOB_STATUSES:
                    refusal = ConflictError(
                        f"job {job_id} is already {status}",
                        "only queued, running or interrupted jobs can run; start a new search",
                    )
                    break
                if status == "running" and row.scheduler_id == scheduler_id:
                    break  # ours already
                if status == "running" and row.scheduler_id is not None:
                    if _fresh(row.heartbeat_at, cutoff):
                        refusal = HeldError(*_held(s, job_id, row.scheduler_id, row.heartbeat_at))
                        break
                    if not _interrupt_stale(s, job_id, cutoff):
                        continue  # it beat, or changed hands, meanwhile: look again
                    status = "interrupted"
                if row.cancel_requested and status != "running":
                    now = utcnow()
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.status == status)
                        .values(status="cancelled", finished_at=now, updated_at=now)
                        .execution_options(synchronize_session=False)
                    )
                    refusal = ConflictError(
                        f"job {job_id} was cancelled (a cancel was requested)",
                        "start a new search instead",
                    )
                    break
                if _claim(s, job_id, status, scheduler_id, unheld=status == "running"):
                    break
            else:
                raise ConflictError(
                    f"job {job_id} kept changing hands while it was being claimed",
                    "try again",
                )
            info = None if refusal else cv.job_info(s.get_one(Job, job_id, populate_existing=True))
        if refusal is not None:
            raise refusal
        assert info is not None
        return info

    @staticmethod
    def _cancel_requested_unclaimed(s: Session, wanted: list[str]) -> None:
        """Cancel not-running jobs in ``wanted`` whose cancel was requested (a running job
        with a request that was interrupted before its driver saw it)."""
        states = [w for w in wanted if w != "running"]
        pending = select(Job.id).where(Job.status.in_(states), Job.cancel_requested.is_(True))
        if not states or s.scalar(pending.limit(1)) is None:
            return  # the common case: no write
        now = utcnow()
        s.execute(
            update(Job)
            .where(Job.status.in_(states), Job.cancel_requested.is_(True))
            .values(status="cancelled", finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )


def _stale(cutoff: datetime) -> tuple[object, ...]:
    """WHERE terms: a running job whose holder last beat for it before ``cutoff``."""
    return (
        Job.status == "running",
        Job.scheduler_id.is_not(None),
        Job.heartbeat_at.is_not(None),
        Job.heartbeat_at < cutoff,
    )


def _fresh(heartbeat_at: datetime | None, cutoff: datetime) -> bool:
    return heartbeat_at is not None and heartbeat_at >= cutoff


def _interrupt_stale(s: Session, job_id: str, cutoff: datetime) -> bool:
    """Interrupt the job if it is still stale (a conditional update); its in-flight trials
    died with their holder: failed "scheduler lost", charged, never re-run."""
    now = utcnow()
    holder = s.scalar(select(Job.scheduler_id).where(Job.id == job_id))
    result = s.execute(
        update(Job)
        .where(Job.id == job_id, *_stale(cutoff))
        .values(
            status="interrupted",
            error=f"scheduler {holder} stopped sending heartbeats",
            finished_at=now,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    s.execute(
        update(Trial)
        .where(Trial.job_id == job_id, Trial.status.in_(UNFINISHED_TRIAL_STATUSES))
        .values(status="failed", error="scheduler lost", finished_at=now, charged=True)
        .execution_options(synchronize_session=False)
    )
    return True


def _claim(
    s: Session, job_id: str, previous: str, scheduler_id: str | None, *, unheld: bool = False
) -> bool:
    """Move the job from ``previous`` to running under ``scheduler_id`` and record the claim
    (a conditional update: False if it is no longer ``previous``, or, with ``unheld``, has
    got a holder meanwhile)."""
    now = utcnow()
    query = update(Job).where(Job.id == job_id, Job.status == previous)
    if unheld:  # a run without a holder (an older `sparsearch search`)
        query = query.where(Job.scheduler_id.is_(None))
    result = s.execute(
        query.values(
            status="running",
            error=None,
            started_at=func.coalesce(Job.started_at, now),
            finished_at=None,
            updated_at=now,
            scheduler_id=scheduler_id,
            heartbeat_at=now,
        ).execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    s.add(
        JobClaim(job_id=job_id, scheduler_id=scheduler_id, previous_status=previous, claimed_at=now)
    )
    return True


def _held(s: Session, job_id: str, holder: str, heartbeat_at: datetime | None) -> tuple[str, str]:
    """The message and hint of a HeldError: who holds the job, as stored."""
    row = s.get(Scheduler, holder)
    age = "" if heartbeat_at is None else f"; last heartbeat {_age(heartbeat_at)} ago"
    if row is None:
        who = f"holder {holder}"
    else:
        what = "a local `sparsearch search`" if row.kind == "cli" else "a scheduler"
        who = f"{what} ({holder}: pid {row.pid} on host {row.host}"
        who += "; stopped)" if row.stopped_at is not None else ")"
    message = f"job {job_id} is running under {who}{age}"
    hint = (
        f"wait for it to end, or cancel it (`POST /v1/jobs/{job_id}/cancel`, or `sparsearch "
        f"cancel {job_id}` on this database); if that process is dead, the job can be resumed "
        "once its heartbeat is older than SPARSEARCH_STALE_AFTER_SECONDS"
    )
    return message, hint


def _age(when: datetime) -> str:
    seconds = max(0.0, (utcnow() - when).total_seconds())
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
