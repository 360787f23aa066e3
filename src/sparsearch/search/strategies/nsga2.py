"""``nsga2``: NSGA-II (Deb et al. 2002) through Optuna's ``NSGAIISampler``, driven ask/tell by
an in-memory study (maximize accuracy, minimize flash and RAM).

- First generation (``nsga2:sobol``, until ``population_size`` trials have completed): feasible
  scrambled-Sobol points, the design the other strategies start from, enqueued into the study so
  that they are its generation 0. (Optuna's own random sampling needs a study trial per
  screened draw, 4-10 ms each, ten times a Sobol draw and its estimate: minutes before a tight
  or exhausted space is given up.)
- Then (``nsga2:genetic``) the sampler breeds: every dimension is sampled (inactive ones too, so
  crossover always sees the whole genome), the child is canonicalized and screened; one that does
  not fit, or repeats a known point, is told to the study as failed (never a population member)
  and the sampler is asked again, ``GENETIC_TRIES`` times per candidate at most; then the batch
  is filled with feasible Sobol points (``nsga2:sobol``).
- Resume: the driver replays the stored trials. Those the study does not know are added as
  finished trials, tagged with the generation the sampler's own rule gives them (an untagged
  trial would be invisible to its populations), with deterministic filler values for the
  dimensions their canonical form drops.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial, TrialState

from sparsearch.search.screen import LimitsTooTight, Screen, sobol_draw
from sparsearch.search.strategies.base import Proposal, Result
from sparsearch.space.params import ParamDef

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

#: Where the sampler keeps a trial's generation (BaseGASampler's system attribute).
_GENERATION_KEY = optuna.samplers.NSGAIISampler._get_generation_key()
#: Children the sampler may draw per candidate wanted before Sobol points fill the batch.
GENETIC_TRIES = 100


def population_size(budget: int) -> int:
    """A generation: a quarter of the budget, 4 to 10 trials (several generations fit)."""
    return min(10, max(4, budget // 4))


class Nsga2Strategy:
    name = "nsga2"

    def __init__(self, screen: Screen, *, seed: int, budget: int) -> None:
        self._screen = screen
        self._seed = seed
        self.population_size = population_size(budget)
        sampler = optuna.samplers.NSGAIISampler(population_size=self.population_size, seed=seed)
        self._study = optuna.create_study(
            directions=["maximize", "minimize", "minimize"], sampler=sampler
        )
        self._defs = {d.name: d for d in screen.codec.defs}
        self._dists = {d.name: _distribution(d) for d in screen.codec.defs}
        self._draw = sobol_draw(screen.codec, seed)
        self._running: dict[str, Trial] = {}  # asked, proposed, not yet told
        self._told: set[str] = set()
        self._generations: Counter[int] = Counter()  # completed trials per generation
        self._completed = 0

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        start = time.perf_counter()
        codec = self._screen.codec
        exclude = self._told | set(self._running) | {codec.key(p) for p in pending}
        found: list[tuple[dict[str, Any], str]] = []
        if self._completed >= self.population_size:
            for _ in range(GENETIC_TRIES * k):
                trial = self._study.ask(self._dists)
                params = codec.canonical(trial.params)
                key = codec.key(params)
                new = key not in exclude
                exclude.add(key)
                if not new or not self._screen.fits(params):
                    self._study.tell(trial, state=TrialState.FAIL)  # screened: not a member
                    continue
                self._running[key] = trial
                found.append((params, "nsga2:genetic"))
                if len(found) >= k:
                    break
        if len(found) < k:
            try:
                points = self._screen.feasible(
                    self._draw, k - len(found), exclude=exclude, what="NSGA-II's sampling"
                )
            except LimitsTooTight:
                if not found:
                    raise
                points = []
            for p in points:
                self._study.enqueue_trial({n: _clamped(self._defs[n], v) for n, v in p.items()})
                trial = self._study.ask(self._dists)
                trial.relative_params  # noqa: B018  tags its generation, even with all fixed
                self._running[codec.key(p)] = trial
                found.append((p, "nsga2:sobol"))
        share = (time.perf_counter() - start) / max(1, len(found))
        return [Proposal(p, generator, share) for p, generator in found]

    def tell(self, result: Result) -> None:
        key = self._screen.codec.key(result.params)
        if key in self._told:
            return
        self._told.add(key)
        trial = self._running.pop(key, None)
        ok = result.accuracy is not None and math.isfinite(result.accuracy)
        values = [float(result.accuracy or 0.0), float(result.flash), float(result.ram)]
        if trial is not None:
            if not ok:
                self._study.tell(trial, state=TrialState.FAIL)
                return
            frozen = self._study.tell(trial, values)
            self._count(frozen.system_attrs.get(_GENERATION_KEY, -1))
        elif ok:
            self._add(result.params, key, values)

    # -- replayed or foreign results -----------------------------------------------------------

    def _add(self, params: dict[str, Any], key: str, values: list[float]) -> None:
        """A finished trial the study never asked for, in the generation the sampler would
        give it now; skipped (its key stays excluded) when its point is not of this space."""
        filler = random.Random(f"{self._seed}:{key}")
        full: dict[str, Any] = {}
        for name, d in self._defs.items():
            v = params[name] if name in params else _any_value(d, filler)
            full[name] = _clamped(d, v)
        top = max(self._generations, default=0)
        generation = top if self._generations[top] < self.population_size else top + 1
        try:
            frozen = optuna.trial.create_trial(
                params=full,
                distributions=dict(self._dists),
                values=values,
                system_attrs={_GENERATION_KEY: generation},
            )
            self._study.add_trial(frozen)
        except (ValueError, TypeError):
            return
        self._count(generation)

    def _count(self, generation: int) -> None:
        self._completed += 1
        if generation >= 0:
            self._generations[generation] += 1


def _distribution(d: ParamDef) -> BaseDistribution:
    if d.values is not None:
        return CategoricalDistribution(d.values)
    lo, hi = d.bounds  # type: ignore[misc]
    if d.value_type == "int":
        return IntDistribution(int(lo), int(hi), log=d.log)
    return FloatDistribution(float(lo), float(hi), log=d.log)


def _any_value(d: ParamDef, rng: random.Random) -> Any:
    """A value for a dimension the point leaves out (inactive: it changes no network)."""
    if d.values is not None:
        return rng.choice(d.values)
    lo, hi = d.bounds  # type: ignore[misc]
    if d.value_type == "int":
        return rng.randint(int(lo), int(hi))
    if d.log:
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.uniform(lo, hi)


def _clamped(d: ParamDef, v: Any) -> Any:
    """``v`` inside the range of ``d`` (a rounded lr can fall just outside); choices as given."""
    if d.values is not None or not isinstance(v, int | float) or isinstance(v, bool):
        return v
    lo, hi = d.bounds  # type: ignore[misc]
    if d.value_type == "int":
        return int(min(hi, max(lo, round(v))))
    return float(min(hi, max(lo, v)))
