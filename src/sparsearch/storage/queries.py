"""Sort keys for job and trial listings, as portable ORDER BY clauses.

A sort is a key with an optional ``-`` prefix for descending (``-accuracy``). NULLs come last
in both directions on every backend (an ``IS NULL`` term first, instead of ``NULLS LAST``),
and ties are broken by a unique column so pages never overlap or skip rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import case
from sqlalchemy.sql.elements import ColumnElement

from .models import Job, Trial
from .records import JOB_STATUSES

#: Keys ``list_jobs(sort=...)`` accepts (each also with a ``-`` prefix).
JOB_SORT_KEYS: tuple[str, ...] = ("created_at", "status", "hypervolume", "best_accuracy", "id")
#: Keys ``list_trials(sort=...)`` accepts (each also with a ``-`` prefix).
TRIAL_SORT_KEYS: tuple[str, ...] = (
    "index",
    "accuracy",
    "test_accuracy",
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "macs",
    "train_seconds",
    "gen_seconds",
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
        terms.append(case((column.is_(None), 1), else_=0))
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
