"""Finalize jobs in the driver (no Ray, no model library): the chosen trials are retrained
exactly once each, with final-training specs, and their outcomes land on the source trials
(final status and metrics, final artifacts that `pull` prefers); failures, cancels and resumes
leave every final status true."""

from __future__ import annotations

from dataclasses import replace

import pytest
from test_driver import _job
from test_measured import MeasuringRunner

from sparsearch.client import LocalBackend
from sparsearch.errors import ConfigError
from sparsearch.jobconfig import mark_queued, plan_finalize
from sparsearch.search.driver import SearchDriver


@pytest.fixture()
def storage(tmp_path):
    from sparsearch.storage import open_storage

    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


class ShippingRunner(MeasuringRunner):
    """Measured results with a .tflite artifact that says which training made it."""

    def result(self, ref):
        spec = self.running[ref][1]
        out = super().result(ref)
        if not hasattr(out, "artifacts"):  # a TrialFailure
            return out
        tag = b"final" if spec.final else b"search"
        return replace(out, artifacts={"tflite": b"TFL3" + tag + spec.label.encode()})


def _searched(storage, trials=4):
    job, cfg = _job(storage, trials=trials)
    SearchDriver(storage, job.id, runner=ShippingRunner(ram_limit=cfg.limits.ram_bytes)).run()
    return job, cfg


def _finalize_job(storage, job_id, **kw):
    cfg, chosen = plan_finalize(storage, job_id, **kw)
    job = storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())
    mark_queued(storage, job)
    return job, cfg, chosen


def test_finalize_retrains_the_chosen_trials_once_and_records_them_on_the_source(storage):
    job, cfg = _searched(storage)
    front = [t.index for t in storage.list_trials(job.id) if t.pareto]
    fjob, fcfg, chosen = _finalize_job(storage, job.id, front=True, epochs=5)
    assert sorted(chosen) == front and fcfg.budget.trials == len(front)
    assert all(storage.get_trial(job.id, i).final["status"] == "queued" for i in chosen)

    runner = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    assert SearchDriver(storage, fjob.id, runner=runner).run().status == "completed"
    assert len(runner.specs) == len(front)
    assert all(s.final and s.train.epochs == 5 for s in runner.specs)
    source = {t.index: t for t in storage.list_trials(job.id)}
    retrained = {repr(s.arch.to_dict()) + repr(s.pruning.to_dict()) for s in runner.specs}
    assert len(retrained) == len(front)  # each chosen trial once
    for i in chosen:
        final = source[i].final
        assert final["status"] == "completed" and final["job"] == fjob.id and final["epochs"] == 5
        assert final["int8_test_accuracy"] == 0.4 and final["feasible"] is True
        assert final["flash_bytes"] == source[i].flash_bytes  # same network, measured again
        # pull prefers the final model; --search-run gets the search's
        backend = LocalBackend(storage)
        data, is_final = backend.artifact(job.id, i, "tflite")
        assert is_final and data.startswith(b"TFL3final")
        data, is_final = backend.artifact(job.id, i, "tflite", final=False)
        assert not is_final and data.startswith(b"TFL3search")
    assert storage.get_job(fjob.id).config["finalize"]["job_id"] == job.id


def test_a_failed_final_training_says_why(storage):
    job, cfg = _searched(storage, trials=3)
    fjob, _, (index,) = _finalize_job(storage, job.id)
    runner = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    runner.fail = {0}
    SearchDriver(storage, fjob.id, runner=runner).run()
    final = storage.get_trial(job.id, index).final
    assert final["status"] == "failed" and "injected failure" in final["error"]


def test_a_cancelled_finalize_job_leaves_no_final_running_and_a_resume_finishes(storage):
    job, cfg = _searched(storage, trials=4)
    fjob, _, chosen = _finalize_job(storage, job.id, trials=[0, 1, 2], epochs=2)
    runner = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    runner.seconds = 0.2
    calls = iter(range(10**6))

    def stop_after_first():  # interrupted once the first trial has started
        return "interrupted" if next(calls) > 2 else None

    SearchDriver(storage, fjob.id, runner=runner, should_stop=stop_after_first).run()
    statuses = {i: storage.get_trial(job.id, i).final["status"] for i in chosen}
    assert "running" not in statuses.values(), statuses
    assert storage.get_job(fjob.id).status == "interrupted"
    # Resumed: what was done stays done, the rest is trained, nothing twice.
    again = ShippingRunner(ram_limit=cfg.limits.ram_bytes)
    SearchDriver(storage, fjob.id, runner=again).run()
    done_before = [i for i, s in statuses.items() if s == "completed"]
    assert len(done_before) < len(chosen), "the stop must leave work for the resume"
    assert len(again.specs) == len(chosen) - len(done_before)
    assert all(storage.get_trial(job.id, i).final["status"] == "completed" for i in chosen)


def test_finalize_refuses_a_trial_that_is_not_completed(storage):
    job, _ = _searched(storage, trials=2)
    with pytest.raises(ConfigError, match="--trials and --front"):
        plan_finalize(storage, job.id, trials=[0], front=True)
    storage.add_trial(
        job.id, 9, status="infeasible", params={}, generator="x", gen_seconds=0.0,
        estimates={}, feasible=False, pruning={},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="not completed"):
        plan_finalize(storage, job.id, trials=[9])
