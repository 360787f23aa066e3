"""A finalize job survives its scheduler's SIGKILL, with real ``sparsearch scheduler``
processes on the session's Ray: the retraining in flight at the kill is lost ("scheduler
lost", recorded and not counted), a second scheduler takes the job over once the first one's
heartbeat is stale and retrains it again under a new index, and every chosen trial ends with
a completed final training.

The search being finalized is stored by the driver with a fake runner (no training, no wait);
only the finalize trains (digits, 1 epoch). The crash-loop bound and PostgreSQL are covered
without processes in tests/search/test_finalize_resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
from service_helpers import kill_group, settings_for, start_scheduler, wait_for

from fake_runner import FakeRunner
from sparsearch.jobconfig import JobConfig, mark_queued, plan_finalize
from sparsearch.search.driver import SearchDriver
from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow

# Fast failure detection: beat every 0.3 s, stale after 2 s, poll every 0.2 s.
FAST = dict(heartbeat_seconds=0.3, stale_after_seconds=2.0, scheduler_poll_seconds=0.2)


def test_a_finalize_cut_by_a_sigkill_is_finished_by_the_next_scheduler(tmp_path, ray_address):
    settings = settings_for(tmp_path, ray_address, **FAST)
    log_path = tmp_path / "schedulers.log"
    procs: list[subprocess.Popen] = []
    with open_storage(settings.database_url, settings.artifact_dir) as db:
        cfg = JobConfig.create(
            dataset="digits", flash_bytes=24 * 1024, ram_bytes=6 * 1024, trials=4, parallel=1,
            epochs=1, seed=0, strategy="random",
        )  # fmt: skip
        search = db.create_job(dataset=cfg.dataset, config=cfg.to_dict())
        assert SearchDriver(db, search.id, runner=FakeRunner(seconds=0)).run().status == "completed"
        fcfg, _ = plan_finalize(db, search.id, trials=[2, 3], epochs=1)
        job = db.create_job(dataset=fcfg.dataset, config=fcfg.to_dict())
        mark_queued(db, job)
        try:
            procs.append(first := start_scheduler(settings, log_path))
            wait_for(
                "the retraining of trial 2 to start",
                lambda: (
                    first.poll() is not None
                    or db.get_trial(search.id, 2).final["status"] != "queued"
                ),
                120,
                every=0.05,
            )
            assert db.get_trial(search.id, 2).final["status"] == "running", log_path.read_text()
            os.killpg(first.pid, signal.SIGKILL)
            assert first.wait(timeout=30) == -signal.SIGKILL
            assert [(t.index, t.status) for t in db.list_trials(job.id)] == [(0, "running")]

            procs.append(second := start_scheduler(settings, log_path))
            wait_for(
                "the finalize job to end",
                lambda: (
                    second.poll() is not None
                    or db.get_job(job.id).status not in ("queued", "running", "interrupted")
                ),
                180,
                every=0.2,
            )
            assert second.poll() is None, log_path.read_text()
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0, log_path.read_text()
        finally:
            for proc in procs:
                if proc.poll() is None:
                    kill_group(proc)
        ended = db.get_job(job.id)
        assert (ended.status, ended.error) == ("completed", None), log_path.read_text()
        for index in (2, 3):
            final = db.get_trial(search.id, index).final
            assert final["status"] == "completed" and final["job"] == job.id, final
            assert final["int8_test_accuracy"] is not None
            assert {a.kind for a in db.list_artifacts(search.id, index) if a.final} >= {"tflite"}
        assert db.get_trial(search.id, 2).final["crashes"] == 1
        trials = db.list_trials(job.id)
        assert [(t.index, t.status, t.charged) for t in trials] == [
            (0, "failed", False),  # lost with the first scheduler, recorded, not counted
            (1, "completed", True),  # trial 2 retrained again, under a new index
            (2, "completed", True),  # trial 3
        ]
        assert trials[0].error.startswith("scheduler lost")
        assert trials[1].params == trials[0].params
        claims = db.list_claims(job.id)
        assert [c.previous_status for c in claims] == ["queued", "interrupted"]
    text = log_path.read_text()
    assert "stopped sending heartbeats" in text and "Traceback" not in text
