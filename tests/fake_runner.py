"""A runner that trains no model, for tests of the search driver (``SearchDriver(runner=…)``).

It lives at the top of ``tests/`` (on ``sys.path`` through ``tests/conftest.py``) so tests in
any folder can import it: ``from fake_runner import FakeRunner``."""

from __future__ import annotations

import math
import random
import time

from sparsearch.space.estimate import estimate
from sparsearch.worker.remote import CurveBoard, TrialFailure
from sparsearch.worker.trial import TrialResult, TrialStopped


class FakeRunner:
    """Runs no model: a trial "trains" for ``seconds`` and scores by its size. Records every
    spec it got and the most trials it had in flight at once."""

    def __init__(
        self, seconds: float = 0.03, fail: set[int] | None = None, noise: float = 0.0
    ) -> None:
        self.seconds = seconds
        #: Up to this much accuracy taken off by a hash of the architecture: with it, size no
        #: longer decides accuracy alone and some trials are dominated (early stopping's tests).
        self.noise = noise
        self.fail = fail or set()
        self.running: dict[int, tuple[float, object]] = {}
        self.specs: list = []
        self.max_concurrency = 0
        self._next = 0
        self.boards: list[CurveBoard] = []
        self.stopped: list[int] = []
        self.reporting: dict[int, tuple[object, int]] = {}

    def put(self, value):
        return value

    def board(self, judge):
        """An in-process CurveBoard (the Ray actor's class itself): the same calls."""
        self.boards.append(CurveBoard(judge))
        return self.boards[-1]

    def submit(self, spec, data_ref, board=None, index=-1):
        ref = self._next
        self._next += 1
        self.reporting[ref] = (board, index)
        self.running[ref] = (time.monotonic() + self.seconds, spec)
        self.specs.append(spec)
        self.max_concurrency = max(self.max_concurrency, len(self.running))
        return ref

    def wait_one(self, refs, timeout=None):
        ref = min(refs, key=lambda r: self.running[r][0])
        delay = self.running[ref][0] - time.monotonic()
        if timeout is not None and delay > timeout:
            time.sleep(timeout)
            return None
        time.sleep(max(0.0, delay))
        return ref

    def result(self, ref):
        _, spec = self.running.pop(ref)
        if ref in self.fail:
            return TrialFailure("injected failure", "", 1)
        params = estimate(spec.arch, spec.pruning).params
        accuracy = min(0.95, 0.2 + 0.07 * math.log(params))
        if self.noise:
            accuracy -= self.noise * random.Random(repr(spec.arch.to_dict())).random()
        # A learning curve that halves its gap to the final accuracy each epoch (0.2 after the
        # first); with a board, each point is reported as a training would, and the board may
        # stop the trial.
        board, index = self.reporting.pop(ref, (None, -1))
        curve = []
        epochs = math.ceil(spec.train.epochs)
        for e in range(1, epochs + 1):
            point = {
                "epoch": float(e),
                "accuracy": accuracy - (0.2 * 0.5 ** (e - 1) if e < epochs else 0.0),
                "seconds": float(e),
                "phase": "train",
            }
            curve.append(point)
            if board is not None and e < epochs and board.report(index, point):
                self.stopped.append(index)
                return TrialStopped(curve, float(e), self.seconds, worker_pid=1)
        return TrialResult(
            accuracy=accuracy,
            curve=curve,
            test_accuracy=0.5,
            train_seconds=self.seconds,
            param_count=params,
            zero_fraction=0.0,
            effective_spec=spec.to_dict(),
            worker_pid=1,
            worker_host="fake",
        )

    def cancel(self, ref):
        self.running.pop(ref, None)
