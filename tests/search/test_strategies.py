"""The strategy contract (``strategies/base.py``), checked on every strategy without training:
a synthetic accuracy of the decoded network stands in for the worker."""

from __future__ import annotations

import importlib.util
import math
import zlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import pytest

from sparsearch.jobconfig import JobConfig
from sparsearch.search.screen import Screen, sobol_draw
from sparsearch.search.strategies import Proposal, Result, Strategy, make_strategy

SHAPE = (1, 8, 8)
ROUNDS = 30
#: BO fits models (seconds an ask on a small CPU): enough rounds to leave its initial design.
ROUNDS_BO = 8
ROOMY = (20_000, 8_000)  # flash, RAM: most of the space fits, not all of it
TIGHT = (5_000, 2_500)  # a few percent of the default space fits


def _strategy_params() -> list[Any]:
    bo_missing = importlib.util.find_spec("sparsearch.search.strategies.bo") is None
    bo = pytest.param(
        "bo",
        marks=pytest.mark.skipif(bo_missing, reason="sparsearch.search.strategies.bo not written"),
    )
    return ["random", "nsga2", "evolution", bo]


STRATEGIES = _strategy_params()


def config(name: str, limits: tuple[int, int]) -> JobConfig:
    flash, ram = limits
    return JobConfig.create(
        dataset="digits",
        flash_bytes=flash,
        ram_bytes=ram,
        trials=ROUNDS * 2,
        parallel=2,
        epochs=1,
        strategy=name,
        target="tflm",  # the limits below are calibrated on TFLM's sizes
    )


def result_of(screen: Screen, params: dict[str, Any]) -> Result:
    """Accuracy grows with the log of the parameter count; one trial in nine fails (and one
    that cannot be built: the contract test then says why)."""
    costs = screen.costs(params)
    if costs is None:
        return Result(params, None, 0, 0, 0)
    key = screen.codec.key(params)
    accuracy = min(0.99, 0.1 + 0.08 * math.log1p(costs.estimates["param_count"]))
    failed = zlib.crc32(key.encode()) % 9 == 0
    return Result(params, None if failed else accuracy, costs.flash, costs.ram, costs.macs)


@dataclass
class Run:
    screen: Screen
    strategy: Strategy
    batches: list[list[Proposal]] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    fitted: list[list[str]] = field(default_factory=list)  # keys screened, per ask

    @property
    def proposals(self) -> list[Proposal]:
        return [p for batch in self.batches for p in batch]


def rounds(name: str) -> int:
    return ROUNDS_BO if name == "bo" else ROUNDS


def run(name: str, limits: tuple[int, int] = ROOMY, *, seed: int = 0, n: int = 0) -> Run:
    """``n`` (default: ``rounds(name)``) asks of two, each with the previous batch pending
    (then told)."""
    cfg = config(name, limits)
    screen = Screen(cfg, SHAPE, 10)
    out = Run(screen, make_strategy(name, screen, seed=seed, budget=cfg.budget.trials, parallel=2))
    fits = screen.fits

    def recording_fits(params: dict[str, Any]) -> bool:
        out.fitted[-1].append(screen.codec.key(params))
        return fits(params)

    screen.fits = recording_fits  # type: ignore[method-assign]
    pending: list[Proposal] = []
    for _ in range(n or rounds(name)):
        out.fitted.append([])
        batch = out.strategy.ask(2, [p.params for p in pending])
        for p in pending:
            out.results.append(result_of(screen, p.params))
            out.strategy.tell(out.results[-1])
        out.batches.append(batch)
        pending = batch
    for p in pending:
        out.results.append(result_of(screen, p.params))
        out.strategy.tell(out.results[-1])
    return out


@cache
def cached_run(name: str, limits: tuple[int, int] = ROOMY) -> Run:
    return run(name, limits)


@pytest.mark.parametrize("limits", [ROOMY, TIGHT], ids=["roomy", "tight"])
@pytest.mark.parametrize("name", STRATEGIES)
def test_proposals_keep_the_contract(name: str, limits: tuple[int, int]) -> None:
    r = cached_run(name, limits)
    codec = r.screen.codec
    keys = [codec.key(p.params) for p in r.proposals]
    assert len(keys) == len(set(keys)), "a candidate was proposed twice"
    screened_so_far: set[str] = set()  # bo screens its pool once and proposes from it later
    for batch, fitted in zip(r.batches, r.fitted, strict=True):
        assert 1 <= len(batch) <= 2
        assert len(fitted) == len(set(fitted)), "a candidate was screened twice in one ask"
        screened_so_far |= set(fitted)
        for p in batch:
            assert r.screen.within(r.screen.costs(p.params)), p.params
            assert p.params == codec.canonical(p.params)
            assert p.generator.startswith(f"{name}:"), p.generator
            assert p.gen_seconds >= 0.0
            assert codec.key(p.params) in screened_so_far, "proposed without asking the screen"


