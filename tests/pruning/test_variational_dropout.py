"""Sparse variational dropout on real digits: the layer swap, the KL term, the log-alpha
threshold with ``level`` as a floor, and the one-shot schedule end to end."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from sparsearch.datasets import load_dataset
from sparsearch.errors import PruningError
from sparsearch.pruning import get_method, zero_fraction
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.magnitude import Magnitude
from sparsearch.pruning.schedule import Schedule
from sparsearch.pruning.variational_dropout import (
    K1,
    K2,
    K3,
    VariationalDropout,
    VDLayer,
    kl_approx,
    log_alpha_of,
    swap_in,
    swap_out,
)
from sparsearch.worker.train import evaluate, train_epochs, trainer

X8 = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(2))
THRESHOLD = 3.0


def digits_cnn(seed: int = 0) -> nn.Sequential:
    """A small CNN for 8x8 digits, with Sequentials nested two deep."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
        nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU()),
        ),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 4 * 4, 12), nn.ReLU(), nn.Linear(12, 10),
    )  # fmt: skip


def weight_names(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def make_context(digits, *, epochs: float = 2.0, seed: int = 0) -> PruneContext:
    return PruneContext(
        example_inputs=torch.from_numpy(digits.x_train[:1]),
        train=trainer(
            digits.x_train, digits.y_train, epochs=epochs, lr=3e-3, batch_size=32, seed=seed
        ),
        seed=seed,
        train_size=len(digits.x_train),
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def pretrained(digits) -> nn.Sequential:
    """Trained on digits (8 epochs): copy before use."""
    net = digits_cnn()
    train_epochs(net, digits.x_train, digits.y_train, epochs=8, lr=1e-2, batch_size=32, seed=0)
    net.eval()
    return net


@pytest.fixture(scope="module")
def induced(digits, pretrained) -> tuple[VariationalDropout, nn.Sequential]:
    """The pretrained net after ``induce`` (two epochs under sparse VD): copy the net."""
    net = copy.deepcopy(pretrained)
    method = VariationalDropout(threshold=THRESHOLD)
    method.induce(net, make_context(digits))
    return method, net


def test_swap_round_trip_on_nested_modules() -> None:
    net = digits_cnn().eval()
    keys = list(net.state_dict())
    originals = {n: net.get_submodule(n) for n in weight_names(net)}
    before = net(X8)
    swapped = swap_in(net, None, THRESHOLD, torch.Generator().manual_seed(0))
    assert set(swapped) == set(originals)
    for name, layer in originals.items():
        vd = net.get_submodule(name)
        assert isinstance(vd, VDLayer) and vd.weight is layer.weight and vd.bias is layer.bias
        assert torch.all(vd.log_sigma2 == -10.0)
    assert f"{weight_names(digits_cnn())[2]}.log_sigma2" in net.state_dict()
    # log sigma2 = -10: the eval forward barely differs from the plain layers
    assert torch.allclose(net(X8), before, atol=1e-3)
    swap_out(net, swapped)
    assert list(net.state_dict()) == keys
    assert all(net.get_submodule(n) is layer for n, layer in originals.items())
    assert torch.equal(net(X8), before)
    rebuilt = digits_cnn(seed=5)
    rebuilt.load_state_dict(net.state_dict(), strict=True)


def test_swap_in_picks_named_layers_and_rejects_unknown_ones() -> None:
    net = digits_cnn()
    name = weight_names(net)[1]
    swapped = swap_in(net, [name], THRESHOLD, torch.Generator())
    assert list(swapped) == [name] and isinstance(net.get_submodule(name), VDLayer)
    assert sum(isinstance(m, VDLayer) for m in net.modules()) == 1
    swap_out(net, swapped)
    with pytest.raises(PruningError, match="no Conv2d or Linear layer named nope"):
        swap_in(net, ["nope"], THRESHOLD, torch.Generator())


def test_induce_with_zero_epochs_leaves_the_model_as_it_was(digits) -> None:
    net = digits_cnn().eval()
    state = copy.deepcopy(net.state_dict())
    before = net(X8)
    method = VariationalDropout()
    method.induce(net, make_context(digits, epochs=0))
    assert not net.training
    assert list(net.state_dict()) == list(state)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in state.items())
    assert torch.equal(net(X8), before)
    assert list(method.log_alpha) == weight_names(net)
    for name in weight_names(net):
        w = net.get_submodule(name).weight.detach()
        expected = torch.clamp(-10.0 - torch.log(w * w + 1e-8), -10, 10)
        assert torch.allclose(method.log_alpha[name], expected)


@pytest.mark.parametrize("kind", ["conv", "linear"])
def test_vd_layer_forward_local_reparameterisation_and_eval_mask(kind: str) -> None:
    torch.manual_seed(1)
    if kind == "conv":
        layer: nn.Module = nn.Conv2d(
            4, 6, 3, stride=2, padding=2, dilation=2, groups=2, padding_mode="reflect"
        )
        x = torch.randn(3, 4, 9, 9)
    else:
        layer, x = nn.Linear(7, 5), torch.randn(3, 7)
    vd = VDLayer(layer, THRESHOLD, torch.Generator().manual_seed(5))
    with torch.no_grad():
        vd.log_sigma2.uniform_(-4.0, -1.0)
    vd.train()
    out = vd(x)
    variance = copy.deepcopy(layer)
    variance.weight = nn.Parameter(torch.exp(vd.log_sigma2.detach()))
    variance.bias = None
    noise = torch.randn(out.shape, generator=torch.Generator().manual_seed(5))
    expected = layer(x) + torch.sqrt(variance(x * x) + 1e-8) * noise
    assert torch.allclose(out, expected, atol=1e-5)

    vd.eval()
    with torch.no_grad():
        vd.log_sigma2.fill_(-40.0)  # log alpha = -10 everywhere: nothing dropped
        assert torch.allclose(vd(x), layer(x), atol=1e-6)
        vd.log_sigma2.view(-1)[::2] = 10.0  # log alpha >= 10 - log(w^2) > 3: dropped
        keep = (log_alpha_of(layer.weight, vd.log_sigma2) < THRESHOLD).float()
        assert 0 < keep.sum() < keep.numel()
        masked = copy.deepcopy(layer)
        masked.weight.mul_(keep)
        assert torch.allclose(vd(x), masked(x), atol=1e-6)


def test_kl_approximation_and_the_penalty_handed_to_the_trainer() -> None:
    for la in (-2.0, 0.0, 2.0):
        value = float(kl_approx(torch.tensor([la, la])))
        sigmoid = 1 / (1 + math.exp(-(K2 + K3 * la)))
        per_weight = K1 * sigmoid - 0.5 * math.log1p(math.exp(-la)) - K1
        assert value == pytest.approx(-2 * per_weight)
    grid = torch.linspace(-10, 10, 41)
    per_weight = torch.stack([kl_approx(v.view(1)) for v in grid])
    assert torch.all(per_weight[1:] < per_weight[:-1])  # higher log alpha, smaller KL

    net = digits_cnn()
    layers = len(weight_names(net))
    seen: dict[str, float] = {}

    def recording_trainer(model, *, epochs=None, penalty=None, after_step=None):
        vds = [m for m in model.modules() if isinstance(m, VDLayer)]
        assert len(vds) == layers
        got = penalty(model)
        expected = 0.5 * sum(float(kl_approx(m.log_alpha().detach())) for m in vds) / 1000
        seen["got"], seen["expected"] = float(got.detach()), expected
        got.backward()
        assert all(m.log_sigma2.grad is not None and m.log_sigma2.grad.abs().sum() > 0 for m in vds)
        return 0.0

    ctx = PruneContext(example_inputs=X8, train=recording_trainer, train_size=1000)
    VariationalDropout(kl_weight=0.5).induce(net, ctx)
    assert seen["got"] == pytest.approx(seen["expected"], rel=1e-5) and seen["got"] > 0


def test_prune_at_level_zero_zeroes_exactly_the_weights_above_the_threshold(induced) -> None:
    method, trained = induced
    net = copy.deepcopy(trained)
    report = method.prune(net, 0.0)
    above = total = 0
    for name in weight_names(net):
        module = net.get_submodule(name)
        drop = method.log_alpha[name] > THRESHOLD
        assert torch.equal(module.weight == 0, drop), name
        above += int(drop.sum())
        total += drop.numel()
    assert 0 < above < total
    assert report.zero_fraction == pytest.approx(above / total) == zero_fraction(net)
    assert report.method == "variational_dropout" and report.level == 0.0


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_level_is_a_floor_and_the_highest_log_alpha_go_first(induced, level: float) -> None:
    method, trained = induced
    net = copy.deepcopy(trained)
    names = weight_names(net)
    log_alpha = torch.cat([method.log_alpha[n].flatten() for n in names])
    total = log_alpha.numel()
    by_threshold = int((log_alpha > THRESHOLD).sum())
    report = method.prune(net, level)
    zeros = torch.cat([(net.get_submodule(n).weight == 0).flatten() for n in names])
    assert int(zeros.sum()) >= round(level * total) and report.zero_fraction >= level
    # the search's estimate of the non-zeros at ``level`` is an upper bound
    assert total - int(zeros.sum()) <= math.ceil((1.0 - level) * total - 1e-9)
    assert torch.all(zeros[log_alpha > THRESHOLD])  # the threshold's choice always goes
    if by_threshold >= round(level * total):
        assert int(zeros.sum()) == by_threshold
    else:
        assert int(zeros.sum()) == round(level * total)
        assert log_alpha[zeros].min() >= log_alpha[~zeros].max()
    if level == 0.9:
        assert by_threshold < round(level * total)  # the floor branch really ran


def test_without_induce_prune_ranks_by_magnitude() -> None:
    net, reference = digits_cnn(), digits_cnn()
    VariationalDropout().prune(net, 0.0)
    assert zero_fraction(net) == 0.0 and not any(k.endswith("_mask") for k in net.state_dict())
    VariationalDropout().prune(net, 0.6)
    Magnitude(scope="global").prune(reference, 0.6, X8)
    for name in weight_names(net):
        assert torch.equal(
            net.get_submodule(name).weight == 0, reference.get_submodule(name).weight == 0
        ), name
    assert zero_fraction(net) == pytest.approx(0.6, abs=1e-3)


def test_prune_rejects_log_alpha_of_another_shape(induced) -> None:
    method, _ = induced
    other = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3)))  # same name "0.0", other shape
    with pytest.raises(PruningError, match="shape"):
        method.prune(other, 0.5)


