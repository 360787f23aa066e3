"""Schedulers: registration and heartbeats, claiming jobs, per-job heartbeats and cancel flags
(part of ``Storage``).

Timestamps come from the writing process's clock (UTC): schedulers on several hosts need
roughly synchronised clocks for ``scheduler_state`` and ``interrupt_stale_jobs``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..errors import NotFoundError
from . import _convert as cv
from ._base import StorageBase
from ._session import job_missing
from .models import Job, JobClaim, Scheduler, Trial, utcnow
from .records import ClaimInfo, JobInfo, check_job_status

_SCHEDULER_HINT = "restart the scheduler so that it registers again"


def _scheduler_missing(scheduler_id: str) -> NotFoundError:
    return NotFoundError(f"scheduler {scheduler_id!r} is not registered", _SCHEDULER_HINT)


class SchedulersMixin(StorageBase):
    def register_scheduler(self, *, host: str, pid: int) -> str:
        """Record a starting scheduler process; returns its id (``host:pid:random``)."""
        host = cv.check_name(host, what="host", max_len=255)
        if isinstance(pid, bool) or not isinstance(pid, int) or pid < 0:
            raise ValueError(f"pid must be an integer >= 0, not {pid!r}")
        scheduler_id = f"{host[:100]}:{pid}:{secrets.token_hex(4)}"
        with self._tx("registering a scheduler", conflict="scheduler id collision") as s:
            now = utcnow()
            s.add(Scheduler(id=scheduler_id, host=host, pid=pid, started_at=now, heartbeat_at=now))
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
            .where(Scheduler.stopped_at.is_(None))
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
                        scheduler_id=scheduler_id,
                        heartbeat_at=now,
                    )
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:
                    s.add(
                        JobClaim(
                            job_id=job_id,
                            scheduler_id=scheduler_id,
                            previous_status=previous,
                            claimed_at=now,
                        )
                    )
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
        """Mark running jobs whose scheduler has not beaten for them within ``stale_after``
        seconds as ``interrupted`` (so any scheduler can resume them); returns their ids.

        Jobs run without a scheduler (``scheduler_id`` None, e.g. a local ``sparsearch
        search``) are never touched.
        """
        cutoff = utcnow() - timedelta(seconds=float(stale_after))
        stale = (
            Job.status == "running",
            Job.scheduler_id.is_not(None),
            Job.heartbeat_at.is_not(None),
            Job.heartbeat_at < cutoff,
        )
        done: list[str] = []
        with self._tx("interrupting stale jobs") as s:
            for job_id, owner_scheduler in s.execute(
                select(Job.id, Job.scheduler_id).where(*stale).order_by(Job.id)
            ).all():
                now = utcnow()
                error = f"scheduler {owner_scheduler} stopped sending heartbeats"
                result = s.execute(
                    update(Job)
                    .where(Job.id == job_id, *stale)
                    .values(status="interrupted", error=error, finished_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
                if result.rowcount == 1:
                    # Its in-flight trials died with the scheduler: failed, counted, never re-run.
                    s.execute(
                        update(Trial)
                        .where(Trial.job_id == job_id, Trial.status.in_(("queued", "running")))
                        .values(status="failed", error="scheduler lost", finished_at=now)
                        .execution_options(synchronize_session=False)
                    )
                    done.append(job_id)
        return done

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
