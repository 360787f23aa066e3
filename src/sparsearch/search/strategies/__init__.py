"""Search strategies behind one interface (:class:`~sparsearch.search.strategies.base.Strategy`).

Each module implements one name of ``vocabulary.STRATEGIES``; :func:`make_strategy` builds the
one a job names. Model libraries load only when their strategy is used.
"""

from __future__ import annotations

from sparsearch.search.screen import Screen
from sparsearch.search.strategies.base import Proposal, Result, Strategy
from sparsearch.vocabulary import STRATEGIES


def make_strategy(name: str, screen: Screen, *, seed: int, budget: int, parallel: int) -> Strategy:
    """The strategy ``name`` for the job ``screen`` describes."""
    if name == "random":
        from sparsearch.search.strategies.random_search import RandomStrategy

        return RandomStrategy(screen, seed=seed)
    if name == "bo":
        from sparsearch.search.strategies.bo import BoStrategy

        return BoStrategy(screen, seed=seed, budget=budget, parallel=parallel)
    if name == "nsga2":
        from sparsearch.search.strategies.nsga2 import Nsga2Strategy

        return Nsga2Strategy(screen, seed=seed, budget=budget)
    if name == "evolution":
        from sparsearch.search.strategies.evolution import EvolutionStrategy

        return EvolutionStrategy(screen, seed=seed, budget=budget)
    raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


__all__ = ["Proposal", "Result", "Strategy", "make_strategy"]
