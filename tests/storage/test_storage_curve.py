"""A trial's learning curve in storage (SQLite and PostgreSQL): ``finish_trial(curve=...)``
stores it, every read path gives it back, a trial without one has null, a curve that is not
strict JSON is refused; revision 0012 adds the column and takes it away again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import sqlalchemy as sa
from schema_helpers import assert_at_head
from sqlalchemy import inspect

from sparsearch.storage import Storage, open_storage
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to

CURVE = [
    {"epoch": 1.0, "accuracy": 0.61, "seconds": 1.25, "phase": "train"},
    {"epoch": 2.0, "accuracy": 0.83, "seconds": 2.5, "phase": "train"},
    {"epoch": 2.5, "accuracy": 0.8, "seconds": 3.0, "phase": "prune"},
]


def _trial(storage: Storage, job_id: str, index: int, curve=None) -> None:  # type: ignore[no-untyped-def]
    storage.add_trial(
        job_id, index, status="running", params={"i": index}, generator="sobol",
        gen_seconds=0.1, estimates={"flash_bytes": 9000, "ram_bytes": 4000, "macs": 7},
        feasible=True, pruning={},
    )  # fmt: skip
    storage.finish_trial(job_id, index, status="completed", metrics={"accuracy": 0.8}, curve=curve)


def test_the_curve_round_trips_on_every_read_path(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    _trial(storage, job.id, 0, CURVE)
    _trial(storage, job.id, 1)
    storage.set_pareto(job.id, [0, 1])
    with_curve, bare = storage.get_trial(job.id, 0), storage.get_trial(job.id, 1)
    assert with_curve.curve == CURVE and bare.curve is None
    assert json.loads(json.dumps(with_curve.to_json()))["curve"] == CURVE
    assert storage.list_trials(job.id) == [with_curve, bare]
    assert storage.trial_page(job.id, sort="index")[0] == [with_curve, bare]
    assert storage.front(job.id, sort="index")[1] == [with_curve, bare]


@pytest.mark.parametrize(
    ("curve", "error"),
    [({"epoch": 1}, TypeError), ([{"epoch": 1.0, "accuracy": math.nan}], ValueError)],
)
def test_a_curve_that_is_not_a_json_list_is_refused(storage: Storage, curve, error) -> None:  # type: ignore[no-untyped-def]
    job = storage.create_job(dataset="digits", config={})
    with pytest.raises(error, match="curve"):
        _trial(storage, job.id, 0, curve)
    assert storage.get_trial(job.id, 0).status == "running"  # nothing half-written


def test_revision_0012_adds_the_column_and_takes_it_away(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0011")
    with open_storage(db_url, tmp_path / "art") as storage:  # 0011 → head
        job = storage.create_job(dataset="digits", config={})
        _trial(storage, job.id, 0, CURVE)
    assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})
    migrate_to(db_url, "0011", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            assert "curve" not in {c["name"] for c in inspect(conn).get_columns("trials")}
            assert conn.execute(sa.text("SELECT count(*) FROM trials")).scalar() == 1
    finally:
        engine.dispose()
    with open_storage(db_url, tmp_path / "art") as storage:  # up again: the curve is gone
        assert storage.get_trial(job.id, 0).curve is None
