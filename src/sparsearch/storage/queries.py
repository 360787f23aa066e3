"""Sort keys for job and trial listings, as portable ORDER BY clauses.

A sort is a key with an optional ``-`` prefix for descending (``-accuracy``). NULLs come last
in both directions on every backend (an ``IS NULL`` term first, instead of ``NULLS LAST``;
the objectives' sort indexes in ``models`` index that same expression),
and ties are broken by a unique column so pages never overlap or skip rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from sqlalchemy import ARRAY, Integer, Select, any_, bindparam, case, cast, func, select
from sqlalchemy.sql.elements import ColumnElement

from ..vocabulary import JOB_STATUSES, TARGET_METRICS, accounted_flash_field
from .models import Job, Trial
from .records import TrialInfo, check_trial_status

#: Keys ``list_jobs(sort=...)`` accepts (each also with a ``-`` prefix).
JOB_SORT_KEYS: tuple[str, ...] = ("created_at", "status", "hypervolume", "best_accuracy", "id")
#: Keys ``list_trials(sort=...)`` accepts (each also with a ``-`` prefix).
TRIAL_SORT_KEYS: tuple[str, ...] = (
    "index",
    "accuracy",
    "test_accuracy",
    "int8_accuracy",
    "int8_test_accuracy",
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "macs",
    "train_seconds",
    "gen_seconds",
    "export_seconds",
    # both deployment targets' measured numbers (vocabulary.TARGET_METRICS)
    *TARGET_METRICS,
)

# Statuses sort in lifecycle order (queued first), not alphabetically.
_STATUS_RANK = case(
    {s: i for i, s in enumerate(JOB_STATUSES)}, value=Job.status, else_=len(JOB_STATUSES)
)
_JOB_COLUMNS: dict[str, Any] = {
    "created_at": Job.created_at,
    "status": _STATUS_RANK,
    "hypervolume": Job.hypervolume,
    "best_accuracy": Job.best_accuracy,
    "id": Job.id,
}
_NULLABLE = {"hypervolume", "best_accuracy", *TRIAL_SORT_KEYS[1:]}


def parse_sort(sort: str, allowed: tuple[str, ...], what: str) -> tuple[str, bool]:
    """``"-macs"`` → ``("macs", True)``; an unknown key is a ValueError listing ``allowed``."""
    descending = isinstance(sort, str) and sort.startswith("-")
    key = sort[1:] if descending else sort
    if not isinstance(key, str) or key not in allowed:
        raise ValueError(
            f"unknown {what} sort key {sort!r}; expected one of {', '.join(allowed)} "
            "(prefix '-' for descending)"
        )
    return key, descending


def _order(column: Any, descending: bool, nullable: bool) -> list[ColumnElement[Any]]:
    terms: list[ColumnElement[Any]] = []
    if nullable:
        terms.append(column.is_(None))  # false (0) first: NULLs last, as the sort indexes
    terms.append(column.desc() if descending else column.asc())
    return terms


def job_order(sort: str) -> list[ColumnElement[Any]]:
    """ORDER BY for jobs; ties broken by id in the same direction (``-created_at`` = newest
    first, then highest id)."""
    key, descending = parse_sort(sort, JOB_SORT_KEYS, "job")
    terms = _order(_JOB_COLUMNS[key], descending, key in _NULLABLE)
    if key != "id":
        terms.append(Job.id.desc() if descending else Job.id.asc())
    return terms


def trial_order(sort: str | None) -> list[ColumnElement[Any]]:
    """ORDER BY for trials (None = by index); ties broken by ascending index."""
    key, descending = parse_sort(sort or "index", TRIAL_SORT_KEYS, "trial")
    terms = _order(getattr(Trial, key), descending, key in _NULLABLE)
    if key != "index":
        terms.append(Trial.index.asc())
    return terms


def accounted_flash_column(flash_accounting: str) -> Any:
    """The trial column a job's flash limit applies to under ``flash_accounting``
    (``vocabulary.accounted_flash_field``: ``nnz_flash_bytes`` under sparse)."""
    return getattr(Trial, accounted_flash_field(flash_accounting))


#: A job's flash accounting read from its JSON config (NULL for jobs stored before it existed).
JOB_FLASH_ACCOUNTING = Job.config["flash_accounting"].as_string()


def trial_filter(job_id: Any, status: str | None, pareto: bool | None) -> list[Any]:
    """WHERE terms for one job's trials (``job_id`` a value or a bind parameter), of one
    status and on or off the front when those are given."""
    terms = [Trial.job_id == job_id]
    if status is not None:
        terms.append(Trial.status == check_trial_status(status))
    if pareto is not None:
        terms.append(Trial.pareto.is_(bool(pareto)))
    return terms


@functools.lru_cache(maxsize=256)
def trial_page_query(
    dialect: str, sort: str | None, status: str | None, pareto: bool | None, owned: bool
) -> Select[Any]:
    """One page of a job's trials in order, in one statement (parameters ``job_id``,
    ``limit``, ``offset``, and ``owner`` when ``owned``: rows only if the job is that
    owner's). Each row is TrialInfo's fields in order (``_convert.trial_info_from_row``
    builds the records positionally), then the filtered total. Built once per shape:
    building the statement cost as much as running it.

    A subquery sorts only the narrow ``(index, key)`` rows and keeps the page's indices
    (sorting the wide rows, JSON columns and all, of every trial of the job cost more than the
    rest together); the page's full rows are then read by ``(job_id, index)`` and re-sorted,
    50 rows at most. On PostgreSQL the indices come as one array (``= ANY (CAST((SELECT
    array_agg …) AS INTEGER[]))``), which the planner runs once, first: as a join or an
    ``IN`` it planned a nested loop that re-ran the ranking once per trial of the job while
    the table had no statistics (EXPLAIN ANALYZE on 1,000 trials: 5-426 ms a page by sort,
    against ~1 ms in this form). No row means: past the last page, or no such job (for this
    owner); the caller tells which."""
    where = trial_filter(bindparam("job_id"), status, pareto)
    ranked = select(Trial.index).where(*where)
    if owned:
        job = select(Job.id).where(Job.id == bindparam("job_id"), Job.owner == bindparam("owner"))
        ranked = ranked.where(job.exists())
    page = (
        ranked.order_by(*trial_order(sort))
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
    )
    if dialect == "postgresql":
        indices = page.subquery("page")
        array = cast(select(func.array_agg(indices.c.index)).scalar_subquery(), ARRAY(Integer))
        wanted = Trial.index == any_(array)  # ANY (CAST((SELECT …))): an array, not a subquery
    else:
        wanted = Trial.index.in_(page.scalar_subquery())
    total = select(func.count()).select_from(Trial).where(*where).scalar_subquery()
    columns = [Trial.__table__.c[f.name] for f in dataclasses.fields(TrialInfo)]
    return (
        select(*columns, total.label("total"))
        .where(Trial.job_id == bindparam("job_id"), wanted)
        .order_by(*trial_order(sort))
    )
