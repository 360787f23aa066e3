"""Charged trials (what counts against a budget), screened counts, and holders: schedulers and
local CLI runs claiming a job by id (``claim_job``) — SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest

from sparsearch.errors import NotFoundError
from sparsearch.storage import ConflictError, Storage
from sparsearch.storage.schedulers import HeldError
from sparsearch.vocabulary import JOB_STATUSES, STRATEGIES, TARGETS

STALE = 0.3


def add(storage: Storage, job_id: str, index: int, status: str = "running", **kw):
    args = {
        "params": {"n_blocks": 1},
        "generator": "random:design",
        "gen_seconds": 0.1,
        "estimates": {"flash_bytes": 1000, "ram_bytes": 1000},
        "feasible": status != "infeasible",
        "pruning": {"method": "none", "level": 0.0},
    }
    args.update(kw)
    return storage.add_trial(job_id, index, status=status, **args)


# -- charged trials ----------------------------------------------------------------------------


def test_charged_is_stored_kept_and_in_the_trial_json(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={}).id
    first = add(storage, job, 0)
    assert first.charged is True and json.loads(json.dumps(first.to_json()))["charged"] is True
    assert add(storage, job, 1, charged=False).charged is False

    done = storage.finish_trial(job, 0, status="completed", metrics={"accuracy": 0.9})
    assert done.charged is True and done.trained is True  # None keeps the stored value
    cut = storage.finish_trial(job, 1, status="failed", metrics={}, error="x")
    assert cut.charged is False and cut.trained is False
    assert storage.finish_trial(job, 1, status="failed", metrics={}, charged=True).trained
    assert not storage.finish_trial(job, 1, status="failed", metrics={}, charged=False).trained
    page, _ = storage.trial_page(job)  # the API's page reads the column positionally
    assert [t.charged for t in page] == [True, False]
    assert page == storage.list_trials(job)


def test_graceful_stops_leave_trials_uncharged_crashes_charged(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={}).id
    for i in range(3):
        add(storage, job, i)
    storage.finish_trial(job, 2, status="completed", metrics={"accuracy": 0.5})
    assert storage.fail_unfinished_trials(job, "interrupted", charged=False) == 2
    stopped = storage.list_trials(job)
    assert [(t.status, t.error, t.charged) for t in stopped[:2]] == [
        ("failed", "interrupted", False),
        ("failed", "interrupted", False),
    ]
    assert [t.trained for t in stopped] == [False, False, True]

    add(storage, job, 3)
    add(storage, job, 4, status="queued")
    assert storage.fail_unfinished_trials(job, "interrupted") == 2  # the default: a crash
    assert [t.charged for t in storage.list_trials(job)[3:]] == [True, True]


def test_trial_counts_count_charged_completed_and_failed_only(storage: Storage) -> None:
    job, other = (storage.create_job(dataset="digits", config={}).id for _ in range(2))
    for i, status in enumerate(["completed", "completed", "failed", "infeasible", "running"]):
        add(storage, job, i, status=status)
    add(storage, job, 5)
    add(storage, job, 6)
    storage.fail_unfinished_trials(job, "interrupted", charged=False)  # 4, 5, 6: graceful
    add(storage, job, 7, status="failed", charged=False)
    add(storage, other, 0, status="completed")
    counts = storage.trial_counts([job, other])
    assert counts[job] == {"completed": 2, "failed": 1, "infeasible": 1, "uncharged": 4}
    assert counts[other] == {"completed": 1}
    trained = sum(t.trained for t in storage.list_trials(job))
    assert trained == counts[job]["completed"] + counts[job]["failed"] == 3


def test_stale_holders_trials_stay_charged(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={}).id
    storage.claim_next_job(scheduler_id="gone:1:aa")
    add(storage, job, 0)
    time.sleep(STALE + 0.15)
    assert storage.interrupt_stale_jobs(stale_after=STALE) == [job]
    (lost,) = storage.list_trials(job)
    assert (lost.status, lost.error, lost.charged, lost.trained) == (
        "failed",
        "scheduler lost",
        True,
        True,
    )


# -- screened candidates, the job's strategy ---------------------------------------------------


def test_screened_count_and_strategy_in_the_job_json(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={"strategy": "random"})
    assert job.screened == 0 and job.strategy == "random"
    updated = storage.update_job_summary(job.id, hypervolume=0.1, best_accuracy=0.5, screened=7)
    assert updated.screened == 7
    kept = storage.update_job_summary(job.id, hypervolume=0.2, best_accuracy=0.6)
    assert kept.screened == 7 and kept.hypervolume == pytest.approx(0.2)
    data = json.loads(json.dumps(storage.get_job(job.id).to_json()))
    assert (data["screened"], data["strategy"]) == (7, "random")
    plain = storage.create_job(dataset="digits", config={})  # stored before strategies: bo
    assert plain.to_json()["strategy"] == "bo"
    with pytest.raises(ValueError, match="screened"):
        storage.update_job_summary(job.id, hypervolume=None, best_accuracy=None, screened=-1)


def test_the_jobs_target_in_its_record_and_json(storage: Storage) -> None:
    for target in TARGETS:
        job = storage.get_job(storage.create_job(dataset="digits", config={"target": target}).id)
        assert job.target == target
        assert json.loads(json.dumps(job.to_json()))["target"] == target
    plain = storage.create_job(dataset="digits", config={})  # stored before targets: TFLM
    assert plain.target == "tflm" and plain.to_json()["target"] == "tflm"


def test_monitoring_counts_by_strategy_and_uncharged(storage: Storage) -> None:
    a = storage.create_job(dataset="digits", config={"strategy": "random"}).id
    b = storage.create_job(dataset="digits", config={}).id
    storage.create_job(dataset="digits", config={"strategy": "random", "target": "c"})
    storage.update_job_summary(a, hypervolume=None, best_accuracy=None, screened=5)
    storage.update_job_summary(b, hypervolume=None, best_accuracy=None, screened=2)
    storage.set_job_status(b, "completed")
    add(storage, a, 0)
    add(storage, a, 1, status="completed")
    storage.fail_unfinished_trials(a, "interrupted", charged=False)
    by_pair = storage.job_strategy_counts()
    assert by_pair[("queued", "random")] == 2 and by_pair[("completed", "bo")] == 1
    assert sum(by_pair.values()) == 3
    assert set(by_pair) == {(s, name) for s in JOB_STATUSES for name in STRATEGIES}
    by_triple = storage.job_counts()
    assert set(by_triple) == {
        (s, name, target) for s in JOB_STATUSES for name in STRATEGIES for target in TARGETS
    }
    # Jobs stored before targets (no key) count as TFLM.
    assert (
        by_triple[("queued", "random", "c")] == 1 and by_triple[("queued", "random", "tflm")] == 1
    )
    assert by_triple[("completed", "bo", "tflm")] == 1 and sum(by_triple.values()) == 3
    assert storage.screened_counts() == dict.fromkeys(STRATEGIES, 0) | {"bo": 2, "random": 5}
    assert storage.uncharged_trial_count() == 1


# -- holders: schedulers and CLI runs ----------------------------------------------------------


def test_cli_holders_are_not_schedulers(storage: Storage) -> None:
    cli = storage.register_scheduler(host="laptop", pid=77, kind="cli")
    kind, host, pid, suffix = cli.split(":")
    assert (kind, host, pid, len(suffix)) == ("cli", "laptop", "77", 8)
    assert storage.scheduler_state(stale_after=60) == "none"  # /healthz counts schedulers
    storage.beat_scheduler(cli)
    scheduler = storage.register_scheduler(host="node", pid=1)
    assert storage.scheduler_state(stale_after=60) == "running"
    storage.stop_scheduler(scheduler)
    assert storage.scheduler_state(stale_after=60) == "none"
    with pytest.raises(ValueError, match="holder kind"):
        storage.register_scheduler(host="x", pid=1, kind="robot")


def test_a_job_created_for_a_holder_is_running_under_it(storage: Storage) -> None:
    cli = storage.register_scheduler(host="laptop", pid=77, kind="cli")
    job = storage.create_job(dataset="digits", config={}, scheduler_id=cli)
    assert (job.status, job.scheduler_id) == ("running", cli)
    assert job.heartbeat_at is not None and job.started_at is not None
    assert storage.claim_next_job(("queued", "interrupted"), scheduler_id="s") is None
    assert storage.holds_job(job.id, cli) and storage.beat_job(job.id, cli)
    assert [(c.scheduler_id, c.previous_status) for c in storage.list_claims(job.id)] == [
        (cli, "queued")
    ]


def test_claim_job_refuses_a_live_holder_naming_it(storage: Storage) -> None:
    scheduler = storage.register_scheduler(host="node-7", pid=4242)
    job = storage.create_job(dataset="digits", config={}).id
    storage.claim_next_job(scheduler_id=scheduler)
    me = storage.register_scheduler(host="laptop", pid=77, kind="cli")
    with pytest.raises(HeldError) as info:
        storage.claim_job(job, scheduler_id=me, stale_after=60)
    message = info.value.message
    assert scheduler in message and "pid 4242" in message and "node-7" in message
    assert "a scheduler" in message and "last heartbeat" in message
    assert "cancel" in (info.value.hint or "") and isinstance(info.value, ConflictError)
    assert storage.holds_job(job, scheduler)  # untouched

    cli = storage.register_scheduler(host="desk", pid=99, kind="cli")
    other = storage.create_job(dataset="digits", config={}, scheduler_id=cli).id
    with pytest.raises(HeldError, match=r"a local `sparsearch search` \(cli:desk:99:"):
        storage.claim_job(other, scheduler_id=me, stale_after=60)
    again = storage.claim_job(other, scheduler_id=cli, stale_after=60)  # the holder itself
    assert again.scheduler_id == cli


def test_claim_job_takes_over_a_stale_holder(storage: Storage) -> None:
    dead = storage.register_scheduler(host="desk", pid=99, kind="cli")
    job = storage.create_job(dataset="digits", config={}, scheduler_id=dead).id
    add(storage, job, 0)
    time.sleep(STALE + 0.15)
    me = storage.register_scheduler(host="laptop", pid=77, kind="cli")
    claimed = storage.claim_job(job, scheduler_id=me, stale_after=STALE)
    assert (claimed.status, claimed.scheduler_id, claimed.error) == ("running", me, None)
    (lost,) = storage.list_trials(job)
    assert (lost.status, lost.error, lost.charged) == ("failed", "scheduler lost", True)
    assert storage.holds_job(job, me) and not storage.beat_job(job, dead)
    assert [(c.scheduler_id, c.previous_status) for c in storage.list_claims(job)] == [
        (dead, "queued"),
        (me, "interrupted"),
    ]


def test_claim_job_of_queued_interrupted_unheld_and_finished_jobs(storage: Storage) -> None:
    me = storage.register_scheduler(host="laptop", pid=77, kind="cli")
    queued = storage.create_job(dataset="digits", config={}).id
    assert storage.claim_job(queued, scheduler_id=me, stale_after=60).scheduler_id == me
    stopped = storage.create_job(dataset="digits", config={}).id
    storage.set_job_status(stopped, "interrupted", error="interrupted")
    resumed = storage.claim_job(stopped, scheduler_id=me, stale_after=60)
    assert (resumed.status, resumed.error, resumed.finished_at) == ("running", None, None)
    legacy = storage.create_job(dataset="digits", config={}).id
    storage.set_job_status(legacy, "running")  # an older CLI's run: no holder at all
    assert storage.claim_job(legacy, scheduler_id=me, stale_after=60).scheduler_id == me
    assert storage.list_claims(legacy)[-1].previous_status == "running"

    done = storage.create_job(dataset="digits", config={}).id
    storage.set_job_status(done, "completed")
    with pytest.raises(ConflictError, match="already completed"):
        storage.claim_job(done, scheduler_id=me, stale_after=60)
    doomed = storage.create_job(dataset="digits", config={}).id
    storage.claim_next_job(scheduler_id="s1")
    storage.request_cancel(doomed)
    storage.set_job_status(doomed, "interrupted")  # stopped before its driver saw the request
    with pytest.raises(ConflictError, match="was cancelled"):
        storage.claim_job(doomed, scheduler_id=me, stale_after=60)
    assert storage.get_job(doomed).status == "cancelled"  # committed despite the refusal
    with pytest.raises(NotFoundError):
        storage.claim_job("nope", scheduler_id=me, stale_after=60)
