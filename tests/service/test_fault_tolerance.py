"""Scheduling that survives faults, with real ``sparsearch scheduler`` processes.

- A scheduler killed with SIGKILL mid-job: a second scheduler, started at once, takes the job
  over once its heartbeat is stale; the trials that were in flight are ``failed`` ("scheduler
  lost") and count toward the budget, no index is used twice, finished rows are never touched
  again, and the front matches the trials (SQLite and PostgreSQL).
- Two schedulers on one PostgreSQL database and three queued jobs: every job runs exactly once.
- A scheduler whose job was taken over while it still lived (e.g. paused past the stale limit)
  stops driving it and writes nothing more to it.

Every job trains for real on the session's Ray (digits); the schedulers join it through
``SPARSEARCH_RAY_ADDRESS`` and start no Ray of their own.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_helpers import kill_group, queue_job, settings_for, start_scheduler, wait_for
from sqlalchemy import select

from sparsearch.config import Settings
from sparsearch.jobconfig import JobConfig
from sparsearch.search.pareto import Point, pareto_indices
from sparsearch.service import Scheduler
from sparsearch.storage import open_storage
from sparsearch.storage.models import Scheduler as SchedulerRow
from sparsearch.vocabulary import accounted_flash

pytestmark = pytest.mark.slow

TRAINED = ("completed", "failed")
FINISHED = ("completed", "failed", "infeasible")
# Fast failure detection for the test: beat every 0.5 s, stale after 3 s, rescan every 0.3 s.
FAST = dict(heartbeat_seconds=0.5, stale_after_seconds=3.0, scheduler_poll_seconds=0.3)


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (from /proc)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == pid:
            kids.append(int(entry))
    return kids


def _stop(proc: subprocess.Popen, log_path: Path) -> None:
    """SIGTERM, then a clean exit within a minute (else SIGKILL and fail)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            pytest.fail(f"scheduler {proc.pid} ignored SIGTERM:\n{log_path.read_text()}")
    assert proc.returncode == 0, log_path.read_text()


@contextlib.contextmanager
def _reaped(procs: list[subprocess.Popen]) -> Iterator[None]:
    """Kill whatever a failing test left running (by process group)."""
    try:
        yield
    finally:
        for proc in procs:
            if proc.poll() is None:
                kill_group(proc)


def _wait_ray_idle(timeout: float = 60) -> None:
    """Trials of a killed scheduler die with it; wait until the shared Ray has every CPU back,
    so later tests do not queue behind leaked workers."""
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    wait_for(
        "the shared Ray to be idle",
        lambda: ray.available_resources().get("CPU", 0) >= total,
        timeout,
        every=0.2,
    )


def _scheduler_pid(scheduler_id: str | None) -> int:
    assert scheduler_id is not None
    return int(scheduler_id.rsplit(":", 2)[1])  # host:pid:random


def _artifacts(db, job_id: str, index: int) -> list[tuple[str, str]]:
    return sorted((a.kind, a.sha256) for a in db.list_artifacts(job_id, index))


def _check_front(db, job_id: str, trials: list) -> None:
    """The stored pareto flags equal the front recomputed from the job's trials."""
    cfg = JobConfig.from_dict(db.get_job(job_id).config)
    points = [
        Point(t.index, t.accuracy, accounted_flash(cfg.flash_accounting, t.to_json()), t.ram_bytes)
        for t in trials
        if t.status == "completed" and t.feasible and t.accuracy is not None
    ]
    assert points, "no completed trial"
    assert {t.index for t in trials if t.pareto} == set(pareto_indices(points))


def _check_budget(trials: list, budget: int) -> None:
    assert [t.index for t in trials] == list(range(len(trials)))  # unique and contiguous
    assert sum(t.status in TRAINED for t in trials) == budget
    assert not [t for t in trials if t.status not in FINISHED]


# -- SIGKILL mid-job -----------------------------------------------------------------------------


