"""Measured numbers in the driver (no Ray, no model library): a runner whose results carry
measured flash / RAM and an int8 accuracy, as ``run_trial`` gives them once it exports."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from test_driver import _job

from fake_runner import FakeRunner
from sparsearch.api.views import job_public
from sparsearch.search.driver import SearchDriver
from sparsearch.space.estimate import estimate
from sparsearch.worker.remote import TrialFailure


class MeasuringRunner(FakeRunner):
    """Each result is measured: flash and RAM are the estimate times ``factor`` (``over``:
    trial indices whose RAM comes out ``over_by`` above the limit), int8 accuracy is the float
    accuracy minus ``int8_drop``."""

    def __init__(self, *, ram_limit: int, over: set[int] = frozenset(), over_by: int = 100):
        super().__init__(seconds=0.0)
        self.ram_limit, self.over, self.over_by = ram_limit, set(over), over_by
        self.int8_drop = 0.01

    def result(self, ref):
        spec = self.running[ref][1]
        base = super().result(ref)
        if isinstance(base, TrialFailure):
            return base
        est = estimate(spec.arch, spec.pruning, target=spec.target, pixel_scale=1 / 16)  # digits
        index = int(re.findall(r"trial (\d+)", spec.label)[-1])
        ram = self.ram_limit + self.over_by if index in self.over else est.ram_bytes - 8
        return replace(
            base,
            flash_bytes=est.flash_bytes - 100,
            ram_bytes=ram,
            activation_bytes=est.activation_bytes,
            int8_accuracy=base.accuracy - self.int8_drop * (1 + index % 3),
            int8_test_accuracy=0.4,
            export_seconds=0.5,
            deployment={"flash_bytes": est.flash_bytes - 100},
        )


@pytest.fixture()
def storage(tmp_path):
    from sparsearch.storage import open_storage

    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


def test_measured_numbers_replace_the_estimates_which_are_kept(storage):
    job, cfg = _job(storage, trials=4)
    SearchDriver(storage, job.id, runner=MeasuringRunner(ram_limit=cfg.limits.ram_bytes)).run()
    trials = storage.list_trials(job.id)
    assert len(trials) == 4
    for t in trials:
        assert t.measured and t.status == "completed" and t.feasible
        assert t.flash_bytes == t.est_flash_bytes - 100
        assert t.ram_bytes == t.est_ram_bytes - 8
        assert t.export_seconds == 0.5 and t.deployment == {"flash_bytes": t.flash_bytes}
    # The objective, the front and the best accuracy use the int8 accuracy.
    best = storage.get_job(job.id).best_accuracy
    assert best == max(t.int8_accuracy for t in trials)
    assert best < max(t.accuracy for t in trials)
    _, top = storage.best_front_trial(job.id)
    assert top.int8_accuracy == best


def test_a_trial_over_a_limit_as_measured_is_kept_infeasible_and_off_the_front(storage, caplog):
    job, cfg = _job(storage, trials=4)
    runner = MeasuringRunner(ram_limit=cfg.limits.ram_bytes, over={1})
    driver = SearchDriver(storage, job.id, runner=runner)
    assert driver.run().status == "completed" and driver.progress.over_limit == 1
    trials = {t.index: t for t in storage.list_trials(job.id)}
    over = trials[1]
    assert over.status == "completed" and over.charged and over.measured
    assert not over.feasible and not over.pareto
    assert over.ram_bytes == cfg.limits.ram_bytes + 100
    assert any("over a limit as measured" in r.message for r in caplog.records)
    assert any(t.pareto for t in trials.values())
    counts = storage.trial_counts([job.id])[job.id]
    assert counts["over_limit"] == 1 and counts["completed"] == 4
    assert job_public(storage.get_job(job.id), counts).progress.over_limit == 1


def test_a_ram_margin_is_kept_free_by_every_candidate(storage):
    margin = 1536
    job, cfg = _job(storage, trials=6, ram_margin_bytes=margin)
    runner = MeasuringRunner(ram_limit=cfg.limits.ram_bytes)
    SearchDriver(storage, job.id, runner=runner).run()
    assert len(runner.specs) == 6
    for spec in runner.specs:
        assert estimate(spec.arch, spec.pruning).ram_bytes <= cfg.limits.ram_bytes - margin
    # ... and measured values count against the limit less the margin too.
    job2, cfg2 = _job(storage, trials=3, ram_margin_bytes=margin)
    over = MeasuringRunner(ram_limit=cfg2.limits.ram_bytes - margin, over={0}, over_by=1)
    driver = SearchDriver(storage, job2.id, runner=over)
    driver.run()
    assert driver.progress.over_limit == 1
    assert not storage.get_trial(job2.id, 0).feasible


def test_the_label_names_the_job_and_trial(storage):
    job, cfg = _job(storage, trials=2, parallel=1)
    runner = MeasuringRunner(ram_limit=cfg.limits.ram_bytes)
    SearchDriver(storage, job.id, runner=runner).run()
    assert [s.label for s in runner.specs] == [f"job {job.id} trial {i}" for i in range(2)]
