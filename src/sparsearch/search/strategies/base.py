"""The interface every search strategy implements, and what crosses it.

A strategy proposes canonical parameter dicts (``Codec.canonical``) that fit the job's limits by
estimate (it asks ``Screen.fits``); it never sees trial indices (the driver owns them) and
keeps no state a resume could not rebuild: the driver tells a fresh strategy every stored
result, in trial order, before asking it anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Proposal:
    """A candidate to train: its point, the generator that made it ("<strategy>:<stage>", e.g.
    ``bo:sobol``) and the wall time the strategy spent on it (a batch's time shared out)."""

    params: dict[str, Any]
    generator: str
    gen_seconds: float = 0.0


@dataclass(frozen=True)
class Result:
    """A trained candidate's outcome: ``accuracy`` is None for a failed trial. ``flash`` is
    the job's accounted flash, ``ram`` and ``macs`` the estimates the limits were checked on."""

    params: dict[str, Any]
    accuracy: float | None
    flash: int
    ram: int
    macs: int

    @property
    def failed(self) -> bool:
        return self.accuracy is None


class Strategy(Protocol):
    """Ask/tell over the space of one job."""

    name: str

    def ask(self, k: int, pending: Sequence[dict[str, Any]]) -> list[Proposal]:
        """Up to ``k`` (at least one, unless the space is exhausted) new feasible candidates,
        distinct from each other, from every told result and from ``pending`` (the candidates
        proposed but not yet told: training, or waiting to). Raises LimitsTooTight when
        nothing feasible can be found."""
        ...

    def tell(self, result: Result) -> None:
        """A trained candidate's outcome (also used to replay stored trials on resume)."""
        ...
