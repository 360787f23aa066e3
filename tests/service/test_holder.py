"""A local run's hold on its job (``service.holder.JobHolder``) on real storage, SQLite and
PostgreSQL: it registers as a CLI holder, beats for itself and the job, answers the driver's
``should_stop`` with "cancelled" or LOST, lets go without touching a job that is not its own."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from service_helpers import wait_for

from sparsearch.search.driver import LOST
from sparsearch.service.holder import JobHolder
from sparsearch.storage import Storage
from sparsearch.storage.schedulers import HeldError

STALE = 0.5


def _settings(**changes: float) -> SimpleNamespace:
    return SimpleNamespace(**{"heartbeat_seconds": 0.05, "stale_after_seconds": STALE, **changes})


def _trial(storage: Storage, job_id: str, index: int) -> None:
    storage.add_trial(
        job_id, index, status="running", params={}, generator="random:design", gen_seconds=0.0,
        estimates={}, feasible=True, pruning={"method": "none", "level": 0.0},
    )  # fmt: skip


def test_a_cli_run_holds_its_job_with_heartbeats(storage: Storage) -> None:
    with JobHolder(storage, _settings()) as holder:
        job = holder.create(dataset="digits", config={})
        assert holder.id is not None and holder.id.startswith("cli:")
        assert (job.status, job.scheduler_id) == ("running", holder.id)
        first = job.heartbeat_at
        assert first is not None
        wait_for("a job heartbeat", lambda: storage.get_job(job.id).heartbeat_at > first, 10)
        assert storage.holds_job(job.id, holder.id)
        assert storage.scheduler_state(stale_after=60) == "none"  # not a scheduler
        # Another run cannot take it while the heartbeats are fresh.
        other = JobHolder(storage, _settings(stale_after_seconds=30))
        with pytest.raises(HeldError, match=holder.id):
            other.claim(job.id)
        other.close()
        assert holder.should_stop() is None
        storage.request_cancel(job.id)
        assert holder.should_stop() == "cancelled"
        holder_id = holder.id
    assert holder.id is None
    # Closed: no more beats.
    time.sleep(0.2)
    beat = storage.get_job(job.id).heartbeat_at
    time.sleep(0.3)
    assert storage.get_job(job.id).heartbeat_at == beat
    assert storage.claim_next_job(("queued",)) is None  # it never was claimable
    assert [c.scheduler_id for c in storage.list_claims(job.id)] == [holder_id]


def test_a_killed_holder_is_taken_over_and_its_driver_told_lost(storage: Storage) -> None:
    dead = JobHolder(storage, _settings(heartbeat_seconds=60))  # never beats: "killed"
    job = dead.claim(storage.create_job(dataset="digits", config={}).id)
    _trial(storage, job.id, 0)
    time.sleep(STALE + 0.2)
    with JobHolder(storage, _settings()) as heir:
        taken = heir.claim(job.id)
        assert taken.scheduler_id == heir.id
        (lost,) = storage.list_trials(job.id)
        assert (lost.status, lost.error, lost.charged) == ("failed", "scheduler lost", True)
        assert dead.should_stop() == LOST and dead.lost
        dead.leave("interrupted", "interrupted", None, charged=False)  # not its job: no write
        assert storage.get_job(job.id).status == "running"
        assert storage.holds_job(job.id, heir.id)
        assert heir.should_stop() is None and not heir.lost
    dead.close()


def test_the_heartbeat_thread_notices_a_takeover(storage: Storage) -> None:
    with JobHolder(storage, _settings()) as holder:
        job = holder.create(dataset="digits", config={})
        storage.set_job_status(job.id, "interrupted")  # as a stale scan would
        storage.claim_next_job(("interrupted",), scheduler_id="elsewhere:1:aa")
        wait_for("the holder to notice", lambda: holder.lost, 10)
        assert holder.should_stop() == LOST


def test_leave_ends_a_job_still_held_without_charging_a_graceful_stop(
    storage: Storage,
) -> None:
    with JobHolder(storage, _settings()) as holder:
        job = holder.create(dataset="digits", config={})
        _trial(storage, job.id, 0)
        holder.leave("interrupted", "interrupted", None, charged=False)
    after = storage.get_job(job.id)
    assert after.status == "interrupted"
    (trial,) = storage.list_trials(job.id)
    assert (trial.status, trial.charged, trial.trained) == ("failed", False, False)
    with JobHolder(storage, _settings()) as holder:
        assert holder.claim(job.id).status == "running"  # resumable at once
        holder.leave("completed", "x", None, charged=True)
        holder.leave("failed", "y", "z", charged=True)  # no longer held: nothing written
    assert storage.get_job(job.id).status == "completed"


def test_a_scheduler_stopped_before_its_driver_ran_leaves_trials_uncharged(
    storage: Storage, tmp_path, monkeypatch
) -> None:
    """SIGTERM (KeyboardInterrupt) while the scheduler still holds the job: its own clean-up
    fails the in-flight trials uncharged (a graceful stop), the job interrupted; a crash's
    clean-up (any other error) leaves them charged."""
    from service_helpers import settings_for

    from sparsearch.service import Scheduler

    def drive(stop: type[BaseException]):
        def _drive(self, job_id: str) -> None:
            _trial(storage, job_id, 0)
            raise stop("stopped")

        return _drive

    job = storage.create_job(dataset="digits", config={})
    with Scheduler(settings_for(tmp_path, ""), storage) as scheduler:
        monkeypatch.setattr(Scheduler, "_drive", drive(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            scheduler.run_once()
    assert storage.get_job(job.id).status == "interrupted"
    (trial,) = storage.list_trials(job.id)
    assert (trial.status, trial.error, trial.charged) == ("failed", "interrupted", False)

    storage.set_job_status(job.id, "cancelled")  # out of the way of the next claim
    other = storage.create_job(dataset="digits", config={})
    with Scheduler(settings_for(tmp_path, ""), storage) as scheduler:
        monkeypatch.setattr(Scheduler, "_drive", drive(RuntimeError))
        assert scheduler.run_once() is True
    assert storage.get_job(other.id).status == "failed"
    (trial,) = storage.list_trials(other.id)
    assert (trial.status, trial.error, trial.charged) == ("failed", "job failed", True)
