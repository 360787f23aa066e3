"""The Ray channel of early stopping (issue 22): real trials on a real local Ray report each
curve point to a job's ``CurveBoard`` actor, which answers at once from the driver's last
state; a trial told to stop ends as ``TrialStopped`` at that point, the others train on."""

from __future__ import annotations

import pytest
from test_trial import _spec

from sparsearch.datasets import load_dataset
from sparsearch.worker.remote import TrialRunner
from sparsearch.worker.trial import TrialResult, TrialStopped

pytestmark = pytest.mark.ray


def test_trials_report_to_the_board_and_stop_when_it_says_so(ray_address: str) -> None:
    def judge(state, index, point):  # type: ignore[no-untyped-def]
        return index in state["stop"] and point["epoch"] >= state["at"]

    runner = TrialRunner()
    board = runner.board(judge)
    board.update({"stop": {1}, "at": 2.0})
    data = runner.put(load_dataset("digits", seed=0))
    refs = [runner.submit(_spec(epochs=3), data, board, index) for index in (0, 1)]
    kept, stopped = (runner.result(r) for r in refs)
    assert isinstance(kept, TrialResult) and [p["epoch"] for p in kept.curve] == [1.0, 2.0, 3.0]
    assert isinstance(stopped, TrialStopped) and stopped.epochs == 2.0
    assert stopped.worker_node  # set by the Ray layer, as for results
    points = board.drain()
    assert sorted((i, p["epoch"]) for i, p in points) == [
        (0, 1.0), (0, 2.0), (0, 3.0), (1, 1.0), (1, 2.0),
    ]  # fmt: skip
    assert board.drain() == []  # drained


def test_stop_by_index_and_no_state_stops_nobody(ray_address: str) -> None:
    runner = TrialRunner()
    board = runner.board(lambda state, index, point: True)  # would stop all, once it has state
    data = runner.put(load_dataset("digits", seed=0))
    assert isinstance(runner.result(runner.submit(_spec(epochs=2), data, board, 0)), TrialResult)
    board.stop(5)
    stopped = runner.result(runner.submit(_spec(epochs=2), data, board, 5))
    assert isinstance(stopped, TrialStopped) and stopped.epochs == 1.0
    # without a board a trial reports nowhere and runs to the end
    assert isinstance(runner.result(runner.submit(_spec(epochs=2), data)), TrialResult)
