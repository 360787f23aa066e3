"""Artifacts: atomic finish_trial, read-back, path safety, delete — on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from sparsearch.errors import NotFoundError, StorageError
from sparsearch.storage import ARTIFACT_KINDS, Storage
from sparsearch.storage.models import Artifact, Trial

BLOBS = {"state_dict": b"\x00weights" * 100, "onnx": b"onnx-graph"}


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def new_trial(storage: Storage, index: int = 0) -> str:
    job = storage.create_job(dataset="digits", config={})
    storage.add_trial(
        job.id, index, status="running", params={"lr": 0.1}, generator="sobol",
        gen_seconds=0.1, estimates={"flash_bytes": 9000}, feasible=True, pruning={},
    )  # fmt: skip
    return job.id


def finish(storage: Storage, job_id: str, index: int = 0, artifacts=BLOBS, **kw):
    return storage.finish_trial(
        job_id, index, status="completed", metrics={"accuracy": 0.9},
        effective_spec={"layers": [8, 16]}, artifacts=artifacts, **kw,
    )  # fmt: skip


def test_kinds_and_extensions() -> None:
    assert {k: v.extension for k, v in ARTIFACT_KINDS.items()} == {
        "tflite": "tflite",
        "c_source": "zip",
        "c_project": "zip",
        "onnx": "onnx",
        "state_dict": "pt",
    }


def test_an_unknown_kind_is_refused(storage: Storage) -> None:
    job_id = new_trial(storage)
    with pytest.raises(ValueError, match="unknown artifact kind 'weights'"):
        finish(storage, job_id, artifacts={"weights": b"TFL3"})


def test_finish_trial_writes_artifacts(storage: Storage) -> None:
    job_id = new_trial(storage)
    trial = finish(storage, job_id)
    assert trial.status == "completed" and trial.effective_spec == {"layers": [8, 16]}
    root = storage.artifact_dir
    assert files_under(root) == sorted(
        f"{job_id}/0/{kind}.{ARTIFACT_KINDS[kind].extension}" for kind in BLOBS
    )  # no temp or backup files left behind
    infos = storage.list_artifacts(job_id, 0)
    assert [a.kind for a in infos] == sorted(BLOBS)
    for info in infos:
        data = BLOBS[info.kind]
        path = storage.artifact_path(info)
        assert path.is_absolute() and path.read_bytes() == data
        assert info.sha256 == hashlib.sha256(data).hexdigest() and info.size_bytes == len(data)
        assert info.path == f"{job_id}/0/{info.filename}"
        assert info.effective_spec == {"layers": [8, 16]}
        assert storage.read_artifact(job_id, 0, info.kind) == data
        assert info.to_json()["filename"] == info.filename


def test_finish_again_replaces_artifacts(storage: Storage) -> None:
    job_id = new_trial(storage)
    finish(storage, job_id)
    finish(storage, job_id, artifacts={"onnx": b"new graph"})
    assert storage.read_artifact(job_id, 0, "onnx") == b"new graph"
    assert storage.read_artifact(job_id, 0, "state_dict") == BLOBS["state_dict"]
    assert [a.kind for a in storage.list_artifacts(job_id, 0)] == sorted(BLOBS)
    assert len(files_under(storage.artifact_dir)) == len(BLOBS)


def test_finish_unknown_trial_leaves_no_files(storage: Storage) -> None:
    job_id = new_trial(storage)
    with pytest.raises(NotFoundError):
        finish(storage, job_id, index=7)
    with pytest.raises(NotFoundError):
        finish(storage, "no-such-job", index=0)
    assert not storage.artifact_dir.exists()  # created lazily, by the first write
    with pytest.raises(ValueError, match="unknown artifact kind 'weights'"):
        finish(storage, job_id, artifacts={"onnx": b"x", "weights": b"y"})
    assert files_under(storage.artifact_dir) == []
    assert storage.get_trial(job_id, 0).status == "running"


def _failing_commit(self: Session) -> None:
    raise OperationalError("COMMIT", {}, Exception("simulated connection loss"))


def test_db_failure_during_finish_removes_new_files(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = new_trial(storage)
    with monkeypatch.context() as m:
        m.setattr(Session, "commit", _failing_commit)
        with pytest.raises(StorageError, match="simulated connection loss"):
            finish(storage, job_id)
    assert files_under(storage.artifact_dir) == []
    assert not (storage.artifact_dir / job_id / "0").exists()
    trial = storage.get_trial(job_id, 0)
    assert trial.status == "running" and trial.accuracy is None
    assert storage.list_artifacts(job_id, 0) == []


def test_db_failure_during_refinish_restores_old_files(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = new_trial(storage)
    finish(storage, job_id, artifacts={"state_dict": BLOBS["state_dict"]})
    before = files_under(storage.artifact_dir)
    with monkeypatch.context() as m:
        m.setattr(Session, "commit", _failing_commit)
        with pytest.raises(StorageError):
            finish(storage, job_id, artifacts={"state_dict": b"replacement", "onnx": b"graph"})
    assert files_under(storage.artifact_dir) == before
    # the old file is back (its sha256 still matches) and the new kind never appeared
    assert storage.read_artifact(job_id, 0, "state_dict") == BLOBS["state_dict"]
    with pytest.raises(NotFoundError, match="no 'onnx' artifact"):
        storage.read_artifact(job_id, 0, "onnx")


def test_artifact_path_refuses_escapes(storage: Storage, tmp_path: Path) -> None:
    job_id = new_trial(storage)
    finish(storage, job_id, artifacts={"onnx": b"graph"})
    (info,) = storage.list_artifacts(job_id, 0)
    assert storage.artifact_path(info).is_relative_to(storage.artifact_dir)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    for bad in ("../secret.txt", str(outside), f"{job_id}/../../secret.txt"):
        with pytest.raises(StorageError, match="outside the artifact directory"):
            storage.artifact_path(dataclasses.replace(info, path=bad))


def test_read_artifact_checks_presence_and_hash(storage: Storage) -> None:
    job_id = new_trial(storage)
    with pytest.raises(NotFoundError, match="no 'onnx' artifact"):
        storage.read_artifact(job_id, 0, "onnx")
    with pytest.raises(NotFoundError):
        storage.read_artifact(job_id, 9, "onnx")
    finish(storage, job_id, artifacts={"onnx": b"graph"})
    (info,) = storage.list_artifacts(job_id, 0)
    storage.artifact_path(info).write_bytes(b"tampered")
    with pytest.raises(StorageError, match="sha256"):
        storage.read_artifact(job_id, 0, "onnx")
    storage.artifact_path(info).unlink()
    with pytest.raises(StorageError, match="missing"):
        storage.read_artifact(job_id, 0, "onnx")


def test_delete_job_cascades_and_removes_files(storage: Storage) -> None:
    doomed = new_trial(storage)
    kept = new_trial(storage)
    finish(storage, doomed)
    finish(storage, kept, artifacts={"onnx": b"keep me"})
    storage.delete_job(doomed)
    with pytest.raises(NotFoundError):
        storage.get_job(doomed)
    assert not (storage.artifact_dir / doomed).exists()
    assert files_under(storage.artifact_dir) == [f"{kept}/0/onnx.onnx"]
    assert storage.read_artifact(kept, 0, "onnx") == b"keep me"
    # The rows went with the job (ON DELETE CASCADE, foreign keys enforced on SQLite too).
    engine = create_engine(storage._engine.url, poolclass=NullPool)
    try:
        with Session(engine) as s:
            assert s.scalar(select(func.count()).where(Trial.job_id == doomed)) == 0
            assert s.scalar(select(func.count()).select_from(Artifact)) == 1
    finally:
        engine.dispose()