def test_one_shot_schedule_prunes_deterministically_and_keeps_accuracy(digits, pretrained) -> None:
    runs = []
    for perturb in (False, True):
        if perturb:
            torch.manual_seed(1234)  # the global RNG plays no part: the method seeds its own
        net = copy.deepcopy(pretrained)
        report = Schedule("one_shot").run(VariationalDropout(), net, 0.5, make_context(digits))
        assert not net.training
        runs.append((net, report))
    (net, report), (again, _) = runs
    state = net.state_dict()
    # masks folded: plain weight keys (prune.remove re-registers ``weight`` after ``bias``)
    assert set(state) == set(pretrained.state_dict())
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in state.items())
    assert report.zero_fraction >= 0.5 and zero_fraction(net) == report.zero_fraction
    rebuilt = digits_cnn(seed=7).eval()
    rebuilt.load_state_dict(state, strict=True)
    assert torch.equal(rebuilt(X8), net(X8))

    dense = copy.deepcopy(pretrained)  # the same extra training, without VD or pruning
    make_context(digits).train(dense)
    dense_acc = evaluate(dense, digits.x_test, digits.y_test)
    pruned_acc = evaluate(net, digits.x_test, digits.y_test)
    assert dense_acc > 0.9
    assert pruned_acc >= dense_acc - 0.03, (pruned_acc, dense_acc, report.zero_fraction)


