"""Upgrading a database with data from revision 0006 to 0007 (and back) — SQLite and PostgreSQL:
old trials are charged, old jobs screened nothing, old holders are schedulers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from schema_helpers import assert_at_head
from sqlalchemy import inspect

from sparsearch.storage import open_storage
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TS = sa.DateTime(timezone=True)
JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("id", "status", "dataset", "owner", "scheduler_id")),
    sa.column("config", sa.JSON),
    sa.column("created_at", TS),
    sa.column("updated_at", TS),
    sa.column("heartbeat_at", TS),
)
TRIALS = sa.table(
    "trials",
    *(sa.column(c) for c in ("job_id", "index", "status", "error")),
    sa.column("params", sa.JSON),
    sa.column("pruning", sa.JSON),
    sa.column("feasible", sa.Boolean),
    sa.column("created_at", TS),
)
SCHEDULERS = sa.table(
    "schedulers",
    *(sa.column(c) for c in ("id", "host", "pid")),
    sa.column("started_at", TS),
    sa.column("heartbeat_at", TS),
)


def _seed_0006(url: str) -> None:
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                JOBS.insert(),
                [
                    {
                        "id": "old", "status": "completed", "dataset": "digits", "owner": "local",
                        "scheduler_id": None, "config": {"budget": {"trials": 3}},
                        "created_at": T0, "updated_at": T0, "heartbeat_at": None,
                    }
                ],
            )  # fmt: skip
            trials = [
                {
                    "job_id": "old", "index": i, "status": status, "error": error,
                    "params": {}, "pruning": {}, "feasible": status != "infeasible",
                    "created_at": T0,
                }
                for i, (status, error) in enumerate(
                    [("completed", None), ("failed", "interrupted"), ("infeasible", None)]
                )
            ]  # fmt: skip
            conn.execute(TRIALS.insert(), trials)
            now = datetime.now(UTC)
            conn.execute(
                SCHEDULERS.insert(),
                [{"id": "h:1:aa", "host": "h", "pid": 1, "started_at": now, "heartbeat_at": now}],
            )
    finally:
        engine.dispose()


def test_upgrade_0006_with_data(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0006")
    _seed_0006(db_url)
    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0006 → head
        old = storage.get_job("old")
        assert old.screened == 0 and old.strategy == "bo"
        assert old.to_json()["screened"] == 0 and old.to_json()["strategy"] == "bo"
        trials = storage.list_trials("old")
        assert [t.charged for t in trials] == [True, True, True]  # counted as before
        assert [t.trained for t in trials] == [True, True, False]
        assert storage.trial_counts(["old"]) == {
            "old": {"completed": 1, "failed": 1, "infeasible": 1}
        }
        page, total = storage.trial_page("old")
        assert total == 3 and [t.charged for t in page] == [True, True, True]
        assert storage.scheduler_state(stale_after=60) == "running"  # the old row: a scheduler
        updated = storage.update_job_summary("old", hypervolume=0.5, best_accuracy=0.9, screened=12)
        assert updated.screened == 12
    assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})


def test_downgrade_to_0006_drops_the_columns_and_keeps_the_rows(
    db_url: str, tmp_path: Path
) -> None:
    migrate_to(db_url, "0006")
    _seed_0006(db_url)
    migrate_to(db_url, "head")
    migrate_to(db_url, "0006", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            columns = {
                table: {c["name"] for c in inspect(conn).get_columns(table)}
                for table in ("trials", "jobs", "schedulers")
            }
            assert "charged" not in columns["trials"] and "screened" not in columns["jobs"]
            assert "kind" not in columns["schedulers"]
            assert conn.scalar(sa.text("SELECT count(*) FROM trials")) == 3
    finally:
        engine.dispose()
    with open_storage(db_url, tmp_path / "art") as storage:  # and up again
        assert [t.charged for t in storage.list_trials("old")] == [True, True, True]
