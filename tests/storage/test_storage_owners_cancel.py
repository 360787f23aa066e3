"""Job owners, listing/sorting/paging, cancel and delete — on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest

from sparsearch.errors import NotFoundError
from sparsearch.storage import JOB_SORT_KEYS, ConflictError, Storage


def new_job(storage: Storage, owner: str = "local", **kw):
    return storage.create_job(dataset="digits", config={}, owner=owner, **kw)


def test_owner_default_fields_and_json(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    assert job.owner == "local" and job.cancel_requested is False
    assert job.scheduler_id is None and job.heartbeat_at is None
    data = json.loads(json.dumps(job.to_json()))
    assert data["owner"] == "local" and data["cancel_requested"] is False
    alice = new_job(storage, "alice.b@example-1_x")
    assert storage.get_job(alice.id).owner == "alice.b@example-1_x"
    for bad in ("", "a" * 65, "bad owner", "a\x00b", "jörg", "a/b", None):
        with pytest.raises(ValueError, match="invalid owner"):
            new_job(storage, bad)
    assert storage.count_jobs() == 2


def test_another_owners_job_looks_missing(storage: Storage) -> None:
    job = new_job(storage, "alice")
    with pytest.raises(NotFoundError) as missing:
        storage.get_job("nope0000", owner="bob")
    calls = {
        "get": lambda: storage.get_job(job.id, owner="bob"),
        "cancel": lambda: storage.request_cancel(job.id, owner="bob"),
        "delete": lambda: storage.delete_job(job.id, owner="bob"),
    }
    for name, call in calls.items():
        with pytest.raises(NotFoundError) as info:
            call()
        assert info.value.message == missing.value.message.replace("nope0000", job.id), name
        assert info.value.hint == missing.value.hint
    after = storage.get_job(job.id)
    assert after.status == "queued" and not after.cancel_requested  # nothing happened
    assert storage.get_job(job.id, owner="alice") == after
    assert storage.list_jobs(owner="bob") == [] and storage.count_jobs(owner="bob") == 0


def test_list_count_and_active_by_owner(storage: Storage) -> None:
    a = [new_job(storage, "alice").id for _ in range(6)]
    b = new_job(storage, "bob").id
    statuses = ["running", "interrupted", "completed", "failed", "cancelled"]
    for job_id, status in zip(a[:5], statuses, strict=True):
        storage.set_job_status(job_id, status)
    assert storage.count_active_jobs("alice") == 3  # queued + running + interrupted
    assert storage.count_active_jobs("bob") == 1 and storage.count_active_jobs("carol") == 0
    assert [j.id for j in storage.list_jobs(owner="alice")] == a[::-1]
    assert [j.id for j in storage.list_jobs(owner="bob")] == [b]
    assert storage.count_jobs(owner="alice") == 6 and storage.count_jobs() == 7
    assert storage.count_jobs("queued") == 2  # status stays positional
    assert storage.count_jobs("queued", owner="alice") == 1
    assert storage.count_jobs(status="running", owner="bob") == 0
    assert [j.id for j in storage.list_jobs(owner="alice", status="failed")] == [a[3]]


def test_job_sort_orders(storage: Storage) -> None:
    ids = [new_job(storage, job_id=f"j{i}").id for i in range(5)]
    hv = {"j0": 0.5, "j1": None, "j2": 0.9, "j3": 0.5, "j4": None}
    acc = {"j0": 0.7, "j1": 0.8, "j2": None, "j3": 0.95, "j4": 0.1}
    for job_id in ids:
        storage.update_job_summary(job_id, hypervolume=hv[job_id], best_accuracy=acc[job_id])
    for job_id, status in [("j0", "failed"), ("j2", "running"), ("j4", "completed")]:
        storage.set_job_status(job_id, status)

    def order(sort: str) -> list[str]:
        return [j.id for j in storage.list_jobs(sort=sort)]

    assert order("-created_at") == ["j4", "j3", "j2", "j1", "j0"]
    assert order("created_at") == ids
    assert order("id") == ids and order("-id") == ids[::-1]
    # NULLs last both ways; ties by id in the sort's direction.
    assert order("hypervolume") == ["j0", "j3", "j2", "j1", "j4"]
    assert order("-hypervolume") == ["j2", "j3", "j0", "j4", "j1"]
    assert order("best_accuracy") == ["j4", "j0", "j1", "j3", "j2"]
    assert order("-best_accuracy") == ["j3", "j1", "j0", "j4", "j2"]
    # Statuses in lifecycle order: queued, running, interrupted, completed, failed, cancelled.
    assert order("status") == ["j1", "j3", "j2", "j4", "j0"]
    assert order("-status") == ["j0", "j4", "j2", "j3", "j1"]
    assert set(JOB_SORT_KEYS) == {"created_at", "status", "hypervolume", "best_accuracy", "id"}
    for bad in ("name", "-", "--id", "", "+id", "created_at "):
        with pytest.raises(ValueError, match="created_at, status, hypervolume, best_accuracy, id"):
            storage.list_jobs(sort=bad)


def test_job_paging_matches_count(storage: Storage) -> None:
    for i in range(7):
        new_job(storage, "alice" if i % 3 else "bob")
    full = [j.id for j in storage.list_jobs(owner="alice", sort="id")]
    assert len(full) == storage.count_jobs(owner="alice") == 4
    pages = [storage.list_jobs(owner="alice", sort="id", limit=3, offset=o) for o in (0, 3, 6)]
    assert [len(p) for p in pages] == [3, 1, 0]
    assert [j.id for page in pages for j in page] == full
    assert storage.list_jobs(limit=0) == []
    with pytest.raises(ValueError, match="limit and offset"):
        storage.list_jobs(offset=-1)


def test_cancel_state_machine(storage: Storage) -> None:
    queued, interrupted, running = (new_job(storage).id for _ in range(3))
    storage.set_job_status(interrupted, "interrupted", error="scheduler restarted")
    storage.set_job_status(running, "running")

    for job_id in (queued, interrupted):
        job = storage.request_cancel(job_id)
        assert job.status == "cancelled" and job.finished_at is not None and job.finished
        assert storage.get_job(job_id) == job

    job = storage.request_cancel(running, owner="local")
    assert job.status == "running" and job.cancel_requested and job.finished_at is None
    assert storage.request_cancel(running).cancel_requested  # asking again is fine
    assert storage.is_cancel_requested(running)
    storage.set_job_status(running, "cancelled")  # what the driver does when it stops

    for status in ("completed", "failed"):
        done = new_job(storage).id
        storage.set_job_status(done, status)
        with pytest.raises(ConflictError, match=f"job {done} is already {status}") as info:
            storage.request_cancel(done)
        assert info.value.hint and "delete" in info.value.hint
        assert storage.get_job(done).status == status and not storage.get_job(done).cancel_requested
    with pytest.raises(ConflictError, match="already cancelled"):
        storage.request_cancel(queued)
    with pytest.raises(NotFoundError):
        storage.request_cancel("nope")


def test_delete_running_job_is_a_conflict(storage: Storage) -> None:
    job = new_job(storage, "alice").id
    storage.set_job_status(job, "running")
    with pytest.raises(ConflictError, match=f"job {job} is running") as info:
        storage.delete_job(job, owner="alice")
    assert "cancel it first" in (info.value.hint or "")
    assert storage.get_job(job).status == "running"
    storage.request_cancel(job)
    with pytest.raises(ConflictError):
        storage.delete_job(job)  # still running until its driver stops
    storage.set_job_status(job, "cancelled")
    storage.delete_job(job, owner="alice")
    with pytest.raises(NotFoundError):
        storage.get_job(job)
    for status in ("queued", "interrupted", "completed", "failed"):
        other = new_job(storage).id
        if status != "queued":
            storage.set_job_status(other, status)
        storage.delete_job(other)
    assert storage.count_jobs() == 0


def test_trial_counts_one_query(storage: Storage) -> None:
    a, b = new_job(storage).id, new_job(storage).id
    statuses = ["completed", "completed", "infeasible", "failed", "running"]
    for i, status in enumerate(statuses):
        storage.add_trial(
            a, i, status=status, params={}, generator="sobol", gen_seconds=0.1,
            estimates={}, feasible=status != "infeasible", pruning={},
        )  # fmt: skip
    counts = storage.trial_counts([a, b, "nope", a])
    assert counts == {
        a: {"completed": 2, "infeasible": 1, "failed": 1, "running": 1},
        b: {},
        "nope": {},
    }
    assert storage.trial_counts([]) == {}


def test_claim_cancels_interrupted_job_with_a_cancel_request(storage: Storage) -> None:
    doomed, waiting = new_job(storage).id, new_job(storage).id
    storage.claim_next_job(scheduler_id="s1")
    storage.request_cancel(doomed)
    storage.set_job_status(doomed, "interrupted")  # crashed before its driver saw the request
    claimed = storage.claim_next_job(statuses=("queued", "interrupted"), scheduler_id="s2")
    assert claimed is not None and claimed.id == waiting
    gone = storage.get_job(doomed)
    assert gone.status == "cancelled" and gone.finished_at is not None
    assert storage.claim_next_job(statuses=("queued", "interrupted")) is None
