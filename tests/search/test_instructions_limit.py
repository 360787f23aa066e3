"""The instructions limit (issue 21: a latency budget, Cortex-M4 instructions per inference,
target ``c``) as a known constraint: the screen rejects candidates over it by the C estimate
and names it when no network can meet it; a trained trial over it as measured in the emulator
is kept infeasible, off the front, like one over flash or RAM."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from test_driver import _job

from fake_runner import FakeRunner
from sparsearch.jobconfig import JobConfig
from sparsearch.search.driver import SearchDriver
from sparsearch.search.screen import LimitsTooTight, Screen, sobol_draw
from sparsearch.space.estimate import estimate
from sparsearch.worker.remote import TrialFailure

#: digits: 8x8 grey images, 10 classes, pixels 0..16.
SHAPE, CLASSES, PIXEL_SCALE = (1, 8, 8), 10, 1.0 / 16.0
#: Flash and RAM no network of the default space comes near: only instructions decide.
HUGE = 1 << 30


def _c_cfg(instructions: int | None, **kw) -> JobConfig:
    args = dict(dataset="digits", flash_bytes=HUGE, ram_bytes=HUGE, trials=4, target="c")
    return JobConfig.create(**{**args, **kw}, instructions=instructions)


def _c_instructions(screen: Screen, params: dict) -> int | None:
    """The C estimator's instructions of a candidate, asked directly (None: cannot be built)."""
    from sparsearch.errors import SpaceError

    try:
        arch, pruning, _ = screen.decode(params)
    except SpaceError:
        return None
    try:
        return estimate(arch, pruning, target="c", pixel_scale=PIXEL_SCALE).instructions
    except SpaceError:
        return None


def _candidates(screen: Screen, n: int = 300) -> list[tuple[dict, int]]:
    draw = sobol_draw(screen.codec, 3)
    found = []
    for _ in range(n):
        p = draw()
        instructions = _c_instructions(screen, p)
        if instructions is not None:
            found.append((p, instructions))
    return found


def test_the_screen_rejects_candidates_over_the_instructions_limit_by_estimate():
    probe = Screen(_c_cfg(None), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    candidates = _candidates(probe)
    counts = sorted(i for _, i in candidates)
    limit = counts[len(counts) // 2]  # about half the candidates are over it
    screen = Screen(_c_cfg(limit), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    over = [p for p, i in candidates if i > limit]
    under = [p for p, i in candidates if i <= limit]
    assert len(over) > 20 and len(under) > 20
    for p, instructions in candidates:
        costs = screen.costs(p)
        assert costs is not None and costs.instructions == instructions
        assert screen.fits(p) == (instructions <= limit), (p, instructions, limit)
    assert screen.screened == len(over)
    # Without the limit, the same candidates all fit (flash and RAM are far away).
    assert all(probe.fits(p) for p in over)


def test_a_design_under_an_instructions_limit_draws_only_candidates_within_it():
    probe = Screen(_c_cfg(None), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    counts = sorted(i for _, i in _candidates(probe, 200))
    limit = counts[len(counts) // 4]
    screen = Screen(_c_cfg(limit), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    design = screen.feasible(sobol_draw(screen.codec, 11), 8)
    assert len(design) == 8
    assert all(_c_instructions(screen, p) <= limit for p in design)


def test_an_instructions_limit_below_the_smallest_network_is_named_before_anything_trains():
    screen = Screen(_c_cfg(10), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    with pytest.raises(LimitsTooTight) as caught:
        screen.check_reachable()
    message = caught.value.message
    assert "instructions: the smallest network needs" in message
    assert "over the limit of 10" in message
    assert "flash:" not in message and "RAM:" not in message
    # A limit the smallest networks meet is reachable.
    Screen(_c_cfg(10**9), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE).check_reachable()


def test_a_design_that_finds_nothing_under_the_limit_names_the_smallest_instructions():
    screen = Screen(_c_cfg(10), SHAPE, CLASSES, pixel_scale=PIXEL_SCALE)
    with pytest.raises(LimitsTooTight) as caught:
        screen.feasible(sobol_draw(screen.codec, 5), 1)
    message = caught.value.message
    assert "smallest instructions" in message and "instructions 10" in message


# -- measured ----------------------------------------------------------------------------------


@pytest.fixture()
def storage(tmp_path):
    from sparsearch.storage import open_storage

    s = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", tmp_path / "artifacts")
    yield s
    s.close()


class InstructionsRunner(FakeRunner):
    """Each result is measured on the C target: flash and RAM as estimated, and
    ``instructions`` as estimated, except trials in ``over``: ``limit + 1``."""

    def __init__(self, *, limit: int, over: set[int] = frozenset()):
        super().__init__(seconds=0.0)
        self.limit, self.over = limit, set(over)

    def result(self, ref):
        spec = self.running[ref][1]
        base = super().result(ref)
        if isinstance(base, TrialFailure):
            return base
        est = estimate(spec.arch, spec.pruning, target=spec.target, pixel_scale=PIXEL_SCALE)
        index = int(re.findall(r"trial (\d+)", spec.label)[-1])
        instructions = self.limit + 1 if index in self.over else est.instructions
        return replace(
            base,
            flash_bytes=est.flash_bytes,
            ram_bytes=est.ram_bytes,
            activation_bytes=est.activation_bytes,
            int8_accuracy=base.accuracy - 0.01,
            int8_test_accuracy=0.4,
            export_seconds=0.1,
            c_flash_bytes=est.flash_bytes,
            c_ram_bytes=est.ram_bytes,
            instructions=instructions,
        )


def test_a_trial_over_the_instructions_limit_as_measured_is_infeasible(storage, caplog):
    limit = 2_000_000
    job, cfg = _job(
        storage, trials=4, target="c", flash_bytes=HUGE, ram_bytes=HUGE, instructions=limit
    )
    assert cfg.limits.instructions == limit
    driver = SearchDriver(storage, job.id, runner=InstructionsRunner(limit=limit, over={1}))
    final = driver.run()
    assert final.status == "completed", final.error
    assert driver.progress.over_limit == 1
    trials = {t.index: t for t in storage.list_trials(job.id)}
    over = trials[1]
    assert over.status == "completed" and over.measured and over.instructions == limit + 1
    assert not over.feasible and not over.pareto
    assert any(
        "over a limit as measured" in r.message
        and f"instructions {limit + 1} > {limit}" in r.message
        for r in caplog.records
    )
    for index in (0, 2, 3):
        assert trials[index].feasible and trials[index].instructions <= limit
    assert any(t.pareto for t in trials.values())
    # Without the limit the same measurements decide nothing.
    free, _ = _job(storage, trials=3, target="c", flash_bytes=HUGE, ram_bytes=HUGE)
    driver = SearchDriver(storage, free.id, runner=InstructionsRunner(limit=100, over={0, 1}))
    assert driver.run().status == "completed"
    assert driver.progress.over_limit == 0
    assert all(t.feasible for t in storage.list_trials(free.id))
