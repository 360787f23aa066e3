"""Upgrading a database with data from revision 0010 to 0011 (and back) — SQLite and PostgreSQL:
trials measured before were measured on TFLite Micro, so their flash / RAM become the TFLM
target's numbers; estimated trials get none; no trial has C target numbers; the trial sort
indexes (0005, expression indexes a batch rebuild would lose) survive."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from schema_helpers import JOBS, TS, assert_at_head
from sqlalchemy import inspect

from sparsearch.storage import open_storage
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to
from sparsearch.storage.models import INDEXED_TRIAL_SORTS, trial_sort_index_name
from sparsearch.vocabulary import TARGET_METRICS

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TRIALS = sa.table(
    "trials",
    *(sa.column(c) for c in ("job_id", "index", "status", "accuracy", "int8_accuracy")),
    *(sa.column(c) for c in ("flash_bytes", "ram_bytes", "est_flash_bytes", "est_ram_bytes")),
    sa.column("measured", sa.Boolean),
    sa.column("params", sa.JSON),
    sa.column("pruning", sa.JSON),
    sa.column("feasible", sa.Boolean),
    sa.column("pareto", sa.Boolean),
    sa.column("created_at", TS),
)
NEW_COLUMNS = {*TARGET_METRICS, "c_error"}
C_COLUMNS = ("c_flash_bytes", "c_ram_bytes", "c_stack_bytes", "instructions", "c_error")


def _seed_0010(url: str) -> None:
    """Trial 0 measured on TFLM (its flash / RAM replaced the estimates), trial 1 estimated
    only (not measured), trial 2 failed before anything was measured."""
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                JOBS.insert(),
                [{"id": "old", "status": "completed", "dataset": "digits", "owner": "local",
                  "config": {"budget": {"trials": 3}}, "created_at": T0, "updated_at": T0}],
            )  # fmt: skip
            base = {"params": {}, "pruning": {}, "feasible": True, "created_at": T0}
            conn.execute(
                TRIALS.insert(),
                [
                    {**base, "job_id": "old", "index": 0, "status": "completed",
                     "accuracy": 0.9, "int8_accuracy": 0.89, "measured": True,
                     "flash_bytes": 14_400, "ram_bytes": 10_336,
                     "est_flash_bytes": 15_000, "est_ram_bytes": 11_000, "pareto": True},
                    {**base, "job_id": "old", "index": 1, "status": "completed",
                     "accuracy": 0.8, "int8_accuracy": None, "measured": False,
                     "flash_bytes": 9_000, "ram_bytes": 4_000,
                     "est_flash_bytes": 9_000, "est_ram_bytes": 4_000, "pareto": True},
                    {**base, "job_id": "old", "index": 2, "status": "failed",
                     "accuracy": None, "int8_accuracy": None, "measured": False,
                     "flash_bytes": 7_000, "ram_bytes": 3_000,
                     "est_flash_bytes": 7_000, "est_ram_bytes": 3_000, "pareto": False},
                ],
            )  # fmt: skip
    finally:
        engine.dispose()


def _trial_index_names(url: str) -> set[str]:
    engine = build_engine(url)
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'trials'"
        if engine.dialect.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'trials'"
    )
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text(sql)).scalars())
    finally:
        engine.dispose()


SORT_INDEXES = {trial_sort_index_name(k, d) for k in INDEXED_TRIAL_SORTS for d in (False, True)}


def test_upgrade_0010_backfills_the_tflm_numbers_of_measured_trials(
    db_url: str, tmp_path: Path
) -> None:
    migrate_to(db_url, "0010")
    _seed_0010(db_url)
    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0010 → head
        measured, estimated, failed = storage.list_trials("old")
        assert (measured.tflm_flash_bytes, measured.tflm_ram_bytes) == (14_400, 10_336)
        # flash_bytes / ram_bytes and the estimates are left as they were
        assert (measured.flash_bytes, measured.ram_bytes) == (14_400, 10_336)
        assert (measured.est_flash_bytes, measured.est_ram_bytes) == (15_000, 11_000)
        for trial in (estimated, failed):  # their flash / RAM are estimates, not TFLM's
            assert (trial.tflm_flash_bytes, trial.tflm_ram_bytes) == (None, None)
        for trial in (measured, estimated, failed):
            doc = trial.to_json()
            assert {k: doc[k] for k in C_COLUMNS} == dict.fromkeys(C_COLUMNS)
        assert [t.index for t in storage.list_trials("old", sort="-tflm_flash_bytes")] == [0, 1, 2]
    assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})
    assert _trial_index_names(db_url) >= SORT_INDEXES | {"ix_trials_job_id_pareto"}


def test_downgrade_to_0010_drops_the_columns(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0010")
    _seed_0010(db_url)
    with open_storage(db_url, tmp_path / "art") as storage:
        storage.finish_trial(
            "old", 1, status="completed", metrics={"c_flash_bytes": 2048, "c_error": None}
        )
    migrate_to(db_url, "0010", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            trials = {c["name"] for c in inspect(conn).get_columns("trials")}
            assert not NEW_COLUMNS & trials
            rows = conn.execute(sa.text('SELECT flash_bytes FROM trials ORDER BY "index"'))
            assert list(rows.scalars()) == [14_400, 9_000, 7_000]
    finally:
        engine.dispose()
    assert _trial_index_names(db_url) >= SORT_INDEXES
    with open_storage(db_url, tmp_path / "art") as storage:  # and up again
        assert storage.get_trial("old", 0).tflm_flash_bytes == 14_400
        assert storage.get_trial("old", 1).c_flash_bytes is None
