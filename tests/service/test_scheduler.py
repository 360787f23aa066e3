"""The scheduler: claims queued and interrupted jobs, drives them with the core's driver, stops
cleanly (cancel, stop event, SIGTERM) and leaves every job resumable or finished.

Every job here trains for real on the session's Ray (digits, a few seconds per trial); the
database is a SQLite file under ``tmp_path`` (the claim/heartbeat SQL itself is tested on both
backends in ``tests/storage``).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading

import pytest
from service_helpers import PYTHON, queue_job, service_env, settings_for, wait_for

from sparsearch.service import Scheduler
from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path, ray_address):
    return settings_for(tmp_path, ray_address)


@pytest.fixture
def db(settings):
    storage = open_storage(settings.database_url, settings.artifact_dir)
    yield storage
    storage.close()


def _check_finished_within_budget(db, job_id: str, budget: int) -> list:
    trials = db.list_trials(job_id)
    assert [t.index for t in trials] == list(range(len(trials)))  # unique, none skipped
    assert sum(t.trained for t in trials) == budget  # charged completed + failed
    assert not [t for t in trials if t.status in ("queued", "running")]
    return trials


def test_run_once_completes_a_queued_job_then_an_interrupted_one(db, settings, caplog):
    caplog.set_level(logging.INFO, logger="sparsearch.service.scheduler")
    first = queue_job(db)
    second = queue_job(db, seed=1)
    db.set_job_status(second.id, "interrupted")
    with Scheduler(settings, db) as sched:
        assert sched.run_once() is True
        assert db.get_job(first.id).status == "completed"  # the older job first
        assert db.get_job(second.id).status == "interrupted"
        assert sched.run_once() is True
        assert db.get_job(second.id).status == "completed"
        assert sched.run_once() is False  # nothing left
    for job in (first, second):
        trials = _check_finished_within_budget(db, job.id, 2)
        assert any(t.pareto for t in trials)
        assert db.get_job(job.id).hypervolume is not None
    # Progress lines carry the job and the trial as fields (JSON logs turn them into keys).
    done = [r for r in caplog.records if " completed: int8 accuracy" in r.getMessage()]
    assert {(r.job_id, r.trial_index) for r in done} == {
        (t.job_id, t.index)
        for job in (first, second)
        for t in db.list_trials(job.id, status="completed")
    }


def test_a_failing_job_is_recorded_and_the_scheduler_goes_on(db, settings):
    tight = queue_job(db, flash_bytes=1024, ram_bytes=512)
    with Scheduler(settings, db) as sched:
        assert sched.run_once() is True  # no exception escapes
        assert sched.run_once() is False
    job = db.get_job(tight.id)
    assert job.status == "failed"
    assert "limits too tight" in job.error


def test_cancel_request_stops_a_running_job(db, settings):
    job = queue_job(db, trials=4, epochs=40)
    sched = Scheduler(settings, db)
    ran = []
    worker = threading.Thread(target=lambda: ran.append(sched.run_once()))
    worker.start()
    try:
        running = wait_for("a running trial", lambda: db.list_trials(job.id, status="running"), 90)
        db.request_cancel(job.id)
        worker.join(timeout=30)
        assert not worker.is_alive(), "the driver did not notice the cancel request"
    finally:
        worker.join(timeout=60)
        sched.close()
    assert ran == [True]
    assert db.get_job(job.id).status == "cancelled"
    trials = db.list_trials(job.id)
    assert not [t for t in trials if t.status in ("queued", "running")]
    for t in running:
        after = db.get_trial(job.id, t.index)
        assert (after.status, after.error) == ("failed", "cancelled")


def test_state_is_running_while_a_scheduler_runs_and_stop_interrupts_its_job(db, settings):
    assert db.scheduler_state(stale_after=5) == "none"
    job = queue_job(db, trials=4, epochs=40)
    stop = threading.Event()
    sched = Scheduler(settings, db)
    worker = threading.Thread(target=sched.run_forever, args=(stop,))
    worker.start()
    try:
        wait_for("a running trial", lambda: db.list_trials(job.id, status="running"), 90)
        assert db.scheduler_state(stale_after=5) == "running"
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert db.scheduler_state(stale_after=5) == "none"
    assert db.get_job(job.id).status == "interrupted"  # resumable by the next scheduler
    trials = db.list_trials(job.id)
    assert not [t for t in trials if t.status in ("queued", "running")]
    assert {t.error for t in trials if t.status == "failed"} <= {"interrupted"}


def test_sigterm_interrupts_the_job_and_a_new_scheduler_finishes_it(db, settings, tmp_path):
    job = queue_job(db, trials=4, epochs=2)
    log_path = tmp_path / "scheduler.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "sparsearch", "scheduler"],
            env=service_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            wait_for(
                "a completed trial",
                lambda: db.list_trials(job.id, status="completed") or proc.poll() is not None,
                120,
            )
            assert proc.poll() is None, log_path.read_text()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log_path.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "Traceback" not in log_path.read_text()
    assert db.get_job(job.id).status == "interrupted"
    assert db.scheduler_state(stale_after=60) == "none"  # the row was marked stopped
    trials = db.list_trials(job.id)
    assert not [t for t in trials if t.status in ("queued", "running")]
    # A graceful stop: the trials it cut short are failed "interrupted" and not charged.
    assert {(t.error, t.charged) for t in trials if t.status == "failed"} <= {
        ("interrupted", False)
    }
    trained_before = sum(t.trained for t in trials)
    assert 1 <= trained_before < 4
    kept = {t.index: (t.status, t.accuracy, t.params) for t in trials}

    with Scheduler(settings, db) as sched:
        assert sched.run_once() is True
    assert db.get_job(job.id).status == "completed"
    # The cut-short trials do not count: the job still trains its whole budget of charged ones.
    trials = _check_finished_within_budget(db, job.id, 4)
    assert {t.index: (t.status, t.accuracy, t.params) for t in trials[: len(kept)]} == kept


def test_a_signal_during_an_import_does_not_raise_into_the_import_machinery(
    tmp_path, monkeypatch
) -> None:
    """SIGTERM landing inside importlib (a lazy import of torch, say) must not raise there: the
    exception would be printed as "Exception ignored" and lost; the stop flag ends the job."""
    import importlib
    import sys

    from sparsearch.service.scheduler import _importing

    assert not _importing(sys._getframe())
    (tmp_path / "probe_import_frame.py").write_text(
        "import sys\nfrom sparsearch.service.scheduler import _importing\n"
        "SEEN = _importing(sys._getframe())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert importlib.import_module("probe_import_frame").SEEN
