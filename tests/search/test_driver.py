"""The driver without Ray or a model library: an injected runner (trials that take a few tens of
milliseconds and record their concurrency) and, where the test needs one, an injected strategy.
Real SQLite storage, real estimates, real digits shapes."""

from __future__ import annotations

import pytest

from fake_runner import FakeRunner
from sparsearch.errors import SearchError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.driver import SearchDriver
from sparsearch.search.screen import Screen
from sparsearch.search.strategies import Proposal, make_strategy
from sparsearch.space.estimate import estimate
from sparsearch.storage import open_storage

DIGITS = (1, 8, 8)


@pytest.fixture()
def storage(tmp_path):
    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


def _job(storage, **kw):
    args = dict(dataset="digits", flash_bytes=24 * 1024, ram_bytes=6 * 1024, trials=8)
    args |= dict(parallel=2, epochs=1, strategy="random")
    args |= kw
    cfg = JobConfig.create(**args)
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict()), cfg


def _within(cfg, spec) -> bool:
    est = estimate(spec.arch, spec.pruning, target=cfg.target, pixel_scale=1 / 16)  # digits
    flash = est.nnz_flash_bytes if cfg.flash_accounting == "sparse" else est.flash_bytes
    return flash <= cfg.limits.flash_bytes and est.ram_bytes <= cfg.limits.ram_bytes


@pytest.mark.parametrize("strategy", ["random", "evolution", "nsga2", "bo"])
def test_every_strategy_trains_only_what_fits_under_limits_that_exclude_most_networks(
    storage, strategy
):
    # 5000 B flash and 3000 B RAM on 8x8 digits: about 97% of the default space is over a limit.
    job, cfg = _job(storage, flash_bytes=5000, ram_bytes=3000, trials=12, strategy=strategy)
    runner = FakeRunner()
    final = SearchDriver(storage, job.id, runner=runner).run()
    assert final.status == "completed", final.error
    assert len(runner.specs) == 12
    assert all(_within(cfg, spec) for spec in runner.specs)
    trials = storage.list_trials(job.id)
    assert [t.index for t in trials] == list(range(12))  # no gaps, nothing left queued
    assert {t.status for t in trials} == {"completed"}
    assert all(t.generator.startswith(f"{strategy}:") for t in trials)
    # The rejected candidates were counted, not stored.
    assert final.to_json()["screened"] > 0
    assert len({Screen(cfg, DIGITS, 10).codec.key(t.params) for t in trials}) == 12


def test_asynchronous_dispatch_keeps_parallel_trials_in_flight(storage):
    job, _ = _job(storage, trials=12, parallel=3)
    runner = FakeRunner(seconds=0.2)
    driver = SearchDriver(storage, job.id, runner=runner)
    assert driver.run().status == "completed"
    assert runner.max_concurrency == 3
    waits, busy = driver.progress.wait_seconds, driver.progress.busy_seconds
    assert len(waits) == 3 and all(b > 0 for b in busy)
    # Candidates were ready when slots freed up: each slot waited far less than it trained.
    assert max(w / (w + b) for w, b in zip(waits, busy, strict=True)) < 0.5


def test_failed_trials_count_and_are_told(storage):
    job, _ = _job(storage, trials=4, parallel=1)
    final = SearchDriver(storage, job.id, runner=FakeRunner(fail={0, 2})).run()
    trials = storage.list_trials(job.id)
    assert [t.status for t in trials] == ["failed", "completed", "failed", "completed"]
    assert all(t.charged for t in trials)
    assert final.status == "completed"


def test_one_worker_search_is_reproducible_from_its_seed(storage):
    runs = []
    for _ in range(2):
        job, _ = _job(storage, trials=6, parallel=1, strategy="evolution", seed=3)
        SearchDriver(storage, job.id, runner=FakeRunner(seconds=0.0)).run()
        runs.append([t.params for t in storage.list_trials(job.id)])
    assert runs[0] == runs[1]


