"""sparsity_induction (seed 000): the row/column group-lasso proximal step, the sparsity level,
selection by threshold with ``level`` as a floor, and the layer-by-layer schedule on digits."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from sparsearch.datasets import load_dataset
from sparsearch.errors import PruningError
from sparsearch.pruning import count_params, get_method
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.schedule import Schedule
from sparsearch.pruning.sparsity_induction import (
    SparsityInduction,
    group_shrink,
    normalized_layers,
    sparsity_levels,
)
from sparsearch.pruning.structured import target_layers
from sparsearch.space.pruned import pruned_width
from sparsearch.worker.train import evaluate, train_epochs, trainer

LR = 1e-2
BATCH = 32
X1 = torch.zeros(1, 1, 8, 8)


def _net() -> nn.Sequential:
    """conv(1->8)+BN+ReLU, conv(8->16)+BN+ReLU, maxpool, Flatten, Linear(256->16)+ReLU,
    Linear(16->10). Prunable: 0, 3 (both BatchNorm-normalised) and 8 (not)."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 16), nn.ReLU(), nn.Linear(16, 10),
    )  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def trained(digits) -> nn.Sequential:
    """The dense model, trained to convergence-ish (4 epochs); tests work on copies."""
    torch.manual_seed(0)
    net = _net()
    train_epochs(net, digits.x_train, digits.y_train, epochs=4, lr=LR, batch_size=BATCH, seed=0)
    net.eval()
    return net


def _context(digits, *, epochs: float, lr: float = LR, seed: int = 0) -> PruneContext:
    return PruneContext(
        example_inputs=torch.from_numpy(digits.x_train[:1]),
        train=trainer(
            digits.x_train, digits.y_train, epochs=epochs, lr=lr, batch_size=BATCH, seed=seed
        ),
        seed=seed,
        finetune_epochs=epochs,
    )


def _zero_groups(layer: nn.Module) -> tuple[int, int]:
    """All-zero (row, column) groups of a conv layer, counted one filter matrix at a time."""
    rows = cols = 0
    for f in layer.weight.detach():  # [Ci, kh, kw]
        m = f.flatten(1)  # [Ci, kh*kw]
        rows += sum(bool((m[i] == 0).all()) for i in range(m.shape[0]))
        cols += sum(bool((m[:, k] == 0).all()) for k in range(m.shape[1]))
    return rows, cols


def _level_by_hand(f: torch.Tensor) -> float:
    m = f.reshape(f.shape[0], -1)
    rows = [bool((m[i] == 0).all()) for i in range(m.shape[0])]
    cols = [bool((m[:, k] == 0).all()) for k in range(m.shape[1])]
    hit = sum(rows[i] or cols[k] for i in range(m.shape[0]) for k in range(m.shape[1]))
    return hit / m.numel()


# --- the proximal step and the sparsity level (no training) ----------------------------------


def test_group_shrink_is_the_row_then_column_group_lasso_prox() -> None:
    # one conv filter as a [Ci=2, K=2] matrix: row 0 = (3, 4) (norm 5), row 1 = (0.3, 0.4)
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4]]).view(1, 2, 1, 2)
    tau = 1 / math.sqrt(2)  # row and column thresholds: tau * sqrt(2) = 1
    group_shrink(w, tau)
    # rows: (3,4) * (1 - 1/5) = (2.4, 3.2); (0.3,0.4) has norm 0.5 <= 1 -> 0
    # columns: (2.4, 0) -> (1.4, 0); (3.2, 0) -> (2.2, 0)
    torch.testing.assert_close(w.view(2, 2), torch.tensor([[1.4, 2.2], [0.0, 0.0]]))

    # keep_norm: the same direction, rescaled to the norm the filter had
    w = torch.tensor([[3.0, 4.0], [0.3, 0.4]]).view(1, 2, 1, 2)
    group_shrink(w, tau, keep_norm=True)
    expected = (
        torch.tensor([[1.4, 2.2], [0.0, 0.0]]) * math.sqrt(25.25) / math.sqrt(1.4**2 + 2.2**2)
    )
    torch.testing.assert_close(w.view(2, 2), expected)

    # a Linear filter is [in, 1]: single weights soft-thresholded, then the whole row
    w = torch.tensor([[0.5, -2.0, 0.1], [0.0, 0.0, 0.0]])
    group_shrink(w, 0.2)
    row = torch.tensor([0.3, -1.8, 0.0])
    row = row * (1 - 0.2 * math.sqrt(3) / float(row.norm()))
    torch.testing.assert_close(w, torch.stack([row, torch.zeros(3)]))  # zero rows stay 0, no NaN

    w = torch.tensor([[0.5, -2.0, 0.1]])
    group_shrink(w, 0.0)
    assert torch.equal(w, torch.tensor([[0.5, -2.0, 0.1]]))


