"""The per-owner quota of unfinished jobs is one atomic step with the insert
(``create_job(max_active=)``), on SQLite and PostgreSQL: submissions fired at once never
exceed it, even when every count is slowed down to leave a wide window before the insert."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from sqlalchemy import event

from sparsearch.storage.jobs import QuotaError
from sparsearch.storage.records import ConflictError

CONFIG = {"dataset": "digits", "limits": {"flash_bytes": 1, "ram_bytes": 1}}


@contextmanager
def slow_active_counts(storage, seconds: float) -> Iterator[None]:
    """Sleep after every count of an owner's unfinished jobs: a check-then-insert that is not
    atomic lets every concurrent submission count before any inserts."""
    engine = storage._engine

    def after(_conn, _cursor, statement, *_args) -> None:
        flat = " ".join(statement.split())
        if flat.startswith("SELECT count(*)") and "FROM jobs" in flat and "jobs.owner" in flat:
            time.sleep(seconds)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield
    finally:
        event.remove(engine, "after_cursor_execute", after)


def fire(n: int, submit) -> list[object]:
    """Run ``submit()`` in ``n`` threads released together; each result or exception."""
    barrier = threading.Barrier(n)

    def one(_: int) -> object:
        barrier.wait()
        try:
            return submit()
        except Exception as e:  # noqa: BLE001 - the caller sorts results from errors
            return e

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_concurrent_submissions_never_exceed_the_quota(storage):
    cap, n = 3, 8
    with slow_active_counts(storage, 0.2):
        results = fire(
            n,
            lambda: storage.create_job(
                dataset="digits", config=CONFIG, owner="alice", max_active=cap
            ),
        )
    created = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(created) == cap, refused
    assert len(refused) == n - cap and all(isinstance(e, QuotaError) for e in refused)
    assert all(isinstance(e, ConflictError) for e in refused)  # a 409 in the API
    assert "already has 3 active jobs (the cap is 3)" in str(refused[0])
    assert storage.count_active_jobs("alice") == cap


def test_quota_counts_unfinished_jobs_of_that_owner_only(storage):
    jobs = [
        storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=2)
        for _ in range(2)
    ]
    with pytest.raises(QuotaError, match="cap is 2"):
        storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=2)
    storage.create_job(dataset="digits", config=CONFIG, owner="bob", max_active=2)
    storage.set_job_status(jobs[0].id, "interrupted")  # unfinished: still counts
    with pytest.raises(QuotaError):
        storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=2)
    storage.request_cancel(jobs[0].id)  # finished: frees a place
    storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=2)
    # Without a quota (the local CLI) nothing is counted.
    storage.create_job(dataset="digits", config=CONFIG, owner="alice")
    assert storage.count_active_jobs("alice") == 3
    with pytest.raises(ValueError, match="max_active"):
        storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=-1)


def test_a_refused_submission_leaves_the_database_writable(storage):
    storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=1)
    for _ in range(3):  # the lock (or SQLite's write lock) ends with each refused transaction
        with pytest.raises(QuotaError):
            storage.create_job(dataset="digits", config=CONFIG, owner="alice", max_active=1)
    job = storage.create_job(dataset="digits", config=CONFIG, owner="carol", max_active=1)
    assert storage.set_job_status(job.id, "running").status == "running"
