"""Ctrl-C leaves a consistent, `interrupted` job; `--resume` finishes it within its budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))


def _env(ray_address: str) -> dict[str, str]:
    return {**os.environ, "SPARSEARCH_RAY_ADDRESS": ray_address}


def _with_default_sigint(args: list[str]) -> list[str]:
    """``args`` run with SIGINT at its default disposition, whatever this process inherited.

    A shell runs a background job (``make test &`` in a script) with SIGINT ignored, and an
    ignored signal stays ignored across fork and exec, so the child would never see the Ctrl-C
    this test sends. ``restore_signals`` does not cover SIGINT, and ``preexec_fn`` is unsafe
    with the Ray threads this process runs, so a tiny Python resets it and execs ``args``
    (same pid, so the signal still reaches the CLI)."""
    reset = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", reset, *args]


def _search_until_a_trial_completes(tmp_path: Path, ray_address: str, seed: int):
    """A CLI search of 5 trials, started and watched until its first trial completes."""
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    args = [
        SPARSEARCH, "search", "--dataset", "digits", "--flash", "24KiB", "--ram", "6KiB",
        "--trials", "5", "--parallel", "2", "--epochs", "3", "--seed", str(seed),
        "--db", db, "--artifacts", str(tmp_path / "artifacts"), "--json",
    ]  # fmt: skip
    proc = subprocess.Popen(
        _with_default_sigint(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(ray_address),
    )
    storage = open_storage(db, tmp_path / "artifacts")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        jobs = storage.list_jobs()
        if jobs and storage.list_trials(jobs[0].id, status="completed"):
            return proc, storage, db, jobs[0].id
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    proc.kill()
    pytest.fail("no trial completed within 180 s")


def _assert_stopped_gracefully(storage, job_id: str) -> list:
    """The job is ``interrupted`` and nothing is left running: in-flight trials failed as
    "interrupted"."""
    assert storage.get_job(job_id).status == "interrupted"
    trials = storage.list_trials(job_id)
    assert not [t for t in trials if t.status in ("running", "queued")]
    for t in trials:
        if t.status == "failed":
            assert t.error == "interrupted"
    return trials


def test_sigterm_stops_a_search_as_ctrl_c_does(tmp_path, ray_address):
    proc, storage, _, job_id = _search_until_a_trial_completes(tmp_path, ray_address, seed=3)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM received" not in err and "PC: @" not in err, err
    assert f"terminated (SIGTERM): resume with `sparsearch search --resume {job_id}" in err
    assert json.loads(out)["status"] == "interrupted"
    _assert_stopped_gracefully(storage, job_id)
    storage.close()


def test_interrupt_then_resume(tmp_path, ray_address):
    proc, storage, db, job_id = _search_until_a_trial_completes(tmp_path, ray_address, seed=2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"--resume {job_id}" in err
    doc = json.loads(out)
    assert doc["status"] == "interrupted"

    trials = _assert_stopped_gracefully(storage, job_id)
    trained_before = sum(t.status in ("completed", "failed") for t in trials)
    snapshot = {t.index: (t.status, t.accuracy, t.params) for t in trials}
    assert 1 <= trained_before < 5

    resume = [
        SPARSEARCH, "search", "--resume", job_id,
        "--db", db, "--artifacts", str(tmp_path / "artifacts"), "--json",
    ]  # fmt: skip
    resumed = subprocess.run(
        resume,
        capture_output=True,
        text=True,
        env=_env(ray_address),
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "completed"
    trials = storage.list_trials(job_id)
    assert [t.index for t in trials] == list(range(len(trials)))
    # The budget counts charged trials: the ones Ctrl-C cut short are recorded, uncharged, and
    # their candidates ran again after the resume.
    assert sum(t.trained for t in trials) == 5
    cut = [t for t in trials[: len(snapshot)] if t.error == "interrupted"]
    assert cut and not any(t.charged for t in cut)
    rerun = [t.params for t in trials[len(snapshot) :]]
    assert all(t.params in rerun for t in cut)
    # What was stored before the interrupt is untouched by the resume.
    assert {t.index: (t.status, t.accuracy, t.params) for t in trials[: len(snapshot)]} == snapshot
    assert any(t.pareto for t in trials)
    storage.close()