@pytest.fixture
def fast_settings(db_url, tmp_path, ray_address) -> Settings:
    return settings_for(tmp_path, ray_address, database_url=db_url, **FAST)


def test_sigkilled_scheduler_job_is_taken_over_and_ends_with_its_budget(
    fast_settings, tmp_path, backend
):
    budget = 5
    log_path = tmp_path / "schedulers.log"
    with open_storage(fast_settings.database_url, fast_settings.artifact_dir) as db:
        job = queue_job(db, trials=budget, parallel=2, epochs=3)
        first = start_scheduler(fast_settings, log_path)
        second = None
        with _reaped([first]):
            wait_for(
                "a completed and a running trial",
                lambda: (
                    first.poll() is not None
                    or db.get_job(job.id).status == "failed"
                    or (
                        db.count_trials(job.id, status="completed") >= 1
                        and db.count_trials(job.id, status="running") >= 1
                    )
                ),
                120,
            )
            assert first.poll() is None, log_path.read_text()
            assert db.get_job(job.id).status == "running", log_path.read_text()
            # Joined to the shared Ray, the scheduler starts no processes of its own (a private
            # Ray would show up here as raylet/gcs children): SIGKILL of its group kills it all.
            assert _children(first.pid) == []
            os.killpg(first.pid, signal.SIGKILL)
            assert first.wait(timeout=30) == -signal.SIGKILL
            # The database as the killed scheduler left it (no one can take the job over for
            # another ~3 s): the job still `running`, its in-flight trials still `running`.
            at_kill = db.list_trials(job.id)
            assert db.get_job(job.id).status == "running"
            second = start_scheduler(fast_settings, log_path)
        with _reaped([second]):
            lost = {t.index for t in at_kill if t.status == "running"}
            finished = {t.index: t for t in at_kill if t.status in FINISHED}
            files = {i: _artifacts(db, job.id, i) for i in finished}
            assert lost, "no trial was in flight when the scheduler was killed"
            assert any(t.status == "completed" for t in finished.values())

            wait_for(
                "the job to finish",
                lambda: (
                    second.poll() is not None
                    or db.get_job(job.id).status not in ("queued", "running", "interrupted")
                ),
                180,
            )
            assert second.poll() is None, log_path.read_text()
            _stop(second, log_path)
        final = db.get_job(job.id)
        assert final.status == "completed", (final.error, log_path.read_text())

        trials = db.list_trials(job.id)
        _check_budget(trials, budget)
        by_index = {t.index: t for t in trials}
        for index in lost:  # in flight at the kill: failed, counted, never re-run
            assert (by_index[index].status, by_index[index].error) == ("failed", "scheduler lost")
        for index, before in finished.items():  # finished rows are never written again
            after = by_index[index]
            # The pareto flag follows the front as later trials arrive; nothing else changes.
            assert {**after.to_json(), "pareto": None} == {**before.to_json(), "pareto": None}
            assert after.finished_at == before.finished_at
            assert _artifacts(db, job.id, index) == files[index]
        _check_front(db, job.id, trials)

        claims = db.list_claims(job.id)
        assert [c.previous_status for c in claims] == ["queued", "interrupted"]
        assert [_scheduler_pid(c.scheduler_id) for c in claims] == [first.pid, second.pid]
        assert claims[0].scheduler_id != claims[1].scheduler_id
        assert db.scheduler_state(stale_after=3) == "stale"  # the killed one never stopped
    text = log_path.read_text()
    assert "stopped sending heartbeats" in text  # the takeover was a stale-heartbeat takeover
    assert "Traceback" not in text
    assert "taken over by another scheduler" not in text  # a finished job is not "lost"
    _wait_ray_idle()


# -- two schedulers, three jobs ------------------------------------------------------------------