def test_sparsity_level_is_the_share_of_weights_in_all_zero_rows_or_columns() -> None:
    w = torch.ones(3, 3, 2, 2)  # filters as [Ci=3, K=4] matrices
    w[0, 0] = 0  # filter 0: input channel 0 (a row) and kernel position 1 (a column) zero
    w[0, :, 0, 1] = 0
    w[0, 2, 1, 1] = 0  # a scattered zero in no zero group: not counted
    w[1] = 0  # filter 1: all zero
    # filter 0: 4 + 3 - 1 = 6 of 12 weights; filter 2: none
    torch.testing.assert_close(sparsity_levels(w), torch.tensor([0.5, 1.0, 0.0]))
    for f, level in zip(w, sparsity_levels(w), strict=True):
        assert _level_by_hand(f) == pytest.approx(float(level))
    lin = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(sparsity_levels(lin), torch.tensor([0.5, 1.0]))


def test_scores_rank_by_sparsity_then_norm_and_threshold_forces_out() -> None:
    conv = nn.Conv2d(2, 4, 2, bias=False)  # filters as [Ci=2, K=4] matrices
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.weight[0, 0] = 0  # sparsity 0.5 (one of two rows)
        conv.weight[1, 0] = 0  # sparsity 0.625 (a row and a column)
        conv.weight[1, :, 0, 0] = 0
        conv.weight[2] *= 0.1  # dense, small norm
        conv.weight[3] *= 3.0  # dense, large norm
    ctx = PruneContext(example_inputs=torch.zeros(1, 2, 3, 3))
    net = nn.Sequential(conv, nn.Flatten(), nn.Linear(16, 2))
    scores = SparsityInduction().scores(net, "0", conv, ctx)
    assert torch.argsort(scores).tolist() == [1, 0, 2, 3]
    assert float(scores[3] - scores[2]) < 2e-3  # the norm only breaks ties
    assert SparsityInduction(threshold=0.5).forced(net, "0", conv, scores, ctx) == [1]
    assert SparsityInduction(threshold=0.45).forced(net, "0", conv, scores, ctx) == [0, 1]


def test_normalized_layers_are_those_feeding_a_batchnorm() -> None:
    net = _net()
    net.train()
    mean = net[1].running_mean.clone()
    assert normalized_layers(net, torch.randn(2, 1, 8, 8)) == {net[0], net[3]}
    assert net.training and torch.equal(net[1].running_mean, mean)


def test_induce_shrinks_only_its_layers_for_its_share_of_the_budget() -> None:
    calls: list[float | None] = []

    def fake_train(model, *, epochs=None, penalty=None, after_step=None):  # type: ignore[no-untyped-def]
        calls.append(epochs)
        model.train()
        after_step(0.01)  # one large step
        return 0.0

    net = _net()
    net.eval()
    before = {n: m.weight.detach().clone() for n, m in target_layers(net)}
    ctx = PruneContext(example_inputs=X1, train=fake_train, finetune_epochs=3.0)
    method = SparsityInduction(strength=1.0)
    method.induce(net, ctx, layers=["3"])
    assert calls == [1.0] and not net.training  # 3 epochs shared by the 3 prunable layers
    assert torch.equal(net[0].weight, before["0"]) and torch.equal(net[8].weight, before["8"])
    assert not torch.equal(net[3].weight, before["3"])
    # BatchNorm follows conv 3: each filter keeps its norm
    torch.testing.assert_close(
        net[3].weight.flatten(1).norm(dim=1), before["3"].flatten(1).norm(dim=1)
    )
    method.induce(net, ctx, layers=["8"])  # no BatchNorm: the Linear layer shrinks
    assert float(net[8].weight.detach().norm()) < float(before["8"].norm())
    method.induce(net, ctx)  # every layer: the trainer's default budget
    assert calls[-1] is None
    with pytest.raises(PruningError, match="'10'"):
        method.induce(net, ctx, layers=["10"])  # the classifier is not pruned


# --- on digits --------------------------------------------------------------------------------


def test_induction_on_digits_makes_whole_groups_exactly_zero(digits, trained) -> None:
    plain, induced = copy.deepcopy(trained), copy.deepcopy(trained)
    _context(digits, epochs=1).train(plain)  # the same training without the proximal step
    assert _zero_groups(plain[3]) == (0, 0)
    SparsityInduction(strength=1.0).induce(induced, _context(digits, epochs=1), layers=["0", "3"])
    assert not induced.training  # restored
    rows, cols = _zero_groups(induced[3])
    assert rows > 0 and cols > 0
    levels = sparsity_levels(induced[3].weight)
    for f, level in zip(induced[3].weight.detach(), levels, strict=True):
        assert _level_by_hand(f) == pytest.approx(float(level))
    assert float(levels.max()) > 0.5
    # BatchNorm'd filters keep their norm, so the layer does not die as a whole
    assert all(float(f.norm()) > 0.1 for f in induced[3].weight.detach())
    assert evaluate(induced, digits.x_val, digits.y_val) > 0.85


def _silence(net: nn.Sequential, conv: int, bn: int, idxs: list[int]) -> None:
    """Zero filters ``idxs`` of ``net[conv]`` and give them a BatchNorm shift so negative that
    their output after BN and ReLU is exactly 0 (an all-zero conv filter alone is not enough:
    its output is the constant BN(bias), which the next layer sees)."""
    with torch.no_grad():
        net[conv].weight[idxs] = 0
        net[bn].bias[idxs] = -100.0


