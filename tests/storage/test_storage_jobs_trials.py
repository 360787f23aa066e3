"""Jobs and trials: the same assertions on SQLite and PostgreSQL (``storage`` fixture)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest

from sparsearch.errors import NotFoundError, StorageError
from sparsearch.storage import (
    FINISHED_JOB_STATUSES,
    JOB_STATUSES,
    TRIAL_STATUSES,
    ConflictError,
    Storage,
)

CONTRACT_TRIAL_KEYS = {
    "index", "status", "params", "accuracy", "test_accuracy", "flash_bytes", "ram_bytes",
    "activation_bytes", "macs", "nnz_flash_bytes", "param_count", "feasible", "pareto",
    "charged", "pruning", "generator", "gen_seconds", "train_seconds", "error", "worker_pid",
    "worker_host", "worker_node", "tflm_flash_bytes", "tflm_ram_bytes", "c_flash_bytes",
    "c_ram_bytes", "c_stack_bytes", "instructions", "c_error",
}  # fmt: skip


def add(storage: Storage, job_id: str, index: int, status: str = "running", **kw):
    args = {
        "params": {"blocks": 2, "lr": 0.01},
        "generator": "sobol",
        "gen_seconds": 0.5,
        "estimates": {"flash_bytes": 12_000, "ram_bytes": 3_000, "macs": 40_000},
        "feasible": True,
        "pruning": {"method": "magnitude", "level": 0.5},
    }
    args.update(kw)
    return storage.add_trial(job_id, index, status=status, **args)


def test_status_vocabulary_matches_contract() -> None:
    assert JOB_STATUSES == ("queued", "running", "interrupted", "completed", "failed", "cancelled")
    assert TRIAL_STATUSES == ("queued", "running", "completed", "failed", "infeasible", "stopped")
    assert set(FINISHED_JOB_STATUSES) == {"completed", "failed", "cancelled"}


def test_create_and_get_job(storage: Storage) -> None:
    before = datetime.now(UTC)
    config = {"limits": {"flash_bytes": 32_000, "ram_bytes": 4_000}, "budget": 10, "seed": 7}
    job = storage.create_job(dataset="digits", config=config)
    assert len(job.id) == 12 and job.status == "queued" and job.dataset == "digits"
    assert job.config == config
    assert job.created_at.tzinfo is not None and job.created_at.utcoffset().total_seconds() == 0
    assert before <= job.created_at <= job.updated_at <= datetime.now(UTC)
    assert job.started_at is None and job.finished_at is None
    assert storage.get_job(job.id) == job
    data = json.loads(json.dumps(job.to_json()))
    assert data["status"] == "queued" and data["config"] == config
    assert datetime.fromisoformat(data["created_at"]) == job.created_at

    named = storage.create_job(dataset="digits", config={}, job_id="my-job_1")
    assert storage.get_job("my-job_1").id == named.id
    with pytest.raises(ConflictError, match="my-job_1 already exists"):
        storage.create_job(dataset="fashion-mnist", config={}, job_id="my-job_1")
    assert storage.get_job("my-job_1").dataset == "digits"
    with pytest.raises(ValueError, match="invalid job id"):
        storage.create_job(dataset="digits", config={}, job_id="../escape")
    with pytest.raises(ValueError, match="JSON"):
        storage.create_job(dataset="digits", config={"x": float("nan")})


def test_job_lifecycle_timestamps(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    running = storage.set_job_status(job.id, "running")
    assert running.started_at is not None and running.finished_at is None
    assert running.updated_at >= job.updated_at

    interrupted = storage.set_job_status(job.id, "interrupted", error="scheduler restarted")
    assert interrupted.finished_at is not None and interrupted.error == "scheduler restarted"
    assert not interrupted.finished

    resumed = storage.set_job_status(job.id, "running")
    assert resumed.started_at == running.started_at  # first start is kept
    assert resumed.finished_at is None and resumed.error is None

    done = storage.set_job_status(job.id, "completed")
    assert done.finished and done.finished_at >= done.started_at
    assert storage.get_job(job.id).status == "completed"

    failed = storage.set_job_status(job.id, "failed", error="limits too tight for this space")
    assert failed.error == "limits too tight for this space"
    with pytest.raises(ValueError, match="unknown job status 'done'"):
        storage.set_job_status(job.id, "done")
    with pytest.raises(ValueError, match="unknown job status"):
        storage.set_job_status(job.id, "RUNNING")
    assert storage.get_job(job.id).status == "failed"


def test_list_and_count_jobs(storage: Storage) -> None:
    ids = [storage.create_job(dataset="digits", config={"n": i}).id for i in range(5)]
    storage.set_job_status(ids[1], "running")
    storage.set_job_status(ids[3], "running")
    assert [j.id for j in storage.list_jobs()] == ids[::-1]  # newest first
    assert [j.id for j in storage.list_jobs(limit=2, offset=1)] == [ids[3], ids[2]]
    assert {j.id for j in storage.list_jobs(status="running")} == {ids[1], ids[3]}
    assert storage.count_jobs() == 5
    assert storage.count_jobs("running") == 2 and storage.count_jobs("failed") == 0
    with pytest.raises(ValueError):
        storage.list_jobs(status="bogus")


def test_missing_rows_raise_not_found(storage: Storage) -> None:
    with pytest.raises(NotFoundError, match="does not exist") as info:
        storage.get_job("nope")
    assert "sparsearch jobs" in (info.value.hint or "")
    for call in (
        lambda: storage.set_job_status("nope", "running"),
        lambda: storage.delete_job("nope"),
        lambda: storage.list_trials("nope"),
        lambda: storage.fail_unfinished_trials("nope", "x"),
        lambda: add(storage, "nope", 0),
    ):
        with pytest.raises(NotFoundError):
            call()
    job = storage.create_job(dataset="digits", config={})
    with pytest.raises(NotFoundError, match="has no trial 3"):
        storage.get_trial(job.id, 3)


def test_update_job_summary(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    updated = storage.update_job_summary(job.id, hypervolume=0.42, best_accuracy=0.93)
    assert (updated.hypervolume, updated.best_accuracy) == (0.42, 0.93)
    assert storage.get_job(job.id).hypervolume == pytest.approx(0.42)
    cleared = storage.update_job_summary(job.id, hypervolume=None, best_accuracy=0.95)
    assert cleared.hypervolume is None and cleared.best_accuracy == pytest.approx(0.95)


def test_add_trial_and_json_contract(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    trial = add(storage, job.id, 0, estimates={"flash_bytes": 5_000_000_000, "param_count": 9})
    assert trial.index == 0 and trial.status == "running" and not trial.pareto
    assert trial.flash_bytes == 5_000_000_000 and trial.param_count == 9 and trial.ram_bytes is None
    assert trial.finished_at is None and trial.created_at.tzinfo is not None
    data = json.loads(json.dumps(trial.to_json()))
    assert set(data) >= CONTRACT_TRIAL_KEYS
    assert data["params"] == {"blocks": 2, "lr": 0.01} and data["pruning"]["level"] == 0.5
    assert data["generator"] == "sobol" and data["gen_seconds"] == 0.5

    infeasible = add(storage, job.id, 1, status="infeasible", feasible=False)
    assert infeasible.finished_at is not None and infeasible.feasible is False
    assert storage.get_trial(job.id, 1) == infeasible

    with pytest.raises(ValueError, match="unknown estimate key"):
        add(storage, job.id, 2, estimates={"flash_kb": 3})
    with pytest.raises(ValueError, match="unknown trial status"):
        add(storage, job.id, 2, status="done")
    with pytest.raises(ValueError, match="index"):
        add(storage, job.id, -1)
    assert [t.index for t in storage.list_trials(job.id)] == [0, 1]


def test_trial_index_unique_per_job(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    other = storage.create_job(dataset="digits", config={})
    add(storage, job.id, 0, params={"first": True})
    with pytest.raises(ConflictError, match="trial 0 of job .* already exists"):
        add(storage, job.id, 0, params={"second": True})
    assert isinstance(ConflictError("x"), StorageError)
    assert storage.get_trial(job.id, 0).params == {"first": True}
    assert add(storage, other.id, 0).index == 0  # same index in another job is fine


def test_list_trials_ordered_and_filtered(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    for index, status in [(2, "running"), (0, "infeasible"), (1, "running")]:
        add(storage, job.id, index, status=status)
    assert [t.index for t in storage.list_trials(job.id)] == [0, 1, 2]
    assert [t.index for t in storage.list_trials(job.id, status="running")] == [1, 2]
    assert storage.list_trials(job.id, status="completed") == []


def test_finish_trial_metrics(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    add(storage, job.id, 0)
    done = storage.finish_trial(
        job.id, 0, status="completed",
        metrics={"accuracy": 0.91, "test_accuracy": 0.9, "flash_bytes": 14_400,
                 "ram_bytes": 10_336},
        feasible=False, train_seconds=12.5, worker_pid=4242, worker_host="node-1",
        worker_node="4f2a" * 14,
    )  # fmt: skip
    assert (done.accuracy, done.test_accuracy) == (0.91, 0.9)
    assert (done.flash_bytes, done.ram_bytes, done.macs) == (14_400, 10_336, 40_000)
    assert done.feasible is False and done.train_seconds == 12.5
    assert (done.worker_pid, done.worker_host) == (4242, "node-1")
    assert done.worker_node == "4f2a" * 14 and done.to_json()["worker_node"] == done.worker_node
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert storage.get_trial(job.id, 0) == done
    with pytest.raises(ValueError, match="unknown metric key"):
        storage.finish_trial(job.id, 0, status="completed", metrics={"int8_acc": 0.9})
    with pytest.raises(ValueError, match="unknown trial status"):
        storage.finish_trial(job.id, 0, status="ok", metrics={})
    with pytest.raises(NotFoundError):
        storage.finish_trial(job.id, 5, status="failed", metrics={})


def test_fail_unfinished_trials(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    add(storage, job.id, 0, status="running")
    add(storage, job.id, 1, status="queued")
    add(storage, job.id, 2, status="running")
    storage.finish_trial(job.id, 2, status="completed", metrics={"accuracy": 0.8})
    add(storage, job.id, 3, status="infeasible", feasible=False)
    assert storage.fail_unfinished_trials(job.id, "worker lost: node-1 died") == 2
    trials = {t.index: t for t in storage.list_trials(job.id)}
    assert [trials[i].status for i in range(4)] == ["failed", "failed", "completed", "infeasible"]
    assert trials[0].error == trials[1].error == "worker lost: node-1 died"
    assert trials[0].finished_at is not None and trials[2].error is None
    assert storage.fail_unfinished_trials(job.id, "again") == 0


def test_set_pareto_flags_exactly_those(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    other = storage.create_job(dataset="digits", config={})
    for i in range(5):
        add(storage, job.id, i)
    add(storage, other.id, 1)
    storage.set_pareto(other.id, [1])

    def front() -> list[int]:
        return [t.index for t in storage.list_trials(job.id) if t.pareto]

    storage.set_pareto(job.id, [1, 3])
    assert front() == [1, 3]
    storage.set_pareto(job.id, iter([0, 3, 4]))
    assert front() == [0, 3, 4]
    with pytest.raises(NotFoundError, match="no trial"):
        storage.set_pareto(job.id, [1, 99])
    assert front() == [0, 3, 4]  # unchanged: one transaction
    storage.set_pareto(job.id, [])
    assert front() == []
    assert storage.get_trial(other.id, 1).pareto  # other jobs untouched


def test_claim_next_job_is_exclusive(storage: Storage) -> None:
    assert storage.claim_next_job() is None
    ids = [storage.create_job(dataset="digits", config={}).id for _ in range(3)]
    storage.set_job_status(ids[2], "interrupted")
    claimed: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        job = storage.claim_next_job()
        if job is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(claimed) == sorted(ids[:2])
    assert all(storage.get_job(i).started_at is not None for i in ids[:2])
    resumed = storage.claim_next_job(statuses=("queued", "interrupted"))
    assert resumed is not None and resumed.id == ids[2] and resumed.status == "running"
    assert resumed.finished_at is None