class Exploding:
    name = "exploding"

    def __init__(self, screen, after: int) -> None:
        self.inner = make_strategy("random", screen, seed=0, budget=10, parallel=1)
        self.after = after
        self.asked = 0

    def ask(self, k, pending):
        self.asked += 1
        if self.asked > self.after:
            raise ZeroDivisionError("float division by zero\nsecond line")
        return self.inner.ask(k, pending)

    def tell(self, result):
        self.inner.tell(result)


@pytest.mark.parametrize("parallel", [1, 2])
def test_an_exception_inside_the_strategy_fails_the_job_with_one_line(storage, parallel):
    job, _ = _job(storage, trials=6, parallel=parallel)
    driver = SearchDriver(
        storage, job.id, runner=FakeRunner(), strategy=lambda screen: Exploding(screen, 3)
    )
    with pytest.raises(ZeroDivisionError):
        driver.run()
    stored = storage.get_job(job.id)
    assert stored.status == "failed"
    assert stored.error == "ZeroDivisionError: float division by zero"
    assert not [t for t in storage.list_trials(job.id) if t.status == "running"]


def test_limits_below_the_smallest_pruned_network_fail_naming_the_limit(storage):
    job, _ = _job(storage, flash_bytes=1000, ram_bytes=50_000, target="tflm")
    with pytest.raises(SearchError, match=r"flash: the smallest network needs \d+ B"):
        SearchDriver(storage, job.id, runner=FakeRunner()).run()
    stored = storage.get_job(job.id)
    assert stored.status == "failed" and "limits too tight" in stored.error
    assert "RAM" not in stored.error.split("allows:")[1]  # RAM is reachable: not blamed
    assert storage.list_trials(job.id) == []


class Recording:
    """A random strategy that records what it is told."""

    name = "recording"

    def __init__(self, screen) -> None:
        self.inner = make_strategy("random", screen, seed=1, budget=10, parallel=2)
        self.told: list = []

    def ask(self, k, pending):
        return self.inner.ask(k, pending)

    def tell(self, result):
        self.told.append(result)
        self.inner.tell(result)


def test_a_graceful_stop_leaves_trials_uncharged_and_resume_replays_and_redoes_them(storage):
    job, _ = _job(storage, trials=6, parallel=2)
    first = SearchDriver(storage, job.id, runner=FakeRunner(seconds=0.3))
    first._should_stop = lambda: "interrupted" if first.progress.completed >= 2 else None
    assert first.run().status == "interrupted"
    stopped = storage.list_trials(job.id)
    cut = [t for t in stopped if t.status == "failed"]
    assert cut and all(t.error == "interrupted" and not t.charged for t in cut)
    done = [t for t in stopped if t.status == "completed"]
    assert len(done) >= 2 and all(t.charged for t in done)

    recording: list[Recording] = []

    def factory(screen):
        recording.append(Recording(screen))
        return recording[0]

    screened_before = storage.get_job(job.id).screened
    runner = FakeRunner()
    final = SearchDriver(storage, job.id, runner=runner, strategy=factory).run()
    assert final.status == "completed"
    assert final.screened >= screened_before  # the count goes on from the stored one
    told_first = recording[0].told[: len(done)]
    assert [r.params for r in told_first] == [t.params for t in done]  # the replay
    assert all(r.accuracy == t.accuracy for r, t in zip(told_first, done, strict=True))
    trials = storage.list_trials(job.id)
    assert [t.index for t in trials] == list(range(len(trials)))  # unique, contiguous
    assert sum(t.trained for t in trials) == 6  # the budget, exactly: uncharged don't count
    # The candidates the stop cut short ran again first.
    redone = {str(t.params) for t in trials[len(stopped) :]}
    assert {str(t.params) for t in cut} <= redone


def test_an_exhausted_space_completes_with_what_it_found(storage):
    from sparsearch.space.params import SpaceConfig

    tiny = SpaceConfig(
        max_blocks=1,
        kernels=(3,),
        channels=(4, 5),
        head_units=(0,),
        input_scales=(1.0,),
        pruning_methods=("none",),
    )  # 2 block kinds x 2 widths x 3 downsamplings x 2 heads x lr: lr keeps it open ...
    job, _ = _job(storage, trials=4, parallel=2, space=tiny)

    class Finite:
        name = "finite"

        def __init__(self, screen):
            self.points = [Proposal({"b0_channels": c}, "finite:list") for c in (4, 5)]

        def ask(self, k, pending):
            return [self.points.pop()] if self.points else []

        def tell(self, result):
            pass

    final = SearchDriver(storage, job.id, runner=FakeRunner(), strategy=Finite).run()
    assert final.status == "completed"
    assert len(storage.list_trials(job.id)) == 2


