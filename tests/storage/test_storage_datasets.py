"""Uploaded datasets in storage (SQLite and PostgreSQL): rows and files kept in step, owners
apart, deletion refused while an unfinished job names the dataset; and the 0003 → 0004 upgrade
with data (and back)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from schema_helpers import assert_at_head
from sqlalchemy import inspect

from sparsearch.errors import NotFoundError, StorageError
from sparsearch.storage import (
    ConflictError,
    DatasetInfo,
    Storage,
    is_dataset_id,
    open_storage,
)
from sparsearch.storage.engine import build_engine
from sparsearch.storage.migrations import migrate_to

SUMMARY = {"num_classes": 4, "input_shape": [1, 8, 8], "n_train": 40, "n_test": 12}
DATA = b"PK\x05\x06" + bytes(18)  # storage keeps bytes; validating them is the caller's job


def _create(storage: Storage, owner: str = "alice", data: bytes = DATA, **kw) -> DatasetInfo:
    return storage.create_dataset(owner=owner, name=kw.pop("name", "mine"), data=data,
                                  summary=kw.pop("summary", SUMMARY))  # fmt: skip


def _files(storage: Storage) -> list[str]:
    folder = storage.artifact_dir / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_create_get_list_count_path(storage: Storage) -> None:
    first = _create(storage, data=DATA)
    second = _create(storage, data=DATA + b"x", name="other")
    assert is_dataset_id(first.id) and first.id != second.id
    assert first.owner == "alice" and first.name == "mine"
    assert first.size_bytes == len(DATA) and first.sha256 == hashlib.sha256(DATA).hexdigest()
    assert (first.num_classes, first.input_shape, first.n_train, first.n_test) == (
        4, (1, 8, 8), 40, 12,
    )  # fmt: skip
    assert first.created_at.tzinfo is not None
    assert storage.get_dataset(first.id, owner="alice") == first
    assert storage.get_dataset(first.id) == first
    assert first.to_json()["input_shape"] == [1, 8, 8]
    assert [d.id for d in storage.list_datasets(owner="alice")] == [second.id, first.id]
    assert [d.id for d in storage.list_datasets(owner="alice", limit=1, offset=1)] == [first.id]
    assert storage.count_datasets(owner="alice") == 2 and storage.count_datasets() == 2
    path = storage.dataset_path(first.id)
    assert path == storage.artifact_dir / "datasets" / f"{first.id}.npz"
    assert path.read_bytes() == DATA
    assert _files(storage) == sorted([f"{first.id}.npz", f"{second.id}.npz"])  # no temp files


def test_other_owner_sees_nothing(storage: Storage) -> None:
    ds = _create(storage)
    for call in (
        lambda: storage.get_dataset(ds.id, owner="bob"),
        lambda: storage.delete_dataset(ds.id, owner="bob"),
    ):
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.message == f"dataset {ds.id!r} does not exist"
    assert storage.list_datasets(owner="bob") == [] and storage.count_datasets(owner="bob") == 0
    assert storage.dataset_path(ds.id).exists()  # untouched
    with pytest.raises(NotFoundError):
        storage.get_dataset("ds_000000000000")
    with pytest.raises(NotFoundError):
        storage.get_dataset("../../etc/passwd")


@pytest.mark.parametrize("status", ["queued", "running", "interrupted"])
def test_delete_refused_while_an_unfinished_job_uses_it(storage: Storage, status: str) -> None:
    ds = _create(storage)
    job = storage.create_job(dataset=ds.id, config={}, owner="alice")
    if status != "queued":
        storage.set_job_status(job.id, status)
    with pytest.raises(ConflictError, match=job.id) as info:
        storage.delete_dataset(ds.id, owner="alice")
    assert "cancel" in info.value.hint
    assert storage.get_dataset(ds.id).id == ds.id and storage.dataset_path(ds.id).exists()
    storage.set_job_status(job.id, "cancelled")
    storage.delete_dataset(ds.id, owner="alice")
    with pytest.raises(NotFoundError):
        storage.get_dataset(ds.id)
    assert _files(storage) == []
    assert storage.get_job(job.id).dataset == ds.id  # finished jobs keep their record


def test_dataset_path_checks_the_file(storage: Storage) -> None:
    ds = _create(storage)
    path = storage.dataset_path(ds.id)
    path.write_bytes(DATA + b"tampered")
    with pytest.raises(StorageError, match="bytes"):
        storage.dataset_path(ds.id)
    path.unlink()
    with pytest.raises(StorageError, match="missing"):
        storage.dataset_path(ds.id)
    with pytest.raises(NotFoundError):
        storage.dataset_path("ds_000000000000")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"owner": "bad owner"},
        {"name": ""},
        {"name": "x" * 129},
        {"name": "nul\x00"},
        {"summary": {**SUMMARY, "num_classes": 1}},
        {"summary": {**SUMMARY, "input_shape": [8, 8]}},
        {"summary": {k: v for k, v in SUMMARY.items() if k != "n_test"}},
        {"summary": {**SUMMARY, "extra": 1}},
    ],
)
def test_bad_arguments_store_nothing(storage: Storage, kwargs) -> None:
    with pytest.raises(ValueError):
        _create(storage, **kwargs)
    assert storage.count_datasets() == 0 and _files(storage) == []


def test_failed_commit_removes_the_file(storage: Storage, monkeypatch) -> None:
    from sqlalchemy.orm import Session

    def fail(self) -> None:
        raise sa.exc.OperationalError("COMMIT", {}, Exception("disk full"))

    monkeypatch.setattr(Session, "commit", fail)
    with pytest.raises(StorageError, match="disk full"):
        _create(storage)
    monkeypatch.undo()
    assert storage.count_datasets() == 0 and _files(storage) == []


def test_unwritable_artifact_dir_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with open_storage(f"sqlite:///{tmp_path / 'db.sqlite'}", blocker) as st:
        with pytest.raises(StorageError) as info:
            _create(st)
        assert "SPARSEARCH_ARTIFACT_DIR" in info.value.hint
        assert st.count_datasets() == 0


def test_job_id_datasets_is_reserved(storage: Storage) -> None:
    with pytest.raises(ValueError, match="reserved"):
        storage.create_job(dataset="digits", config={}, job_id="datasets")


# -- migration 0003 → 0004 -----------------------------------------------------------------------

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def test_upgrade_0003_with_data_then_downgrade(db_url: str, tmp_path: Path) -> None:
    migrate_to(db_url, "0003")
    engine = build_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO jobs (id, status, dataset, config, created_at, updated_at, "
                    "owner, cancel_requested) VALUES ('old', 'completed', 'digits', '{}', :t, :t, "
                    "'alice', false)"
                ),
                {"t": T0},
            )
    finally:
        engine.dispose()

    with open_storage(db_url, tmp_path / "art") as storage:  # migrates 0003 → head
        assert storage.get_job("old").owner == "alice"
        ds = _create(storage)
        assert storage.get_dataset(ds.id, owner="alice").name == "mine"

    assert_at_head(db_url, {"ix_datasets_owner": "datasets"})

    migrate_to(db_url, "0003", down=True)
    engine = build_engine(db_url)
    try:
        with engine.connect() as conn:
            assert "datasets" not in set(inspect(conn).get_table_names())
            assert conn.scalar(sa.text("SELECT count(*) FROM jobs")) == 1
    finally:
        engine.dispose()
    assert (tmp_path / "art" / "datasets" / f"{ds.id}.npz").exists()  # user data is kept