@pytest.mark.parametrize("name", STRATEGIES)
def test_tight_limits_still_give_only_feasible_proposals(name: str) -> None:
    probe = Screen(config(name, TIGHT), SHAPE, 10)
    draw = sobol_draw(probe.codec, 123)
    share = sum(probe.fits(draw()) for _ in range(1000)) / 1000
    assert 0.0 < share < 0.2, share  # most random points do not fit
    r = cached_run(name, TIGHT)
    assert r.screen.screened > 0
    assert len(r.proposals) >= rounds(name)
    assert all(r.screen.within(r.screen.costs(p.params)) for p in r.proposals)


@pytest.mark.parametrize("name", STRATEGIES)
def test_same_seed_same_proposals(name: str) -> None:
    first, again = cached_run(name), run(name)
    assert [(p.params, p.generator) for p in first.proposals] == [
        (p.params, p.generator) for p in again.proposals
    ]
    other = run(name, seed=1, n=3)
    assert [p.params for p in other.proposals] != [p.params for p in first.proposals[:6]]


@pytest.mark.parametrize("name", STRATEGIES)
def test_rebuilt_from_tells_proposes_new_feasible_points(name: str) -> None:
    r = cached_run(name)
    cfg = r.screen.cfg
    screen = Screen(cfg, SHAPE, 10)
    fresh = make_strategy(name, screen, seed=0, budget=cfg.budget.trials, parallel=2)
    for result in r.results:
        fresh.tell(result)
    told = {screen.codec.key(x.params) for x in r.results}
    batch = fresh.ask(2, [])
    assert 1 <= len(batch) <= 2
    for p in batch:
        assert screen.codec.key(p.params) not in told
        assert screen.within(screen.costs(p.params))
    if name == "nsga2":  # the replayed trials are generations of the sampler, not bystanders
        assert {p.generator for p in batch} == {"nsga2:genetic"}
        study, running = fresh._study, fresh._running  # type: ignore[attr-defined]
        generation = study.sampler._get_generation_key()
        asked = [study._storage.get_trial(t._trial_id) for t in running.values()]
        assert all(t.system_attrs[generation] >= 2 for t in asked)
    if name == "evolution":
        assert {p.generator for p in batch} <= {"evolution:mutation", "evolution:sobol"}
        assert any(p.generator == "evolution:mutation" for p in batch)


@pytest.mark.parametrize("name", STRATEGIES)
def test_pending_it_did_not_propose_is_excluded(name: str) -> None:
    """Two strategies in the same state would propose the same points; the second, told the
    first's proposals as pending (as after a resume), proposes others."""
    cfg = cached_run(name).screen.cfg
    for tells in ([], cached_run(name).results):  # initial design, then the later stage
        screen = Screen(cfg, SHAPE, 10)
        a, b = (
            make_strategy(name, screen, seed=0, budget=cfg.budget.trials, parallel=2)
            for _ in range(2)
        )
        for result in tells:
            a.tell(result)
            b.tell(result)
        mine = a.ask(2, [])
        theirs = b.ask(2, [p.params for p in mine])
        keys = {screen.codec.key(p.params) for p in mine}
        assert keys.isdisjoint(screen.codec.key(p.params) for p in theirs)


def _differences(a: dict[str, Any], b: dict[str, Any]) -> int:
    return sum(a.get(n) != b.get(n) for n in set(a) | set(b))


def _told_before(r: Run) -> list[int]:
    """Per ask, how many results had been told (each batch is told after the next ask)."""
    sizes = [len(b) for b in r.batches]
    return [sum(sizes[: max(0, i - 1)]) for i in range(len(sizes))]


def test_evolution_mutates_told_completed_points() -> None:
    r = cached_run("evolution")
    p_size = r.strategy.population_size  # type: ignore[attr-defined]
    assert p_size == 15  # min(20, max(4, 60 // 4))
    mutations = 0
    for batch, told in zip(r.batches, _told_before(r), strict=True):
        parents = [x.params for x in r.results[:told] if x.accuracy is not None][-p_size:]
        for p in batch:
            if told < p_size:
                assert p.generator == "evolution:sobol"
            elif p.generator == "evolution:mutation":
                mutations += 1
                # one setting moved (a block added or removed brings its 4 settings along)
                # of a completed member of the population
                assert min(_differences(p.params, q) for q in parents) <= 5
    assert mutations >= len(r.proposals) - p_size - 4


def test_nsga2_breeds_after_the_first_generation() -> None:
    r = cached_run("nsga2")
    p_size = r.strategy.population_size  # type: ignore[attr-defined]
    assert p_size == 10  # min(10, max(4, 60 // 4))
    for batch, told in zip(r.batches, _told_before(r), strict=True):
        completed = sum(x.accuracy is not None for x in r.results[:told])
        stage = "nsga2:genetic" if completed >= p_size else "nsga2:sobol"
        assert {p.generator for p in batch} == {stage}
    assert r.batches[-1][0].generator == "nsga2:genetic"
    # every completed trial is a member of a generation (a Sobol point with every setting
    # active, so nothing left to sample, too)
    from optuna.trial import TrialState

    study = r.strategy._study  # type: ignore[attr-defined]
    generation = study.sampler._get_generation_key()
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(completed) == sum(x.accuracy is not None for x in r.results)
    assert all(generation in t.system_attrs for t in completed)
