"""Candidates generated while trials train, so a worker that frees up starts its next trial at
once.

A daemon thread asks the strategy for one candidate at a time and keeps up to ``depth`` ready;
the strategy sees every in-flight and every ready candidate as pending. Asks and tells are
serialized by one lock (strategies need not be thread-safe). ``depth`` 0 generates in the
caller's thread when a candidate is taken: with one worker a search then stays reproducible
from its seed, since every ask sees every earlier result.

A ready candidate has no trial index and is stored nowhere: it lives here until it is taken (a
resumed job asks its rebuilt strategy again), so no job ends with queued leftovers.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from sparsearch.search.strategies.base import Proposal, Result, Strategy


class Lookahead:
    def __init__(self, strategy: Strategy, *, depth: int, unfinished: Callable[[], int]) -> None:
        """``unfinished()`` is how many trials of the budget are not finished yet (in flight
        or still to start): no candidate is generated beyond what the budget can use."""
        self._strategy = strategy
        self._depth = depth
        self._unfinished = unfinished
        self._ask_lock = threading.Lock()
        self._cond = threading.Condition()
        self._ready: deque[Proposal] = deque()
        self._inflight: dict[int, dict[str, Any]] = {}  # trial index -> params
        self._taken: list[dict[str, Any]] = []  # handed to the driver, not yet started
        self._error: BaseException | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None

    # -- the driver's side ---------------------------------------------------------------------

    def start(self) -> None:
        if self._depth > 0 and self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="sparsearch-generator", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def push(self, proposal: Proposal) -> None:
        """Queue a known candidate first (a trial a graceful stop cut short, to redo)."""
        with self._cond:
            self._ready.appendleft(proposal)
            self._cond.notify_all()

    def take(self, timeout: float) -> Proposal | None:
        """The next candidate, or None if none is ready within ``timeout`` seconds (the caller
        checks for a stop and tries again). Re-raises what the generator thread raised. The
        caller reports the candidate ``started``: until then it counts as pending."""
        if self._depth == 0:
            with self._cond:
                if self._ready:
                    proposal = self._ready.popleft()
                    self._taken.append(proposal.params)
                    return proposal
            with self._ask_lock:
                batch = self._strategy.ask(1, self.pending())
            if not batch:
                raise Exhausted()
            with self._cond:
                self._taken.append(batch[0].params)
            return batch[0]
        with self._cond:
            if not self._ready and self._error is None:
                self._cond.wait(timeout)
            if not self._ready:
                if self._error is not None:  # after the candidates made before it
                    raise self._error
                return None
            proposal = self._ready.popleft()
            self._taken.append(proposal.params)  # still pending until it has started
            self._cond.notify_all()  # a slot in the lookahead is free
            return proposal

    def started(self, index: int, params: dict[str, Any]) -> None:
        with self._cond:
            self._inflight[index] = params
            if params in self._taken:
                self._taken.remove(params)
            self._cond.notify_all()

    def finished(self, index: int, result: Result | None) -> None:
        """Trial ``index`` is over; ``result`` (None: nothing to learn, e.g. cancelled) is
        told to the strategy."""
        with self._cond:
            self._inflight.pop(index, None)
        if result is not None:
            self.tell(result)
        with self._cond:
            self._cond.notify_all()

    def tell(self, result: Result) -> None:
        with self._ask_lock:
            self._strategy.tell(result)

    def pending(self) -> list[dict[str, Any]]:
        with self._cond:
            return [*self._inflight.values(), *self._taken, *(p.params for p in self._ready)]

    # -- the generator thread ------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and len(self._ready) >= min(
                    self._depth, self._unfinished() - len(self._inflight)
                ):
                    self._cond.wait(0.5)
                if self._stopped:
                    return
            try:
                with self._ask_lock:
                    batch = self._strategy.ask(1, self.pending())
            except BaseException as e:  # noqa: BLE001 - handed to the driver's thread
                with self._cond:
                    self._error = e
                    self._cond.notify_all()
                return
            with self._cond:
                if not batch:  # the space is exhausted: nothing more will come
                    self._error = Exhausted()
                    self._cond.notify_all()
                    return
                self._ready.extend(batch)
                self._cond.notify_all()


class Exhausted(Exception):
    """The strategy has no candidate left: every feasible network of the space was tried."""
