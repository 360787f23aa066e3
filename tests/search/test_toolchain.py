"""A ``--target c`` job on a machine without the Arm compiler stops within seconds with what to
install (interrupted: resumable once it is), on the driver's machine and on a worker alike."""

from __future__ import annotations

import time

import pytest

from fake_runner import FakeRunner
from sparsearch.errors import ToolchainError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.driver import SearchDriver
from sparsearch.storage import open_storage
from sparsearch.worker.remote import TrialFailure

MISSING = "/nonexistent/arm-none-eabi-gcc"


@pytest.fixture()
def storage(tmp_path):
    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


def _job(storage, target="c"):
    cfg = JobConfig.create(
        dataset="digits",
        flash_bytes=24 * 1024,
        ram_bytes=6 * 1024,
        trials=6,
        parallel=2,
        epochs=1,
        strategy="random",
        target=target,
    )
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())


class _NoCompilerOnTheWorker(FakeRunner):
    def result(self, ref):
        self.running.pop(ref)
        return TrialFailure(f"the Arm compiler {MISSING!r} was not found", "", 7, toolchain=True)


def test_a_worker_without_the_compiler_stops_the_job_uncharged(storage):
    job = _job(storage)
    with pytest.raises(ToolchainError, match="was not found") as caught:
        SearchDriver(storage, job.id, runner=_NoCompilerOnTheWorker()).run()
    assert "gcc-arm-none-eabi" in caught.value.hint and "--target tflm" in caught.value.hint
    got = storage.get_job(job.id)
    assert got.status == "interrupted" and "was not found" in got.error
    trials = storage.list_trials(job.id)
    assert trials and all(t.status == "failed" for t in trials)
    assert not any(t.charged for t in trials)  # the budget is intact for the resume


def test_a_local_c_job_checks_the_compiler_before_anything_starts(storage, monkeypatch):
    monkeypatch.setenv("SPARSEARCH_ARM_GCC", MISSING)
    job = _job(storage)
    start = time.monotonic()
    with pytest.raises(ToolchainError, match="nonexistent"):
        SearchDriver(storage, job.id).run()  # no runner: a local Ray run would start
    assert time.monotonic() - start < 10
    assert storage.get_job(job.id).status == "interrupted"
    assert storage.list_trials(job.id) == []


def test_a_tflm_job_needs_no_compiler(storage, monkeypatch):
    monkeypatch.setenv("SPARSEARCH_ARM_GCC", MISSING)
    job = _job(storage, target="tflm")
    final = SearchDriver(storage, job.id, runner=FakeRunner()).run()
    assert final.status == "completed"


def test_a_c_trial_fails_before_training_without_the_compiler(monkeypatch):
    from sparsearch.datasets import load_dataset
    from sparsearch.space.spec import ArchSpec, BlockSpec, TrialSpec
    from sparsearch.worker.trial import run_trial

    monkeypatch.setenv("SPARSEARCH_ARM_GCC", MISSING)
    arch = ArchSpec((1, 8, 8), 10, (BlockSpec("conv", 3, 4),))
    start = time.monotonic()
    with pytest.raises(ToolchainError):
        run_trial(TrialSpec(arch, target="c"), load_dataset("digits"))
    assert time.monotonic() - start < 5  # no epoch was trained
