"""A job's hypervolume trace — SQLite and PostgreSQL: ``update_job_summary(trained=)`` appends
``(trained, hypervolume, best_accuracy)``, replaces the point of a count already traced, keeps
the trace bounded; ``hypervolume_trace`` reads it owner-scoped; and 0008 → 0009 with data."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from schema_helpers import assert_at_head
from sqlalchemy import inspect

from sparsearch.errors import NotFoundError
from sparsearch.storage import Storage, open_storage
from sparsearch.storage.engine import build_engine
from sparsearch.storage.jobs import TRACE_SLACK
from sparsearch.storage.migrations import migrate_to


def _job(storage: Storage, owner: str = "alice", *, budget: int = 10) -> str:
    config = {"budget": {"trials": budget}}
    return storage.create_job(dataset="digits", config=config, owner=owner).id


def test_trace_appends_per_trained_count_and_replaces_a_repeated_one(storage: Storage) -> None:
    job = _job(storage)
    assert storage.hypervolume_trace(job) == []
    storage.update_job_summary(job, hypervolume=0.0, best_accuracy=None, trained=0)
    storage.update_job_summary(job, hypervolume=0.25, best_accuracy=0.8, trained=1)
    updated = storage.update_job_summary(job, hypervolume=0.375, best_accuracy=0.85, trained=3)
    assert (updated.hypervolume, updated.best_accuracy) == (0.375, 0.85)
    assert storage.hypervolume_trace(job) == [(0, 0.0, None), (1, 0.25, 0.8), (3, 0.375, 0.85)]
    # A resumed job (or a re-measured front) refreshes again at the same count: replaced.
    storage.update_job_summary(job, hypervolume=0.5, best_accuracy=0.9, trained=3)
    assert storage.hypervolume_trace(job) == [(0, 0.0, None), (1, 0.25, 0.8), (3, 0.5, 0.9)]
    storage.update_job_summary(job, hypervolume=0.625, best_accuracy=0.9, trained=4)
    trace = storage.hypervolume_trace(job)
    assert trace[-1] == (4, 0.625, 0.9) and len(trace) == 4
    assert all(isinstance(at, int) and isinstance(hv, float) for at, hv, _ in trace)


def test_trace_needs_both_a_hypervolume_and_a_count(storage: Storage) -> None:
    job = _job(storage)
    storage.update_job_summary(job, hypervolume=0.5, best_accuracy=0.9, trained=2)
    kept = storage.update_job_summary(job, hypervolume=0.75, best_accuracy=0.95)  # no count
    assert kept.hypervolume == 0.75  # the summary still changes
    storage.update_job_summary(job, hypervolume=None, best_accuracy=None, trained=3)
    storage.update_job_summary(job, hypervolume=float("nan"), best_accuracy=None, trained=4)
    storage.update_job_summary(job, hypervolume=None, best_accuracy=None, screened=5)
    assert storage.hypervolume_trace(job) == [(2, 0.5, 0.9)]
    assert storage.get_job(job).screened == 5
    with pytest.raises(ValueError, match="trained must be >= 0"):
        storage.update_job_summary(job, hypervolume=0.1, best_accuracy=None, trained=-1)
    with pytest.raises(TypeError, match="trained must be an integer"):
        storage.update_job_summary(job, hypervolume=0.1, best_accuracy=None, trained="3")  # type: ignore[arg-type]
    assert storage.hypervolume_trace(job) == [(2, 0.5, 0.9)]


def test_trace_stays_sorted_and_bounded(storage: Storage) -> None:
    job = _job(storage, budget=3)
    for trained in range(30):
        storage.update_job_summary(
            job, hypervolume=trained / 100, best_accuracy=0.5, trained=trained
        )
    trace = storage.hypervolume_trace(job)
    assert len(trace) == 3 + TRACE_SLACK
    assert trace[0] == (0, 0.0, 0.5) and trace[-1] == (29, 0.29, 0.5)  # first and latest kept
    counts = [at for at, _, _ in trace]
    assert counts == sorted(set(counts))
    # A lower count than traced (never seen in a run, but the trace must stay one point per
    # count, in order): the points at or above it give way.
    storage.update_job_summary(job, hypervolume=0.9, best_accuracy=0.95, trained=2)
    assert storage.hypervolume_trace(job) == [(0, 0.0, 0.5), (1, 0.01, 0.5), (2, 0.9, 0.95)]


def test_trace_of_a_missing_or_anothers_job_is_not_found(storage: Storage) -> None:
    job = _job(storage, "alice")
    storage.update_job_summary(job, hypervolume=0.5, best_accuracy=0.9, trained=1)
    assert storage.hypervolume_trace(job, owner="alice") == [(1, 0.5, 0.9)]
    for owner, job_id in (("bob", job), (None, "nope"), ("alice", "nope")):
        with pytest.raises(NotFoundError) as info:
            storage.hypervolume_trace(job_id, owner=owner)
        with pytest.raises(NotFoundError) as same:
            storage.get_job(job_id, owner=owner)
        assert info.value.message == same.value.message
    with pytest.raises(NotFoundError):
        storage.update_job_summary("nope", hypervolume=0.5, best_accuracy=None, trained=1)


T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_upgrade_0008_to_0009_and_back(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0008")
    jobs = sa.table(
        "jobs",
        *(sa.column(c) for c in ("id", "status", "dataset", "owner")),
        sa.column("config", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    engine = build_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                jobs.insert(),
                [{"id": "old", "status": "completed", "dataset": "digits", "owner": "local",
                  "config": {"budget": {"trials": 2}}, "created_at": T0, "updated_at": T0}],
            )  # fmt: skip
    finally:
        engine.dispose()
    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0008 → head
        assert storage.hypervolume_trace("old") == []  # stored before: no trace
        storage.update_job_summary("old", hypervolume=0.5, best_accuracy=0.9, trained=2)
        assert storage.hypervolume_trace("old") == [(2, 0.5, 0.9)]
        assert storage.secret("k", lambda: "v") == "v"
    assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})
    migrate_to(db_url, "0008", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            assert "app_secrets" not in inspect(conn).get_table_names()
            columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert "hypervolume_trace" not in columns and "artifact_dir" in columns
            assert conn.scalar(sa.text("SELECT hypervolume FROM jobs")) == 0.5
    finally:
        engine.dispose()