@pytest.mark.postgres
def test_two_schedulers_on_postgres_run_each_job_exactly_once(
    fresh_postgres_url, tmp_path, ray_address
):
    settings = settings_for(tmp_path, ray_address, database_url=fresh_postgres_url, **FAST)
    log_path = tmp_path / "schedulers.log"
    with open_storage(settings.database_url, settings.artifact_dir) as db:
        jobs = [queue_job(db, trials=2, parallel=1, epochs=1, seed=i) for i in range(3)]
        procs = [start_scheduler(settings, log_path) for _ in range(2)]
        with _reaped(procs):
            wait_for(
                "three completed jobs",
                lambda: (
                    any(p.poll() is not None for p in procs)
                    or all(db.get_job(j.id).status in ("completed", "failed") for j in jobs)
                ),
                150,
                every=0.3,
            )
            assert all(p.poll() is None for p in procs), log_path.read_text()
            for p in procs:
                _stop(p, log_path)
        with db._sessions() as s:  # no listing API for schedulers; read the table itself
            registered = {row.pid: row.id for row in s.scalars(select(SchedulerRow))}
        assert set(registered) == {p.pid for p in procs}
        for job in jobs:
            assert db.get_job(job.id).status == "completed"
            _check_budget(db.list_trials(job.id), 2)
            claims = db.list_claims(job.id)
            assert [c.previous_status for c in claims] == ["queued"]  # claimed exactly once
            assert claims[0].scheduler_id in registered.values()
    assert "Traceback" not in log_path.read_text()
    _wait_ray_idle()


# -- a live scheduler loses its job --------------------------------------------------------------


def test_a_busy_scheduler_rescans_and_one_whose_job_was_taken_over_leaves_it(
    tmp_path, ray_address, caplog
):
    caplog.set_level(logging.INFO, logger="sparsearch.service.scheduler")
    settings = settings_for(tmp_path, ray_address, heartbeat_seconds=0.2, stale_after_seconds=2)
    with open_storage(settings.database_url, settings.artifact_dir) as db:
        job = queue_job(db, trials=3, parallel=1, epochs=40)
        sched = Scheduler(settings, db)
        ran: list[bool] = []
        worker = threading.Thread(target=lambda: ran.append(sched.run_once()))
        worker.start()
        try:
            running = wait_for(
                "a running trial", lambda: db.list_trials(job.id, status="running"), 90
            )
            # A job of a scheduler that died: the busy one marks it interrupted from its
            # heartbeat thread, so an idle one could resume it.
            dead_job = queue_job(db)
            assert db.claim_next_job(scheduler_id="dead:1:00000000").id == dead_job.id
            wait_for(
                "the dead scheduler's job interrupted",
                lambda: db.get_job(dead_job.id).status == "interrupted",
                10,
            )
            assert db.get_job(job.id).status == "running"  # its own job is fresh
            # What another scheduler does once this one's heartbeats look stale (as after a pause:
            # stale_after < 0 makes every heartbeat stale), then its claim.
            assert db.interrupt_stale_jobs(stale_after=-60) == [job.id]
            other = db.register_scheduler(host="other", pid=1)
            assert db.claim_next_job(("interrupted",), scheduler_id=other) is not None
            worker.join(timeout=30)
            assert not worker.is_alive(), "the driver did not notice that it lost the job"
        finally:
            worker.join(timeout=60)
            sched.close()
        assert ran == [True]
        assert f"job {job.id} was taken over by another scheduler" in caplog.text
        after = db.get_job(job.id)
        # Still the new owner's running job: not interrupted, failed or completed by the old one.
        assert (after.status, after.scheduler_id) == ("running", other)
        trials = db.list_trials(job.id)
        assert [t.index for t in trials] == [t.index for t in running]  # no trial added since
        assert {(t.status, t.error) for t in trials} == {("failed", "scheduler lost")}
        assert [c.scheduler_id for c in db.list_claims(job.id)][1:] == [other]
    _wait_ray_idle()  # the lost driver cancelled its Ray task
