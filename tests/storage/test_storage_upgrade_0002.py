"""Upgrading a database with data from revision 0001 to 0002 (and back) — SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from schema_helpers import assert_at_head
from sqlalchemy import inspect

from sparsearch.storage import open_storage
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("id", "status", "dataset", "error", "hypervolume")),
    sa.column("config", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("updated_at", sa.DateTime(timezone=True)),
    sa.column("best_accuracy", sa.Float),
)
TRIALS = sa.table(
    "trials",
    *(sa.column(c) for c in ("job_id", "index", "status", "accuracy", "flash_bytes")),
    sa.column("params", sa.JSON),
    sa.column("pruning", sa.JSON),
    sa.column("feasible", sa.Boolean),
    sa.column("created_at", sa.DateTime(timezone=True)),
)


def _job(job_id: str, status: str, config: dict, hv: float | None, acc: float | None) -> dict:
    return {
        "id": job_id, "status": status, "dataset": "digits", "config": config,
        "created_at": T0, "updated_at": T0, "hypervolume": hv, "best_accuracy": acc,
    }  # fmt: skip


def _trial(index: int, accuracy: float | None) -> dict:
    return {
        "job_id": "old-done", "index": index, "status": "completed", "accuracy": accuracy,
        "flash_bytes": 1000 * (index + 1), "params": {"i": index}, "pruning": {},
        "feasible": True, "created_at": T0,
    }  # fmt: skip


def _seed_0001(url: str) -> None:
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            jobs = [
                _job("old-done", "completed", {"budget": 3}, 0.4, 0.9),
                _job("old-queued", "queued", {}, None, None),
            ]
            conn.execute(JOBS.insert(), jobs)
            conn.execute(TRIALS.insert(), [_trial(i, a) for i, a in enumerate([0.8, None, 0.9])])
    finally:
        engine.dispose()


def test_upgrade_0001_with_data(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0001")
    _seed_0001(db_url)
    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0001 → head
        old = storage.get_job("old-done", owner="local")
        assert old.owner == "local" and old.cancel_requested is False
        assert old.scheduler_id is None and old.heartbeat_at is None
        assert old.created_at == T0 and old.config == {"budget": 3} and old.hypervolume == 0.4
        assert storage.count_active_jobs("local") == 1
        assert [j.id for j in storage.list_jobs(owner="local", sort="id")] == [
            "old-done", "old-queued",
        ]  # fmt: skip
        assert [t.index for t in storage.list_trials("old-done", sort="-accuracy")] == [2, 0, 1]
        assert storage.trial_counts(["old-done"]) == {"old-done": {"completed": 3}}
        assert storage.request_cancel("old-queued").status == "cancelled"
        new = storage.create_job(dataset="digits", config={}, owner="alice")
        claimed = storage.claim_next_job(scheduler_id="s1")
        assert claimed is not None and claimed.id == new.id and claimed.scheduler_id == "s1"
        _, plaintext = storage.create_token("alice")
        assert storage.authenticate(plaintext) == "alice"
        sid = storage.register_scheduler(host="h", pid=1)
        assert storage.scheduler_state(stale_after=60) == "running"
        storage.stop_scheduler(sid)

    assert_at_head(db_url, {"ix_jobs_owner": "jobs"})


def test_downgrade_to_0001_keeps_jobs(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0001")
    _seed_0001(db_url)
    migrate_to(db_url, "head")
    migrate_to(db_url, "0001", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert "tokens" not in tables and "schedulers" not in tables
            assert "job_claims" not in tables
            columns = {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert "owner" not in columns and "heartbeat_at" not in columns
            assert conn.scalar(sa.text("SELECT count(*) FROM trials")) == 3
    finally:
        engine.dispose()
    with open_storage(db_url, tmp_path / "art") as storage:
        assert storage.get_job("old-done").owner == "local"
