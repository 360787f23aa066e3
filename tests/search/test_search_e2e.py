"""End to end: a real BO search on digits, trials trained by real Ray workers, stored in SQLite."""

from __future__ import annotations

import os

import pytest

from sparsearch.errors import SearchError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.driver import SearchDriver
from sparsearch.space.params import SpaceConfig
from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow

FLASH, RAM = 24 * 1024, 6 * 1024


def _dominates(a, b) -> bool:
    no_worse = (
        a.accuracy >= b.accuracy and a.flash_bytes <= b.flash_bytes and a.ram_bytes <= b.ram_bytes
    )
    better = a.accuracy > b.accuracy or a.flash_bytes < b.flash_bytes or a.ram_bytes < b.ram_bytes
    return no_worse and better


@pytest.fixture()
def local_storage(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield storage
    storage.close()


def _job(storage, **kw):
    args = dict(
        dataset="digits", flash_bytes=FLASH, ram_bytes=RAM, trials=6, parallel=2, epochs=4, seed=0
    )
    args.update(kw)
    cfg = JobConfig.create(**args)
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())


def test_search_trains_on_ray_stores_everything_and_reloads(local_storage, ray_address):
    # Every trial is structurally pruned, so any front trial checks the pruned reload.
    space = SpaceConfig(pruning_methods=("filter_norm",), prune_level=(0.2, 0.6))
    job = _job(local_storage, space=space)
    events = []
    final = SearchDriver(
        local_storage,
        job.id,
        ray_address=ray_address,
        on_progress=lambda p: events.append(p.trained),
    ).run()
    assert final.status == "completed"

    trials = local_storage.list_trials(job.id)
    assert [t.index for t in trials] == list(range(6))  # only what was trained is stored
    trained = [t for t in trials if t.status in ("completed", "failed")]
    assert len(trained) == 6
    assert all(t.status == "completed" and t.charged for t in trials), [t.error for t in trials]
    assert events[-1] == 6

    # Trials ran in Ray worker processes, not in the driver.
    pids = {t.worker_pid for t in trained}
    assert os.getpid() not in pids and None not in pids

    # The strategy moved past its initial design to the model (a BoTorch GP, exact EHVI).
    generators = [t.generator for t in trials]
    assert generators[0] == "bo:sobol" and "bo:ehvi" in generators, generators
    assert all(t.gen_seconds is not None and t.gen_seconds >= 0 for t in trials)

    # Front: feasible, completed, within both limits, mutually non-dominated, and maximal.
    front = [t for t in trials if t.pareto]
    assert front
    completed = [t for t in trials if t.status == "completed" and t.feasible]
    for t in front:
        assert t.status == "completed" and t.feasible
        assert t.flash_bytes <= FLASH and t.ram_bytes <= RAM
        assert t.test_accuracy is not None
        assert not any(_dominates(o, t) for o in completed)
    for t in completed:
        if not t.pareto:
            assert any(_dominates(f, t) for f in front)
    job_after = local_storage.get_job(job.id)
    assert 0.0 < job_after.hypervolume <= 1.0
    # The objective is the accuracy that ships: the int8 model's, run on TFLite Micro.
    assert job_after.best_accuracy == max(t.int8_accuracy for t in completed)

    # Every trained trial was exported and measured; the estimates stay beside the measurements.
    for t in trained:
        assert t.measured and t.export_seconds > 0
        assert t.est_flash_bytes is not None and t.est_ram_bytes is not None
        # The job's target (c, the default) gives flash / RAM; TFLM's numbers stay beside.
        c = t.deployment["c"]
        assert t.deployment["target"] == "c"
        assert (t.flash_bytes, t.ram_bytes) == (t.c_flash_bytes, t.c_ram_bytes)
        assert (t.flash_bytes, t.ram_bytes) == (c["flash_bytes"], c["ram_bytes"])
        assert t.activation_bytes == c["arena_bytes"]
        assert t.tflm_flash_bytes == t.deployment["flash_bytes"]
        assert t.tflm_ram_bytes == t.deployment["arena"]["total"]
        assert 0.0 <= t.int8_accuracy <= 1.0 and 0.0 <= t.int8_test_accuracy <= 1.0
        tflite = local_storage.read_artifact(job.id, t.index, "tflite")
        assert len(tflite) == t.tflm_flash_bytes and tflite[4:8] == b"TFL3"

    # A structurally pruned artifact reloads from its effective spec and reproduces the accuracy.
    from sparsearch.datasets import load_dataset
    from sparsearch.space.spec import ArchSpec, TrialSpec
    from sparsearch.worker.export import load_model
    from sparsearch.worker.train import evaluate
    from sparsearch.worker.trial import prepare_inputs

    best = max(front, key=lambda t: t.accuracy)
    kinds = {a.kind for a in local_storage.list_artifacts(job.id, best.index)}
    # c_project: every trial's C target is measured and shipped, whatever the job's target
    assert kinds == {"state_dict", "onnx", "tflite", "c_source", "c_project"}
    effective = ArchSpec.from_dict(best.effective_spec["arch"])
    original = [best.params[f"b{i}_channels"] for i in range(best.params["n_blocks"])]
    assert [b.channels for b in effective.blocks] != original  # really pruned
    model = load_model(
        best.effective_spec, local_storage.read_artifact(job.id, best.index, "state_dict")
    )
    assert sum(p.numel() for p in model.parameters()) == best.param_count
    data = load_dataset("digits", seed=0)
    _, x_val, _ = prepare_inputs(TrialSpec(arch=effective), data)
    assert evaluate(model, x_val, data.y_val) == pytest.approx(best.accuracy, abs=1e-12)