@pytest.mark.parametrize(
    "knobs",
    [
        {"threshold": -0.5},
        {"threshold": 6.5},
        {"threshold": float("nan")},
        {"threshold": "high"},
        {"threshold": True},
        {"kl_weight": -1.0},
        {"kl_weight": 11.0},
    ],
)
def test_bad_knobs_are_pruning_errors(knobs) -> None:
    with pytest.raises(PruningError):
        VariationalDropout(**knobs)
    with pytest.raises(PruningError):
        get_method("variational_dropout", **knobs)


def test_registered_with_its_knobs_and_fine_tunes_only_when_the_level_forced_weights() -> None:
    method = get_method("variational_dropout", threshold=2.0, kl_weight=0.5)
    assert isinstance(method, VariationalDropout) and not method.structured
    assert (method.threshold, method.kl_weight) == (2.0, 0.5)
    assert method.fine_tune_after is False
    net = nn.Sequential(nn.Linear(4, 4))
    method.prune(net, 0.0)  # no log alpha, no floor: nothing forced
    assert method.fine_tune_after is False
    method.prune(net, 0.5)
    assert method.fine_tune_after is True


def test_missing_trainer_or_train_size_is_a_pruning_error(digits) -> None:
    net = digits_cnn()
    keys = list(net.state_dict())
    with pytest.raises(PruningError, match="needs the training data"):
        VariationalDropout().induce(net, PruneContext(example_inputs=X8))
    no_size = make_context(digits)
    no_size.train_size = 0
    with pytest.raises(PruningError, match="number of training images"):
        VariationalDropout().induce(net, no_size)
    assert list(net.state_dict()) == keys


def test_a_failing_training_puts_the_original_layers_back() -> None:
    net = digits_cnn().train()
    originals = {n: net.get_submodule(n) for n in weight_names(net)}

    def broken(model, **_):
        model.eval()
        raise RuntimeError("diverged")

    method = VariationalDropout()
    with pytest.raises(RuntimeError, match="diverged"):
        method.induce(net, PruneContext(example_inputs=X8, train=broken, train_size=10))
    assert all(net.get_submodule(n) is m for n, m in originals.items())
    assert net.training and method.log_alpha == {}
    assert not any(k.endswith("log_sigma2") for k in net.state_dict())
