"""Upgrading a database with data from revision 0007 to 0008 (and back) — SQLite and PostgreSQL:
old trials keep their numbers as estimates (``est_*``) and are not measured, old artifacts are
the search run's, old jobs use the storage's artifact folder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from schema_helpers import JOBS, TS, assert_at_head
from sqlalchemy import inspect

from sparsearch.storage import open_storage
from sparsearch.storage.artifacts import sha256_hex
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRIALS = sa.table(
    "trials",
    *(sa.column(c) for c in ("id", "job_id", "index", "status", "accuracy")),
    *(sa.column(c) for c in ("flash_bytes", "ram_bytes", "activation_bytes")),
    sa.column("params", sa.JSON),
    sa.column("pruning", sa.JSON),
    sa.column("feasible", sa.Boolean),
    sa.column("pareto", sa.Boolean),
    sa.column("created_at", TS),
)
ARTIFACTS = sa.table(
    "artifacts",
    *(sa.column(c) for c in ("trial_id", "kind", "sha256", "size_bytes", "path")),
    sa.column("created_at", TS),
)
ONNX = b"old onnx bytes"


def _seed_0007(url: str, artifacts: Path) -> None:
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                JOBS.insert(),
                [{"id": "old", "status": "completed", "dataset": "digits", "owner": "local",
                  "config": {"budget": {"trials": 1}}, "created_at": T0, "updated_at": T0}],
            )  # fmt: skip
            conn.execute(
                TRIALS.insert(),
                [{"id": 1, "job_id": "old", "index": 0, "status": "completed", "accuracy": 0.9,
                  "flash_bytes": 9000, "ram_bytes": 4000, "activation_bytes": 1200,
                  "params": {}, "pruning": {}, "feasible": True, "pareto": True,
                  "created_at": T0}],
            )  # fmt: skip
            conn.execute(
                ARTIFACTS.insert(),
                [{"trial_id": 1, "kind": "onnx", "sha256": sha256_hex(ONNX),
                  "size_bytes": len(ONNX), "path": "old/0/onnx.onnx", "created_at": T0}],
            )  # fmt: skip
    finally:
        engine.dispose()
    (artifacts / "old" / "0").mkdir(parents=True)
    (artifacts / "old" / "0" / "onnx.onnx").write_bytes(ONNX)


def test_upgrade_0007_with_data(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0007")
    _seed_0007(db_url, tmp_path / "art")
    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0007 → head
        (t,) = storage.list_trials("old")
        assert not t.measured and t.int8_accuracy is None and t.final is None
        assert (t.est_flash_bytes, t.est_ram_bytes, t.est_activation_bytes) == (9000, 4000, 1200)
        assert (t.flash_bytes, t.ram_bytes) == (9000, 4000)
        assert t.objective_accuracy == 0.9  # float where nothing was measured
        _, best = storage.best_front_trial("old")
        assert best is not None and best.index == 0
        (art,) = storage.list_artifacts("old", 0)
        assert art.kind == "onnx" and not art.final
        assert storage.read_artifact("old", 0, "onnx") == ONNX
        # A final artifact of the same kind can now sit beside the search run's.
        storage.set_final("old", 0, {"status": "completed"}, artifacts={"onnx": b"final"})
        assert storage.read_artifact("old", 0, "onnx", final=True) == b"final"
        assert storage.read_artifact("old", 0, "onnx") == ONNX
    assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})


def test_downgrade_to_0007_drops_the_columns_and_the_final_artifacts(
    db_url: str, tmp_path: Path
) -> None:
    migrate_to(db_url, "0007")
    _seed_0007(db_url, tmp_path / "art")
    with open_storage(db_url, tmp_path / "art") as storage:
        storage.set_final("old", 0, {"status": "completed"}, artifacts={"onnx": b"final"})
    migrate_to(db_url, "0007", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            trials = {c["name"] for c in inspect(conn).get_columns("trials")}
            assert not {"measured", "est_flash_bytes", "int8_accuracy", "final"} & trials
            assert "artifact_dir" not in {c["name"] for c in inspect(conn).get_columns("jobs")}
            assert conn.scalar(sa.text("SELECT count(*) FROM artifacts")) == 1
            assert conn.scalar(sa.text("SELECT flash_bytes FROM trials")) == 9000
    finally:
        engine.dispose()
    with open_storage(db_url, tmp_path / "art") as storage:  # and up again
        assert storage.read_artifact("old", 0, "onnx") == ONNX