def test_a_design_that_finds_nothing_feasible_in_its_draw_budget_says_so():
    from sparsearch.search.screen import LimitsTooTight

    cfg = JobConfig.create(dataset="digits", flash_bytes=5000, ram_bytes=3000, trials=4)
    screen = Screen(cfg, DIGITS, 10)
    big = {"n_blocks": 3, "b1_channels": 64, "b2_channels": 64}
    draws = iter(range(10**9))

    def draw():  # 24 distinct networks, every one over the limits, drawn again and again
        return {**big, "b0_channels": 40 + next(draws) % 24}

    with pytest.raises(LimitsTooTight, match=r"drew \d+ candidates and none fits .*smallest flash"):
        screen.feasible(draw, 2)
    assert screen.screened == 24  # each distinct candidate screened once, repeats skipped


def test_a_resumed_job_keeps_counting_screened_candidates_from_its_stored_count(storage):
    job, _ = _job(storage, flash_bytes=5000, ram_bytes=3000, trials=4, parallel=1, target="tflm")
    first = SearchDriver(storage, job.id, runner=FakeRunner(seconds=0.0))
    first._should_stop = lambda: "interrupted" if first.progress.completed >= 2 else None
    first.run()
    screened = storage.get_job(job.id).screened
    assert screened > 0

    class Replaying:  # proposes what the first run trained, re-screening nothing
        name = "replaying"

        def __init__(self, screen):
            self.points = [t.params for t in storage.list_trials(job.id)]
            self.points += [{**p, "lr": 0.003} for p in self.points]

        def ask(self, k, pending):
            return [Proposal(self.points.pop(), "replaying:list")]

        def tell(self, result):
            pass

    final = SearchDriver(storage, job.id, runner=FakeRunner(), strategy=Replaying).run()
    assert final.status == "completed"
    assert final.screened == screened


def test_resume_after_a_crash_charges_the_lost_trial_and_replays_the_rest(storage):
    """What SIGKILL leaves: trials stored, one still ``running``, the job ``running``."""
    job, cfg = _job(storage, trials=5, parallel=2)
    first = SearchDriver(storage, job.id, runner=FakeRunner(seconds=0.0))
    first._should_stop = lambda: "interrupted" if first.progress.completed >= 2 else None
    first.run()
    done = [t for t in storage.list_trials(job.id) if t.status == "completed"]
    lost_index = max(t.index for t in storage.list_trials(job.id)) + 1
    screen = Screen(cfg, DIGITS, 10)
    lost = make_strategy("random", screen, seed=9, budget=5, parallel=1).ask(1, [])[0]
    storage.add_trial(
        job.id, lost_index, status="running", params=lost.params, generator=lost.generator,
        gen_seconds=0.0, estimates=screen.costs(lost.params).estimates, feasible=True,
        pruning={},
    )  # fmt: skip
    storage.set_job_status(job.id, "running")

    recording: list[Recording] = []
    final = SearchDriver(
        storage,
        job.id,
        runner=FakeRunner(),
        strategy=lambda s: recording.append(Recording(s)) or recording[0],
    ).run()
    assert final.status == "completed"
    trials = storage.list_trials(job.id)
    assert [t.index for t in trials] == list(range(len(trials)))
    crashed = storage.get_trial(job.id, lost_index)
    assert crashed.status == "failed" and crashed.charged  # lost to a crash: it counts
    assert sum(t.trained for t in trials) == 5
    told = [r.params for r in recording[0].told]
    assert [t.params for t in done] == told[: len(done)]  # replayed in index order
    assert lost.params in told  # the crashed candidate is told as failed, not retried
    assert sum(t.params == lost.params for t in trials) == 1