def test_threshold_removes_sparse_filters_and_zero_filters_go_without_changing_outputs(
    digits, trained
) -> None:
    x = torch.from_numpy(digits.x_val[:64])
    net = copy.deepcopy(trained)
    _silence(net, 3, 4, [1, 5])
    net.eval()
    silent = net[:6](x)[:, [1, 5]]
    assert torch.equal(silent, torch.zeros_like(silent))  # what makes removal exact
    expected = net(x)
    report = SparsityInduction().prune(net, 0.01, context=PruneContext(example_inputs=x[:1]))
    assert net[3].out_channels == 14 and report.channels_after["3"] == 14
    assert (net[0].out_channels, net[8].out_features) == (8, 16)  # nothing else above 0.5
    assert report.params_after < report.params_before
    torch.testing.assert_close(net(x), expected, rtol=0, atol=1e-5)

    net = copy.deepcopy(trained)
    with torch.no_grad():
        net[3].weight[[1, 5]] = 0  # sparsity 1
        net[3].weight[3, :5] = 0  # 5 of 8 input-channel rows: 0.625 > 0.5
        net[3].weight[7, :3] = 0  # 3 of 8: 0.375, kept
    edited = net[3].weight.detach().clone()
    ctx = PruneContext(example_inputs=x[:1])
    # level 0: the threshold alone decides (the level is only a floor)
    SparsityInduction(threshold=0.5).prune(net, 0.0, context=ctx)
    kept = [i for i in range(16) if i not in (1, 3, 5)]
    assert torch.equal(net[3].weight, edited[kept])


def test_level_is_a_floor(trained) -> None:
    net = copy.deepcopy(trained)
    with torch.no_grad():
        net[3].weight[:10, :6] = 0  # 10 of 16 filters at sparsity 0.75
    SparsityInduction(threshold=0.5).prune(net, 0.25, context=PruneContext(example_inputs=X1))
    assert net[3].out_channels == 6  # all 10 go, more than the level's 4
    assert net[0].out_channels == pruned_width(8, 0.25)
    assert net[8].out_features == pruned_width(16, 0.25)

    net = copy.deepcopy(trained)
    SparsityInduction().prune(net, 0.5, context=PruneContext(example_inputs=X1))
    for name, layer in target_layers(trained):
        width = layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features
        now = dict(target_layers(net))[name]
        now_width = now.out_channels if isinstance(now, nn.Conv2d) else now.out_features
        assert now_width <= width // 2


def test_layerwise_on_digits_keeps_accuracy_at_half_the_parameters(digits, trained) -> None:
    """The schedule spends one fine-tuning budget on inducing (shared by the layers) and one on
    fine-tuning; the dense reference is trained as long, so the comparison is fair."""
    dense = copy.deepcopy(trained)
    _context(digits, epochs=4).train(dense)
    dense_acc = evaluate(dense, digits.x_test, digits.y_test)
    net = copy.deepcopy(trained)
    report = Schedule("layerwise").run(
        SparsityInduction(strength=0.5), net, 0.3, _context(digits, epochs=2)
    )
    assert report.params_after == count_params(net) <= 0.5 * report.params_before
    assert all(report.channels_after[n] < report.channels_before[n] for n in ("0", "3", "8"))
    acc = evaluate(net, digits.x_test, digits.y_test)
    assert acc >= dense_acc - 0.03, (acc, dense_acc)


def test_same_seed_gives_the_same_pruned_model(digits, trained) -> None:
    def run(seed: int) -> dict[str, torch.Tensor]:
        net = copy.deepcopy(trained)
        ctx = _context(digits, epochs=1, seed=seed)
        Schedule("layerwise").run(SparsityInduction(strength=0.5), net, 0.3, ctx)
        return net.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(a[k].shape != c[k].shape or not torch.equal(a[k], c[k]) for k in a)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"threshold": 0.0},
        {"threshold": 1.0},
        {"threshold": "high"},
        {"strength": 0.0},
        {"strength": 2.0},
        {"strength": float("nan")},
    ],
)
def test_bad_knobs_are_pruning_errors(options) -> None:
    with pytest.raises(PruningError, match="sparsity_induction"):
        SparsityInduction(**options)
    with pytest.raises(PruningError):
        get_method("sparsity_induction", **options)


def test_defaults_and_registry() -> None:
    method = get_method("sparsity_induction", threshold=0.3)
    assert isinstance(method, SparsityInduction) and method.structured
    assert (method.threshold, method.strength) == (0.3, 0.3)


def test_induce_without_a_trainer_says_it_needs_training() -> None:
    with pytest.raises(PruningError, match="needs the training data"):
        SparsityInduction().induce(_net(), PruneContext(example_inputs=X1))
    with pytest.raises(PruningError, match="needs the training data"):
        Schedule("layerwise").run(SparsityInduction(), _net(), 0.3, PruneContext(X1))
