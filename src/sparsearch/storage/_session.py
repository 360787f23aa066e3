"""One transaction per repository call, and row lookups that raise NotFoundError."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import NotFoundError, StorageError
from ._convert import check_index
from .engine import CONNECT_HINT, first_line
from .models import Job, Trial
from .records import ConflictError

JOBS_HINT = "list jobs with `sparsearch jobs`"
_BUG_HINT = "the database may be at an older schema (run `sparsearch db upgrade`) or this is a bug"


@contextlib.contextmanager
def transaction(
    sessions: sessionmaker[Session], url: str, doing: str, *, conflict: str | None = None
) -> Iterator[Session]:
    """Commit on success; on failure roll back and raise the project's own errors.

    IntegrityError → ConflictError(conflict) when ``conflict`` is given; connection trouble
    → StorageError with a connection hint; other SQLAlchemy errors → StorageError.
    """
    session = sessions()
    try:
        yield session
        session.commit()
    except BaseException as e:
        with contextlib.suppress(SQLAlchemyError):
            session.rollback()
        raise _translated(e, url, doing, conflict) from e
    finally:
        session.close()


@contextlib.contextmanager
def reading(engine: Engine, url: str, doing: str) -> Iterator[Connection]:
    """A pooled Core connection for reads (no ORM session; the API's hot path), committed at
    the end in case a statement wrote; errors as in :func:`transaction`."""
    try:
        with engine.connect() as conn:
            yield conn
            conn.commit()
    except BaseException as e:
        raise _translated(e, url, doing, None) from e


def _translated(e: BaseException, url: str, doing: str, conflict: str | None) -> BaseException:
    if isinstance(e, IntegrityError) and conflict is not None:
        return ConflictError(conflict, "use another id or index")
    if isinstance(e, OperationalError):
        reason = first_line(e.orig or e)
        return StorageError(f"database {url} failed while {doing}: {reason}", CONNECT_HINT)
    if isinstance(e, SQLAlchemyError):
        reason = first_line(getattr(e, "orig", None) or e)
        return StorageError(f"database error while {doing}: {reason}", _BUG_HINT)
    return e


def job_missing(job_id: str) -> NotFoundError:
    return NotFoundError(f"job {job_id!r} does not exist", JOBS_HINT)


def job_row(s: Session, job_id: str, owner: str | None = None) -> Job:
    """The job's row; with ``owner``, another owner's job is missing too (same message)."""
    row = s.get(Job, job_id)
    if row is None or (owner is not None and row.owner != owner):
        raise job_missing(job_id)
    return row


def job_owned(s: Session | Connection, job_id: str, owner: str | None = None) -> None:
    """Raise like ``job_row`` unless the job exists (and is ``owner``'s), reading one column
    instead of loading the ORM row (the API's hot read path)."""
    found = s.execute(select(Job.owner).where(Job.id == job_id)).first()
    if found is None or (owner is not None and found.owner != owner):
        raise job_missing(job_id)


def trial_row(s: Session, job_id: str, index: int) -> Trial:
    row = s.scalars(
        select(Trial).where(Trial.job_id == job_id, Trial.index == check_index(index))
    ).one_or_none()
    if row is None:
        job_row(s, job_id)
        raise NotFoundError(
            f"job {job_id} has no trial {index}",
            f"list its front with `sparsearch pareto {job_id}`",
        )
    return row
