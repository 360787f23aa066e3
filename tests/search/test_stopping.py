"""The early-stopping rule on synthetic curves (issue 22): a trial dominated at its known costs
even optimistically stops; one that could still reach the front goes on; nothing stops in the
grace period, between checkpoints, in a final training, on an upper-bound cost, or before
enough completed curves of its kind exist."""

from __future__ import annotations

import pytest

from sparsearch.search.stopping import (
    Completed,
    FrontPoint,
    Running,
    StopRule,
    cost_is_exact,
    decide,
    gains,
)

RULE = StopRule(margin=0.0)  # grace 1, eta 3: checkpoints at 1 and 3 of 9 epochs


def _curve(*accuracies: float, prune: tuple[float, ...] = ()) -> list[dict]:
    points = [
        {"epoch": float(i + 1), "accuracy": a, "seconds": float(i + 1), "phase": "train"}
        for i, a in enumerate(accuracies)
    ]
    n = len(accuracies)
    points += [
        {"epoch": n + 0.5 * (i + 1), "accuracy": a, "seconds": 0.0, "phase": "prune"}
        for i, a in enumerate(prune)
    ]
    return points


#: Three completed unpruned trials whose accuracy rose by 0.10-0.20 after epoch 1.
DONE = [
    Completed(_curve(0.60, 0.66, 0.68, 0.69, 0.70, 0.70, 0.70, 0.70, 0.70), pruned=False),
    Completed(_curve(0.70, 0.80, 0.85, 0.87, 0.88, 0.89, 0.90, 0.90, 0.90), pruned=False),
    Completed(_curve(0.50, 0.58, 0.62, 0.64, 0.66, 0.67, 0.68, 0.69, 0.70), pruned=False),
]
#: The front: an accurate 8 KB model and a small 2 KB one.
FRONT = [FrontPoint(1, 0.90, 8000, 2000), FrontPoint(2, 0.70, 2000, 600)]


def _running(accuracy: float, flash: int, ram: int, epoch: float = 1.0, **kw) -> Running:
    return Running(epoch=epoch, accuracy=accuracy, flash=flash, ram=ram, epochs=9, **kw)


def test_the_rungs() -> None:
    assert RULE.rungs(9) == [1.0, 3.0]
    assert RULE.rungs(2) == [1.0]
    assert RULE.rungs(1) == []  # a one-epoch trial has no checkpoint before its end
    assert StopRule(grace=2).rungs(20) == [2.0, 6.0, 18.0]


def test_gains_are_per_kind_and_per_rung() -> None:
    assert gains(1.0, DONE, pruned=False) == pytest.approx([0.10, 0.20, 0.20])
    assert gains(3.0, DONE, pruned=False) == pytest.approx([0.02, 0.05, 0.08])
    assert gains(1.0, DONE, pruned=True) == []


def test_a_trial_dominated_at_its_costs_even_optimistically_stops() -> None:
    # 0.40 after one epoch: at best ~0.60 by the end, while trial 2 has 0.70 in less flash/RAM
    d = decide(RULE, _running(0.40, 3000, 800), FRONT, DONE)
    assert d.stop and d.by == 2
    assert d.optimistic == pytest.approx(0.60)
    assert "trial 2" in d.reason


def test_a_trial_that_could_still_reach_the_front_goes_on() -> None:
    # the same accuracy, but smaller than every front trial: nothing dominates it
    d = decide(RULE, _running(0.40, 1500, 500), FRONT, DONE)
    assert not d.stop and "could still reach" in d.reason
    # as large as trial 2 but able to reach 0.75 > 0.70 by the end
    assert not decide(RULE, _running(0.55, 3000, 800), FRONT, DONE).stop


def test_later_checkpoints_use_their_own_smaller_gains() -> None:
    # 0.64 at epoch 3 reaches at most ~0.71 (gains 0.02-0.08): above trial 2's 0.70, goes on
    assert not decide(RULE, _running(0.64, 3000, 800, epoch=3.0), FRONT, DONE).stop
    assert decide(RULE, _running(0.60, 3000, 800, epoch=3.0), FRONT, DONE).stop


def test_nothing_stops_in_the_grace_period_or_between_checkpoints() -> None:
    hopeless = dict(accuracy=0.10, flash=9000, ram=3000)
    assert "grace" in decide(StopRule(grace=2), _running(**hopeless), FRONT, DONE).reason
    assert not decide(RULE, _running(**hopeless, epoch=2.0), FRONT, DONE).stop
    assert decide(RULE, _running(**hopeless, epoch=3.0), FRONT, DONE).stop


def test_a_final_training_is_never_stopped() -> None:
    d = decide(RULE, _running(0.10, 9000, 3000, final=True), FRONT, DONE)
    assert not d.stop and "final" in d.reason


def test_an_upper_bound_cost_is_not_used_to_stop() -> None:
    d = decide(RULE, _running(0.10, 9000, 3000, exact_cost=False), FRONT, DONE)
    assert not d.stop and "upper bound" in d.reason
    assert not cost_is_exact({"method": "sparsity_induction", "level": 0.5})
    assert not cost_is_exact({"method": "variational_dropout", "level": 0.5})
    assert not cost_is_exact({"method": "relevance", "options": {"criterion": "threshold"}})
    assert cost_is_exact({"method": "relevance", "options": {"criterion": "fraction"}})
    assert cost_is_exact({"method": "filter_norm", "level": 0.5})
    assert cost_is_exact({"method": "none"})


def test_too_few_completed_curves_of_its_kind_stop_nothing() -> None:
    hopeless = _running(0.10, 9000, 3000)
    assert not decide(RULE, hopeless, FRONT, DONE[:2]).stop
    # a pruned trial is judged by pruned curves only: none yet
    d = decide(RULE, _running(0.10, 9000, 3000, pruned=True), FRONT, DONE)
    assert not d.stop and "0 completed" in d.reason
    pruned_done = [Completed(_curve(0.6, 0.7, 0.8, prune=(0.7, 0.75)), True) for _ in range(3)]
    assert decide(
        RULE, Running(1.0, 0.10, 9000, 3000, epochs=3, pruned=True), FRONT, pruned_done
    ).stop


def test_equal_costs_and_accuracy_do_not_dominate() -> None:
    twin = [FrontPoint(7, 0.60, 3000, 800)]
    assert not decide(RULE, _running(0.40, 3000, 800), twin, DONE).stop  # reaches 0.60 too


def test_bad_rules_are_refused() -> None:
    for kw in ({"grace": 0}, {"eta": 1}, {"min_completed": 0}, {"quantile": 1.5}):
        with pytest.raises(ValueError):
            StopRule(**kw)


def test_the_default_margin_spares_a_trial_within_two_points_of_dominated() -> None:
    # 0.49 after one epoch reaches 0.69 at best: dominated by trial 2's 0.70 without a margin,
    # not with the default one (the front is ranked by int8, the curve is float)
    near = _running(0.49, 3000, 800)
    assert decide(RULE, near, FRONT, DONE).stop
    assert StopRule().margin == 0.02 and not decide(StopRule(), near, FRONT, DONE).stop