def crashing_trial(spec, data, *, threads=1):
    raise RuntimeError("boom: injected crash")


def test_crashing_trials_are_recorded_and_the_search_goes_on(local_storage, ray_address):
    import sys

    from ray import cloudpickle  # Ray ships its own cloudpickle; tests aren't importable there

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = _job(local_storage, trials=3)
    final = SearchDriver(
        local_storage, job.id, ray_address=ray_address, trial_fn=crashing_trial
    ).run()
    assert final.status == "completed"
    trained = local_storage.list_trials(job.id)
    assert len(trained) == 3
    assert all(t.status == "failed" for t in trained), [(t.status, t.error) for t in trained]
    assert all("boom: injected crash" in t.error for t in trained), [t.error for t in trained]
    assert not any(t.pareto for t in trained)
    assert local_storage.get_job(job.id).best_accuracy is None


def unconvertible_second_trial(spec, data, *, threads=1):
    """The real trial, except that trial 1's model cannot be converted to TFLite."""
    from sparsearch.worker import tflite, trial

    def refuse(model, calibration):
        raise RuntimeError("injected: operator not supported by the converter")

    original = tflite._convert
    tflite._convert = refuse if spec.label.endswith("trial 1") else original
    try:
        return trial.run_trial(spec, data, threads=threads)
    finally:
        tflite._convert = original


def test_an_unconvertible_model_fails_its_trial_and_the_search_goes_on(local_storage, ray_address):
    import sys

    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = _job(local_storage, trials=3, epochs=2)
    final = SearchDriver(
        local_storage, job.id, ray_address=ray_address, trial_fn=unconvertible_second_trial
    ).run()
    assert final.status == "completed"
    trials = {t.index: t for t in local_storage.list_trials(job.id)}
    assert [trials[i].status for i in range(3)] == ["completed", "failed", "completed"]
    assert "int8 export failed" in trials[1].error
    assert "operator not supported by the converter" in trials[1].error
    assert trials[1].charged and not trials[1].pareto
    assert trials[0].measured and trials[2].measured


def test_limits_below_the_smallest_network_fail_at_once(local_storage, ray_address):
    job = _job(local_storage, flash_bytes=1000, ram_bytes=1000)
    with pytest.raises(SearchError, match="limits too tight for this space, even pruned"):
        SearchDriver(local_storage, job.id, ray_address=ray_address).run()
    stored = local_storage.get_job(job.id)
    assert stored.status == "failed" and "limits too tight" in stored.error
    assert local_storage.list_trials(job.id) == []
