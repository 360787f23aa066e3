"""``evolution``: aging evolution (Real et al. 2019) with random scalarization of the three
objectives, as μNAS (Liberis et al. 2021) searches networks for microcontrollers.

- Initial population: feasible scrambled-Sobol points (``evolution:sobol``) until ``P`` results
  have been told (completed or failed; with trials in flight a few more may be proposed).
- Then each proposal (``evolution:mutation``) draws scalarization weights from Dirichlet(1, 1, 1)
  over the normalized objectives (accuracy as ``pareto.normalize`` does, flash and RAM as
  1 - x/limit), samples ``S`` members of the population, takes the best by the weighted sum
  and changes one setting of it (``Codec.mutate``), retrying until the child fits and is new.
  After ``MUTATION_TRIES`` failed tries it falls back to a fresh feasible Sobol point.
- Aging: the population is the ``P`` most recent completed results; failed trials are never
  parents, and a member leaves when it is the oldest, however good.

Sizes: ``P = min(20, max(4, budget // 4))`` (several generations fit even a small budget) and
``S = max(2, P // 4)`` (Real et al.'s sample-to-population ratio of 25/100: a tournament
still picks good parents while the aging keeps the search moving).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from sparsearch.search.pareto import Point, normalize
from sparsearch.search.screen import LimitsTooTight, Screen, sobol_draw
from sparsearch.search.strategies.base import Proposal, Result

#: Mutations tried per proposal before a fresh Sobol point is drawn instead.
MUTATION_TRIES = 100


def population_size(budget: int) -> int:
    return min(20, max(4, budget // 4))


def sample_size(population: int) -> int:
    return max(2, population // 4)


class EvolutionStrategy:
    name = "evolution"

    def __init__(self, screen: Screen, *, seed: int, budget: int) -> None:
        self._screen = screen
        self.population_size = population_size(budget)
        self.sample_size = sample_size(self.population_size)
        self._rng = random.Random(seed)
        self._draw = sobol_draw(screen.codec, seed)
        self._told: set[str] = set()
        self._n_told = 0
        self._population: deque[Result] = deque(maxlen=self.population_size)

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        start = time.perf_counter()
        key = self._screen.codec.key
        exclude = self._told | {key(p) for p in pending}
        out: list[tuple[dict[str, Any], str]] = []
        if self._n_told < self.population_size or not self._population:
            points = self._sobol(k, exclude)
            out = [(p, "evolution:sobol") for p in points]
        else:
            rejected: set[str] = set()  # screened in this batch: never screened twice
            for _ in range(k):
                child = self._mutation(exclude, rejected)
                if child is not None:
                    out.append((child, "evolution:mutation"))
                else:
                    try:
                        fresh = self._sobol(1, exclude | rejected)
                    except LimitsTooTight:
                        if out:
                            break
                        raise
                    out.append((fresh[0], "evolution:sobol"))
                exclude.add(key(out[-1][0]))
        share = (time.perf_counter() - start) / max(1, len(out))
        return [Proposal(p, generator, share) for p, generator in out]

    def tell(self, result: Result) -> None:
        key = self._screen.codec.key(result.params)
        if key in self._told:
            return
        self._told.add(key)
        self._n_told += 1
        if result.accuracy is not None and math.isfinite(result.accuracy):
            self._population.append(result)

    # -- internals -----------------------------------------------------------------------------

    def _sobol(self, n: int, exclude: set[str]) -> list[dict[str, Any]]:
        return self._screen.feasible(self._draw, n, exclude=exclude, what="evolution's sampling")

    def _mutation(self, exclude: set[str], rejected: set[str]) -> dict[str, Any] | None:
        """A new feasible child of a tournament winner, or None after MUTATION_TRIES tries."""
        codec = self._screen.codec
        e = [self._rng.expovariate(1.0) for _ in range(3)]
        weights = [x / sum(e) for x in e]  # Dirichlet(1, 1, 1)
        members = list(self._population)
        sample = self._rng.sample(members, min(self.sample_size, len(members)))
        parent = max(sample, key=lambda r: self._score(r, weights))
        for _ in range(MUTATION_TRIES):
            child = codec.mutate(parent.params, self._rng, changes=1)
            k = codec.key(child)
            if k in exclude or k in rejected:
                continue
            if self._screen.fits(child):
                return child
            rejected.add(k)
        return None

    def _score(self, r: Result, weights: list[float]) -> float:
        lim = self._screen.cfg.limits
        objectives = normalize(
            Point(0, float(r.accuracy), r.flash, r.ram),  # type: ignore[arg-type]
            num_classes=self._screen.num_classes,
            flash_limit=lim.flash_bytes,
            ram_limit=lim.model_ram_bytes,
        )
        return sum(w * x for w, x in zip(weights, objectives, strict=True))
