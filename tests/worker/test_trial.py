"""run_trial on real digits: deterministic, really pruned, reloadable from its effective spec."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from sparsearch.datasets import load_dataset
from sparsearch.errors import DatasetError
from sparsearch.pruning import METHODS
from sparsearch.space.estimate import estimate
from sparsearch.space.spec import ArchSpec, BlockSpec, PruningSpec, TrainSpec, TrialSpec
from sparsearch.vocabulary import PRUNING_METHODS
from sparsearch.worker.export import load_model
from sparsearch.worker.train import evaluate
from sparsearch.worker.trial import prepare_inputs, resize_inputs, run_trial

ARCH = ArchSpec(
    input_shape=(1, 8, 8),
    num_classes=10,
    blocks=(BlockSpec("conv", 3, 12, "none"), BlockSpec("dsconv", 3, 16, "stride")),
    head_pool="flatten",
    head_units=16,
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def _spec(pruning=PruningSpec(), **train):
    """A trial of ARCH without the int8 deployment: these tests check training, pruning and
    reloading, and the export (~4 s a trial, most of a trial's time) has tests of its own
    (tests/worker/test_int8_export.py, tests/test_deploy.py, the searches end to end)."""
    args = dict(lr=1e-2, epochs=3, finetune_epochs=1, batch_size=32, seed=0)
    args.update(train)
    return TrialSpec(arch=ARCH, pruning=pruning, train=TrainSpec(**args), deploy=False)


def test_same_spec_and_seed_give_identical_weights_and_metrics(digits):
    a, b = run_trial(_spec(), digits), run_trial(_spec(), digits)
    assert a.artifacts["state_dict"] == b.artifacts["state_dict"]
    assert (a.accuracy, a.test_accuracy) == (b.accuracy, b.test_accuracy)
    c = run_trial(_spec(seed=1), digits)
    assert c.artifacts["state_dict"] != a.artifacts["state_dict"]


def test_trained_model_learns_digits(digits):
    result = run_trial(_spec(epochs=6), digits)
    assert result.accuracy >= 0.9
    assert 0.0 < result.test_accuracy <= 1.0


def test_filter_norm_trial_is_smaller_and_reloads_to_the_same_accuracy(digits):
    dense = run_trial(_spec(), digits)
    pruned = run_trial(_spec(PruningSpec("filter_norm", 0.5)), digits)
    assert pruned.param_count < dense.param_count
    channels = [b["channels"] for b in pruned.effective_spec["arch"]["blocks"]]
    assert channels == [6, 8]
    model = load_model(pruned.effective_spec, pruned.artifacts["state_dict"])
    assert sum(p.numel() for p in model.parameters()) == pruned.param_count
    _, x_val, _ = prepare_inputs(_spec(), digits)
    assert evaluate(model, x_val, digits.y_val) == pytest.approx(pruned.accuracy, abs=0)


def test_magnitude_trial_keeps_shapes_and_zeroes_weights(digits):
    result = run_trial(_spec(PruningSpec("magnitude", 0.6)), digits)
    assert result.zero_fraction == pytest.approx(0.6, abs=0.02)
    weights = torch.load(io.BytesIO(result.artifacts["state_dict"]), weights_only=True)
    assert not any(k.endswith("_orig") or k.endswith("_mask") for k in weights)
    conv = weights["features.0.0.weight"]
    assert (conv == 0).float().mean().item() == pytest.approx(0.6, abs=0.05)


def test_input_scale_trains_at_the_scaled_resolution(digits):
    arch = ArchSpec(
        input_shape=(1, 8, 8),
        num_classes=10,
        input_scale=0.5,
        blocks=(BlockSpec("conv", 3, 8, "none"),),
    )
    spec = TrialSpec(arch=arch, train=TrainSpec(lr=1e-2, epochs=1, batch_size=32), deploy=False)
    result = run_trial(spec, digits)
    proto = onnx.load_from_string(result.artifacts["onnx"])
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 4, 4]


# --- resize ----------------------------------------------------------------------------------


def test_resize_inputs_area_average() -> None:
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    out = resize_inputs(x, (2, 2))
    assert out.shape == (2, 3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0, 0], x[0, 0, :2, :2].mean())
    assert resize_inputs(x, (4, 4)) is x
    assert resize_inputs(np.zeros((5, 1, 28, 28), np.float32), (21, 21)).shape == (5, 1, 21, 21)


@pytest.mark.parametrize(
    "x, hw",
    [(np.zeros((2, 4, 4), np.float32), (2, 2)), (np.zeros((2, 1, 4, 4), np.float32), (0, 2))],
)
def test_resize_inputs_rejects_bad_input(x: np.ndarray, hw) -> None:
    with pytest.raises(DatasetError):
        resize_inputs(x, hw)


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_as_a_trial_within_its_estimate(method, digits):
    """A trial of each method trains, prunes through its schedule and reloads from its
    effective spec; its cost is the estimate's (exact methods) or at most it (the others)."""
    pruning = PruningSpec(method, 0.4)
    result = run_trial(replace(_spec(pruning), export_onnx=False), digits)
    model = load_model(result.effective_spec, result.artifacts["state_dict"])
    assert sum(p.numel() for p in model.parameters()) == result.param_count
    eff = ArchSpec.from_dict(result.effective_spec["arch"])
    planned = estimate(ARCH, pruning)
    info = PRUNING_METHODS[method]
    if info.structured:
        trained = estimate(eff)
        if info.exact_cost:
            assert trained.to_dict() == planned.to_dict()
        assert trained.flash_bytes <= planned.flash_bytes and trained.ram_bytes <= planned.ram_bytes
        assert (
            result.param_count < run_trial(replace(_spec(), export_onnx=False), digits).param_count
        )
    else:
        assert eff == ARCH and result.zero_fraction >= 0.4 - 1e-3
    assert result.accuracy > 0.5
