"""A trial's learning curve (issue 22): a point per epoch of training and of a pruning method's
fine-tuning, scored on a fixed validation sample, without changing what the trial trains."""

from __future__ import annotations

import pytest
from test_trial import _spec

from sparsearch.datasets import load_dataset
from sparsearch.space.spec import PruningSpec
from sparsearch.worker.curve import CURVE_SAMPLE
from sparsearch.worker.train import train_epochs
from sparsearch.worker.trial import run_trial


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def test_a_point_per_epoch_rising_with_the_last_one_the_trials_accuracy(digits) -> None:
    result = run_trial(_spec(epochs=3), digits)
    curve = result.curve
    assert [p["epoch"] for p in curve] == [1.0, 2.0, 3.0]
    assert {p["phase"] for p in curve} == {"train"}
    assert [p["seconds"] for p in curve] == sorted(p["seconds"] for p in curve)
    assert 0 < curve[0]["seconds"] <= result.train_seconds
    assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)
    assert curve[-1]["accuracy"] > curve[0]["accuracy"]
    # digits' validation split (360 images) is under the sample size: the last point is the
    # trial's own validation accuracy
    assert len(digits.y_val) < CURVE_SAMPLE
    assert curve[-1]["accuracy"] == pytest.approx(result.accuracy, abs=0)


def test_a_fraction_of_an_epoch_is_a_point_of_its_own(digits) -> None:
    curve = run_trial(_spec(epochs=1.5), digits).curve
    assert [p["epoch"] for p in curve] == [1.0, 1.5]


def test_pruning_adds_its_fine_tuning_epochs_after_the_training_ones(digits) -> None:
    curve = run_trial(_spec(PruningSpec("filter_norm", 0.5), epochs=2), digits).curve
    train = [p for p in curve if p["phase"] == "train"]
    prune = [p for p in curve if p["phase"] == "prune"]
    assert [p["epoch"] for p in train] == [1.0, 2.0]
    assert prune and prune[0]["epoch"] > 2.0 and curve == train + prune


def test_the_curve_changes_no_weight(digits) -> None:
    """Scoring after each epoch draws no random number, moves no running statistic and leaves
    the model training: the same weights as a training without the hook."""
    import torch

    from sparsearch.space.builder import build_model
    from sparsearch.worker.train import evaluate
    from sparsearch.worker.trial import prepare_inputs

    spec = _spec(epochs=3)
    x_train, x_val, _ = prepare_inputs(spec, digits)
    weights = []
    for scored in (False, True):
        torch.manual_seed(0)
        model = build_model(spec.arch)
        hook = (lambda epochs, m=model: evaluate(m, x_val, digits.y_val)) if scored else None
        train_epochs(
            model, x_train, digits.y_train, epochs=3, lr=1e-2, batch_size=32, seed=0,
            after_epoch=hook,
        )  # fmt: skip
        weights.append(model.state_dict())
    assert weights[0].keys() == weights[1].keys()
    assert any("running_mean" in k for k in weights[0])  # BatchNorm: eval mode would matter
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_reporter_sees_each_point_as_it_is_made_and_can_stop_the_trial(digits) -> None:
    from sparsearch.worker.trial import TrialResult, TrialStopped

    seen: list[dict] = []

    def go_on(point: dict) -> bool:
        seen.append(point)
        return False

    result = run_trial(_spec(epochs=3), digits, report=go_on)
    assert isinstance(result, TrialResult) and seen == result.curve

    stopped = run_trial(_spec(epochs=3), digits, report=lambda p: p["epoch"] >= 2)
    assert isinstance(stopped, TrialStopped)
    assert [p["epoch"] for p in stopped.curve] == [1.0, 2.0] and stopped.epochs == 2.0
    same = [(p["epoch"], p["accuracy"]) for p in result.curve[:2]]
    assert [(p["epoch"], p["accuracy"]) for p in stopped.curve] == same  # the same training
    assert 0 < stopped.train_seconds < result.train_seconds + 5
    assert stopped.worker_pid > 0


def test_a_pruned_trial_can_be_stopped_while_it_fine_tunes(digits) -> None:
    from sparsearch.worker.trial import TrialStopped

    spec = _spec(PruningSpec("filter_norm", 0.5), epochs=2)
    stopped = run_trial(spec, digits, report=lambda p: p["phase"] == "prune")
    assert isinstance(stopped, TrialStopped)
    assert [p["phase"] for p in stopped.curve] == ["train", "train", "prune"]
