"""``random``: the honest baseline, a feasible space-filling design (scrambled Sobol points of
the space, screened by the estimate) for the whole budget."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sparsearch.search.screen import Screen, sobol_draw
from sparsearch.search.strategies.base import Proposal, Result


class RandomStrategy:
    name = "random"

    def __init__(self, screen: Screen, *, seed: int) -> None:
        self._screen = screen
        self._draw = sobol_draw(screen.codec, seed)
        self._told: set[str] = set()

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        start = time.perf_counter()
        key = self._screen.codec.key
        exclude = self._told | {key(p) for p in pending}
        points = self._screen.feasible(self._draw, k, exclude=exclude, what="random sampling")
        share = (time.perf_counter() - start) / max(1, len(points))
        return [Proposal(p, "random:sobol", share) for p in points]

    def tell(self, result: Result) -> None:
        self._told.add(self._screen.codec.key(result.params))
