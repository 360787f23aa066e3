"""A finalize job survives its scheduler's SIGKILL, with real ``sparsearch scheduler``
processes on the session's Ray: the retraining in flight at the kill is lost ("scheduler
lost", recorded and not counted), a second scheduler takes the job over once the first one's
heartbeat is stale and retrains it again under a new index, and every chosen trial ends with
a completed final training.

The search being finalized is stored by the driver with an instant fake runner (no training);
only the finalize trains (digits, 1 epoch). The crash-loop bound and PostgreSQL are covered
without processes in tests/search/test_finalize_resume.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
from pathlib import Path

import pytest
from service_helpers import PYTHON, service_env, settings_for, wait_for

from sparsearch.jobconfig import JobConfig, mark_queued, plan_finalize
from sparsearch.search.driver import SearchDriver
from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow

# Fast failure detection: beat every 0.3 s, stale after 2 s, poll every 0.2 s.
FAST = dict(heartbeat_seconds=0.3, stale_after_seconds=2.0, scheduler_poll_seconds=0.2)


class _InstantRunner:
    """Trains nothing: each trial completes at once, scored by its size (for the search)."""

    def __init__(self) -> None:
        self.running: dict[int, object] = {}

    def put(self, value):
        return value

    def submit(self, spec, data_ref):
        self.running[len(self.running)] = spec
        return len(self.running) - 1

    def wait_one(self, refs, timeout=None):
        return refs[0]

    def result(self, ref):
        from sparsearch.space.estimate import estimate
        from sparsearch.worker.trial import TrialResult

        spec = self.running[ref]
        params = estimate(spec.arch, spec.pruning).params
        return TrialResult(
            accuracy=min(0.95, 0.2 + 0.07 * math.log(params)),
            test_accuracy=0.5,
            train_seconds=0.0,
            param_count=params,
            zero_fraction=0.0,
            effective_spec=spec.to_dict(),
        )

    def cancel(self, ref):
        pass


def _start(settings, log_path: Path) -> subprocess.Popen:
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "sparsearch", "scheduler", "--log-level", "info"],
            env=service_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,  # its own process group, killed as a whole
        )


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


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
        assert SearchDriver(db, search.id, runner=_InstantRunner()).run().status == "completed"
        fcfg, _ = plan_finalize(db, search.id, trials=[2, 3], epochs=1)
        job = db.create_job(dataset=fcfg.dataset, config=fcfg.to_dict())
        mark_queued(db, job)
        try:
            procs.append(first := _start(settings, log_path))
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

            procs.append(second := _start(settings, log_path))
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
                    _kill(proc)
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
