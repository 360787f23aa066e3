"""``sparsearch export``: trials stored before deployment existed (float weights, estimates,
no .tflite) get their int8 model, C source and measured numbers; the front is recomputed."""

from __future__ import annotations

import pytest

from sparsearch.datasets import load_dataset
from sparsearch.errors import NotFoundError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.export import export_stored
from sparsearch.space.estimate import estimate
from sparsearch.space.spec import ArchSpec, BlockSpec, TrainSpec, TrialSpec
from sparsearch.storage import open_storage
from sparsearch.worker.tflm import run_tflm
from sparsearch.worker.trial import run_trial

ARCH = ArchSpec((1, 8, 8), 10, (BlockSpec("conv", 3, 8, "stride"),), head_pool="gap")


@pytest.fixture()
def old_job(tmp_path):
    """A job with one completed trial as an older sparsearch stored it."""
    storage = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    cfg = JobConfig.create(
        dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=1, target="tflm"
    )  # a job of before the C target
    job = storage.create_job(dataset="digits", config=cfg.to_dict())
    spec = TrialSpec(ARCH, train=TrainSpec(epochs=2), export_onnx=False, deploy=False)
    result = run_trial(spec, load_dataset("digits"))
    est = estimate(ARCH).to_dict()
    storage.add_trial(
        job.id, 0, status="running", params={}, generator="old", gen_seconds=0.0,
        estimates={k: est[k] for k in ("flash_bytes", "ram_bytes", "activation_bytes", "macs")},
        feasible=True, pruning={},
    )  # fmt: skip
    storage.finish_trial(
        job.id, 0, status="completed", metrics={"accuracy": result.accuracy},
        effective_spec=result.effective_spec, artifacts=result.artifacts,
    )  # fmt: skip
    yield storage, job.id
    storage.close()


def test_export_measures_an_old_trial_and_stores_its_deployment(old_job):
    storage, job_id = old_job
    before = storage.get_trial(job_id, 0)
    assert not before.measured and {a.kind for a in storage.list_artifacts(job_id, 0)} == {
        "state_dict"
    }
    said: list[str] = []
    assert export_stored(storage, job_id, on_trial=said.append) == 1
    after = storage.get_trial(job_id, 0)
    assert after.measured and after.int8_accuracy is not None
    assert after.est_flash_bytes == before.flash_bytes  # the estimate is kept
    tflite = storage.read_artifact(job_id, 0, "tflite")
    assert after.flash_bytes == len(tflite)
    assert run_tflm(tflite).arena_total == after.ram_bytes
    assert {a.kind for a in storage.list_artifacts(job_id, 0)} == {
        "state_dict", "tflite", "c_source", "c_project"
    }  # fmt: skip
    assert after.tflm_flash_bytes == len(tflite) and after.c_flash_bytes > 0
    assert after.pareto and storage.get_job(job_id).best_accuracy == after.int8_accuracy
    assert said and "trial 0:" in said[0]
    assert export_stored(storage, job_id) == 0  # measured trials are left as they are


def test_export_of_a_missing_trial_says_so(old_job):
    storage, job_id = old_job
    with pytest.raises(NotFoundError):
        export_stored(storage, job_id, 5)
