"""Early stopping in the driver (issue 22), with an injected runner whose trials report
synthetic learning curves to a real (in-process) CurveBoard: dominated trials stop at a
checkpoint, are stored as ``stopped`` with their curve and charged by their epochs, so the
same budget trains more candidates; off, nothing reports and nothing stops."""

from __future__ import annotations

import pytest

from fake_runner import FakeRunner
from sparsearch.jobconfig import JobConfig
from sparsearch.search.driver import SearchDriver
from sparsearch.search.stopping import StopRule
from sparsearch.storage import open_storage

EPOCHS = 9
#: Accuracy noise of the fake trials: some are dominated at their costs.
NOISE = 0.3


@pytest.fixture()
def storage(tmp_path):
    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


def _job(storage, **kw):  # type: ignore[no-untyped-def]
    args = dict(dataset="digits", flash_bytes=24 * 1024, ram_bytes=6 * 1024, trials=12)
    args |= dict(parallel=1, epochs=EPOCHS, strategy="random", seed=3, early_stopping=True)
    args |= kw
    cfg = JobConfig.create(**args)
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())


def test_dominated_trials_stop_at_a_checkpoint_and_charge_their_epochs(storage) -> None:
    job = _job(storage)
    runner = FakeRunner(seconds=0.0, noise=NOISE)
    final = SearchDriver(storage, job.id, runner=runner).run()
    assert final.status == "completed", final.error
    trials = storage.list_trials(job.id)
    stopped = [t for t in trials if t.status == "stopped"]
    completed = [t for t in trials if t.status == "completed"]
    assert stopped and sorted(runner.stopped) == [t.index for t in stopped]
    rungs = StopRule().rungs(EPOCHS)
    for t in stopped:
        assert t.curve and t.curve[-1]["epoch"] in rungs
        assert not t.pareto and storage.list_artifacts(job.id, t.index) == []
    # nothing stops before three completed curves exist
    assert min(t.index for t in stopped) >= 3
    # the budget: 12 full trainings, a stopped trial charging its share of the epochs
    spent = len(completed) + sum(t.curve[-1]["epoch"] for t in stopped) / EPOCHS
    assert 12 <= spent < 13  # one worker: ends once spent, overshooting by less than a trial
    assert len(trials) > 12  # more candidates for the same compute
    assert all(t.curve for t in completed)


def test_off_nothing_reports_and_nothing_stops(storage) -> None:
    job = _job(storage, early_stopping=False, trials=6)
    runner = FakeRunner(seconds=0.0, noise=NOISE)
    final = SearchDriver(storage, job.id, runner=runner).run()
    assert final.status == "completed"
    assert runner.boards == [] and runner.stopped == []
    assert [t.status for t in storage.list_trials(job.id)] == ["completed"] * 6


def test_a_finalize_job_refuses_early_stopping() -> None:
    from sparsearch.errors import ConfigError

    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=1)
    with pytest.raises(ConfigError, match="finalize"):
        JobConfig.from_dict(
            {**cfg.to_dict(), "early_stopping": True, "finalize": {"job_id": "x", "trials": [0],
             "params": [{}]}}
        )  # fmt: skip


def test_a_resumed_job_keeps_the_epochs_its_stopped_trials_spent(storage) -> None:
    job = _job(storage)

    def interrupt_once_one_stopped():  # type: ignore[no-untyped-def]
        stopped = any(t.status == "stopped" for t in storage.list_trials(job.id))
        return "interrupted" if stopped else None

    first = SearchDriver(
        storage,
        job.id,
        runner=FakeRunner(seconds=0.0, noise=NOISE),
        should_stop=interrupt_once_one_stopped,
    ).run()
    assert first.status == "interrupted"
    stopped_before = [t.index for t in storage.list_trials(job.id) if t.status == "stopped"]
    assert stopped_before  # the first run stopped some: the resume must count their epochs
    driver = SearchDriver(storage, job.id, runner=FakeRunner(seconds=0.0, noise=NOISE))
    final = driver.run()
    assert final.status == "completed"
    trials = storage.list_trials(job.id)
    charged = [t for t in trials if t.status in ("completed", "failed") and t.charged]
    stopped = [t for t in trials if t.status == "stopped"]
    assert set(stopped_before) <= {t.index for t in stopped}
    stopped_epochs = sum(t.curve[-1]["epoch"] for t in stopped)
    spent = len(charged) + stopped_epochs / EPOCHS
    assert 12 <= spent < 13
    # the resumed driver counted the first run's stopped trials and their epochs too
    assert driver.progress.stopped == len(stopped)
    assert driver.progress.stopped_epochs == pytest.approx(stopped_epochs)
