"""Scheduler heartbeats, claims with a scheduler id, job heartbeats, ping, lazy artifact dir."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sparsearch.errors import NotFoundError, StorageError
from sparsearch.storage import SCHEDULER_STATES, Storage, open_storage
from sparsearch.storage.engine import build_engine

STALE = 0.2
ONNX = {"onnx": b"x"}


def test_scheduler_state_transitions(storage: Storage) -> None:
    assert SCHEDULER_STATES == ("running", "stale", "none")
    assert storage.scheduler_state(stale_after=STALE) == "none"
    first = storage.register_scheduler(host="node-1", pid=4242)
    host, pid, suffix = first.split(":")
    assert (host, pid) == ("node-1", "4242") and len(suffix) == 8
    assert storage.scheduler_state(stale_after=STALE) == "running"
    time.sleep(STALE + 0.15)
    assert storage.scheduler_state(stale_after=STALE) == "stale"
    storage.beat_scheduler(first)
    assert storage.scheduler_state(stale_after=STALE) == "running"
    time.sleep(STALE + 0.15)
    second = storage.register_scheduler(host="node-2", pid=1)
    assert second != first
    assert storage.scheduler_state(stale_after=STALE) == "running"  # one fresh is enough
    storage.stop_scheduler(second)
    storage.stop_scheduler(second)  # idempotent
    assert storage.scheduler_state(stale_after=STALE) == "stale"
    storage.stop_scheduler(first)
    assert storage.scheduler_state(stale_after=STALE) == "none"
    for call in (storage.beat_scheduler, storage.stop_scheduler):
        with pytest.raises(NotFoundError, match="not registered"):
            call("ghost:1:00000000")
    long_host = storage.register_scheduler(host="h" * 255, pid=7)
    assert len(long_host) <= 128
    with pytest.raises(ValueError):
        storage.register_scheduler(host="", pid=1)
    with pytest.raises(ValueError):
        storage.register_scheduler(host="x", pid=-1)
    with pytest.raises(ValueError, match="pid"):
        storage.register_scheduler(host="x", pid=True)


def test_claim_sets_scheduler_and_heartbeat(storage: Storage) -> None:
    a = storage.register_scheduler(host="a", pid=1)
    b = storage.register_scheduler(host="b", pid=2)
    job = storage.create_job(dataset="digits", config={})
    claimed = storage.claim_next_job(scheduler_id=a)
    assert claimed is not None and claimed.id == job.id and claimed.status == "running"
    assert claimed.scheduler_id == a and claimed.heartbeat_at is not None
    assert claimed.heartbeat_at >= job.created_at

    time.sleep(0.01)
    assert storage.beat_job(job.id, a) is True
    beaten = storage.get_job(job.id)
    assert beaten.heartbeat_at > claimed.heartbeat_at
    assert beaten.updated_at == claimed.updated_at  # a heartbeat is not a change
    assert storage.beat_job(job.id, b) is False
    assert storage.get_job(job.id).heartbeat_at == beaten.heartbeat_at
    assert storage.beat_job("nope", a) is False
    storage.set_job_status(job.id, "completed")
    assert storage.beat_job(job.id, a) is False
    plain = storage.create_job(dataset="digits", config={})
    assert storage.claim_next_job().scheduler_id is None  # scheduler_id stays optional
    assert storage.get_job(plain.id).status == "running"


def test_concurrent_claims_with_scheduler_ids(storage: Storage) -> None:
    ids = {storage.create_job(dataset="digits", config={}).id for _ in range(3)}
    claims: dict[str, str] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        sid = f"s{n}"
        while (job := storage.claim_next_job(scheduler_id=sid)) is not None:
            with lock:
                assert job.id not in claims
                claims[job.id] = sid

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert set(claims) == ids
    for job_id, sid in claims.items():
        assert storage.get_job(job_id).scheduler_id == sid


def test_cancel_flag(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    storage.claim_next_job(scheduler_id="s")
    assert storage.is_cancel_requested(job.id) is False
    storage.request_cancel(job.id)
    assert storage.is_cancel_requested(job.id) is True
    with pytest.raises(NotFoundError):
        storage.is_cancel_requested("nope")


def test_interrupt_stale_jobs(storage: Storage) -> None:
    a, b = "node-a:1:aa", "node-b:2:bb"
    stale_job = storage.create_job(dataset="digits", config={}).id
    fresh_job = storage.create_job(dataset="digits", config={}).id
    local_job = storage.create_job(dataset="digits", config={}).id
    storage.claim_next_job(scheduler_id=a)
    storage.claim_next_job(scheduler_id=b)
    storage.set_job_status(local_job, "running")  # a local run: no scheduler, no heartbeat
    pruning = {"method": "none", "level": 0.0}
    for index, status in enumerate(("running", "infeasible")):
        storage.add_trial(
            stale_job,
            index,
            status=status,
            params={},
            generator="Sobol",
            gen_seconds=0.0,
            estimates={},
            feasible=status == "running",
            pruning=pruning,
        )
    time.sleep(STALE + 0.15)
    assert storage.beat_job(fresh_job, b)
    assert storage.interrupt_stale_jobs(stale_after=STALE) == [stale_job]
    job = storage.get_job(stale_job)
    assert job.status == "interrupted" and a in (job.error or "")
    lost, infeasible = storage.list_trials(stale_job)
    assert (lost.status, lost.error) == ("failed", "scheduler lost")
    assert infeasible.status == "infeasible"
    assert storage.get_job(fresh_job).status == "running"
    assert storage.get_job(local_job).status == "running"
    assert storage.beat_job(stale_job, a) is False  # its old driver learns to stop
    assert storage.holds_job(stale_job, a) is False
    resumed = storage.claim_next_job(statuses=("interrupted",), scheduler_id=b)
    assert resumed is not None and resumed.id == stale_job and resumed.scheduler_id == b
    assert (storage.holds_job(stale_job, b), storage.holds_job(stale_job, a)) == (True, False)
    assert storage.holds_job(fresh_job, b) and not storage.holds_job(local_job, b)
    assert storage.holds_job("nope", b) is False
    assert resumed.error is None
    assert storage.interrupt_stale_jobs(stale_after=60) == []


def test_ping(storage: Storage, tmp_path: Path) -> None:
    storage.ping()
    dead = Storage(build_engine("postgresql+psycopg://u:pw@127.0.0.1:1/x"), tmp_path / "a")
    try:
        with pytest.raises(StorageError, match="127.0.0.1:1") as info:
            dead.ping()
        assert "SPARSEARCH_DATABASE_URL" in (info.value.hint or "")
        assert "pw" not in str(info.value)
    finally:
        dead.close()


def test_artifact_dir_is_created_lazily(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    with open_storage(url, blocker / "artifacts") as storage:  # reading needs no artifact dir
        job = storage.create_job(dataset="digits", config={})
        storage.add_trial(
            job.id, 0, status="running", params={}, generator=None, gen_seconds=None,
            estimates={}, feasible=True, pruning={},
        )  # fmt: skip
        assert storage.list_trials(job.id)[0].index == 0
        with pytest.raises(StorageError, match="cannot write artifacts"):
            storage.finish_trial(job.id, 0, status="completed", metrics={}, artifacts=ONNX)
        assert storage.get_trial(job.id, 0).status == "running"
    art = tmp_path / "art"
    with open_storage(url, art) as storage:
        assert not art.exists()
        storage.finish_trial(job.id, 0, status="completed", metrics={}, artifacts=ONNX)
        assert (art / job.id / "0" / "onnx.onnx").read_bytes() == b"x"


def test_claims_are_recorded_with_the_previous_status(storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    first = storage.claim_next_job(("queued", "interrupted"), scheduler_id="s1")
    assert first is not None and first.id == job.id
    storage.set_job_status(job.id, "interrupted")
    again = storage.claim_next_job(("queued", "interrupted"), scheduler_id="s2")
    assert again is not None and again.scheduler_id == "s2"
    claims = storage.list_claims(job.id)
    assert [(c.scheduler_id, c.previous_status) for c in claims] == [
        ("s1", "queued"),
        ("s2", "interrupted"),
    ]
    assert claims[0].claimed_at <= claims[1].claimed_at
    assert storage.claim_next_job(("queued",), scheduler_id="s3") is None
    assert len(storage.list_claims(job.id)) == 2
