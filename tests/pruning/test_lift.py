"""``pruning.lift``: TorchScript and torch.export files become modules Torch-Pruning can prune."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch_pruning as tp
from torch import nn

from sparsearch.errors import PruningError
from sparsearch.pruning import lift
from sparsearch.pruning.lift import lift_exported, load_model_file

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's own pytree deprecations

X = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
FORMATS = ["export", "export-decomposed", "script", "trace"]


class Residual(nn.Module):
    """stem conv -> bn -> relu, then conv -> bn -> relu -> conv -> bn, + skip, relu, pool, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.c1 = nn.Conv2d(6, 4, 3, padding=1)
        self.b1 = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.b2(self.c2(self.relu(self.b1(self.c1(x)))))
        y = self.relu(x + y)
        return self.fc(y.mean((2, 3)))


class HiddenHead(nn.Module):
    """conv, bn, relu6, avgpool, ``view(N, C * H * W)``, Linear(-> 12), relu, Linear(-> 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 5, 3, padding=1)
        self.bn = nn.BatchNorm2d(5)
        self.pool = nn.AvgPool2d(2)
        self.hidden = nn.Linear(5 * 4 * 4, 12)
        self.out = nn.Linear(12, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.nn.functional.relu6(self.bn(self.conv(x))))
        x = x.view(x.size(0), x.size(1) * x.size(2) * x.size(3))  # traced: size arithmetic
        return self.out(torch.relu(self.hidden(x)))


def plain() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    )  # fmt: skip


MODELS: dict[str, Callable[[], nn.Module]] = {
    "plain": plain,
    "residual": Residual,
    "hidden_head": HiddenHead,
}


def built(name: str, seed: int = 0) -> nn.Module:
    """Model ``name`` in eval mode with non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    model = MODELS[name]()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def save(model: nn.Module, fmt: str, path: Path) -> Path:
    """``model`` saved as ``fmt``; exports and traces see a batch of 2, not X's 4."""
    x = X[:2]
    if fmt.startswith("export"):
        ep = torch.export.export(model, (x,))
        torch.export.save(ep.run_decompositions() if fmt == "export-decomposed" else ep, path)
    else:
        script = torch.jit.script(model) if fmt == "script" else torch.jit.trace(model, (x,))
        torch.jit.save(script, path)
    return path


Loaded = Callable[[str, str], tuple[nn.Module, nn.Module]]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    """``(original, lifted)`` for a model name and format; each file is saved and lifted once
    per module (exporting and converting dominate the run time), every test gets copies."""
    folder = tmp_path_factory.mktemp("models")
    cache: dict[tuple[str, str], tuple[nn.Module, nn.Module]] = {}

    def get(name: str, fmt: str) -> tuple[nn.Module, nn.Module]:
        if (name, fmt) not in cache:
            model = built(name)
            path = folder / f"{name}-{fmt}.{'pt2' if fmt.startswith('export') else 'pt'}"
            cache[name, fmt] = model, load_model_file(save(model, fmt, path), X)
        return copy.deepcopy(cache[name, fmt])

    return get


def prune(model: nn.Module, layer: str, idxs: list[int]) -> None:
    """Remove output channels ``idxs`` of ``layer`` and everything Torch-Pruning ties to them."""
    target = model.get_submodule(layer)
    conv = isinstance(target, nn.Conv2d)
    how = tp.prune_conv_out_channels if conv else tp.prune_linear_out_channels
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=X)
    dg.get_pruning_group(target, how, idxs=idxs).prune()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list(MODELS))
def test_lifted_model_matches_the_file_with_real_layers(
    name: str, fmt: str, loaded: Loaded
) -> None:
    model, lifted = loaded(name, fmt)
    assert not lifted.training
    with torch.no_grad():
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)
        # a batch size other than the file's and the example's still runs
        assert lifted(X[:3]).shape == (3, 10)

    def kinds(m: nn.Module) -> list[str]:
        return [type(s).__name__ for s in m.modules() if isinstance(s, nn.Conv2d | nn.Linear)]

    assert kinds(lifted) == kinds(model)
    assert not any(isinstance(m, torch.jit.ScriptModule) for m in lifted.modules())


@pytest.mark.parametrize("fmt", FORMATS)
def test_modules_keep_the_original_names(fmt: str, loaded: Loaded) -> None:
    model, lifted = loaded("residual", fmt)
    assert set(lifted.state_dict()) == set(model.state_dict())
    assert isinstance(lifted.get_submodule("stem.0"), nn.Conv2d)
    assert isinstance(lifted.get_submodule("b2"), nn.BatchNorm2d)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pruning_a_middle_conv_moves_its_batch_norm_and_the_next_conv(
    fmt: str, loaded: Loaded
) -> None:
    model, lifted = loaded("plain", fmt)
    for m in (model, lifted):
        prune(m, "0", [1, 4])
    assert lifted.get_submodule("0").out_channels == 4
    assert lifted.get_submodule("1").num_features == 4
    assert lifted.get_submodule("4").in_channels == 4
    with torch.no_grad():  # the same network as the original pruned the same way
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pruning_through_a_residual_add_prunes_its_partner(fmt: str, loaded: Loaded) -> None:
    model, lifted = loaded("residual", fmt)
    for m in (model, lifted):
        prune(m, "c2", [0, 3])
    # c2's output is added to the stem's: the stem conv loses the same channels
    assert lifted.get_submodule("c2").out_channels == 4
    assert lifted.get_submodule("stem.0").out_channels == 4
    assert lifted.get_submodule("stem.1").num_features == 4
    assert lifted.get_submodule("c1").in_channels == 4
    assert lifted.get_submodule("fc").in_features == 4
    with torch.no_grad():
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["export", "script"])
def test_pruning_before_a_flatten_head_and_a_hidden_linear(fmt: str, loaded: Loaded) -> None:
    model, lifted = loaded("hidden_head", fmt)
    for m in (model, lifted):
        prune(m, "conv", [2, 3])
        prune(m, "hidden", [0, 5, 7])
    assert lifted.get_submodule("bn").num_features == 3
    assert lifted.get_submodule("hidden").in_features == 3 * 4 * 4
    assert lifted.get_submodule("out").in_features == 9
    with torch.no_grad():
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)


def test_format_is_detected_by_content_not_suffix(tmp_path) -> None:
    model = built("plain")
    for fmt, wrong_suffix in (("export", "model.pt"), ("script", "model.pt2")):
        lifted = load_model_file(save(model, fmt, tmp_path / wrong_suffix), X)
        with torch.no_grad():
            torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)


def test_a_training_mode_export_becomes_an_eval_model_with_its_statistics(tmp_path) -> None:
    model = built("plain")
    path = tmp_path / "train.pt2"
    torch.export.save(torch.export.export(copy.deepcopy(model).train(), (X,)), path)
    lifted = load_model_file(path, X)  # verified against the file in training mode
    assert not lifted.training
    with torch.no_grad():
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)


def test_missing_file(tmp_path) -> None:
    with pytest.raises(PruningError, match="not found"):
        load_model_file(tmp_path / "nope.pt2", X)


@pytest.mark.parametrize("content", [b"\x00garbage" * 20, None])
def test_a_file_of_neither_format(content: bytes | None, tmp_path) -> None:
    path = tmp_path / "model.pt"
    if content is None:
        torch.save(built("plain"), path)  # a pickle, not TorchScript
    else:
        path.write_bytes(content)
    with pytest.raises(PruningError, match="not a TorchScript or torch.export file") as info:
        load_model_file(path, X)
    assert info.value.hint and "torch.export.save" in info.value.hint


class Gated(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.sigmoid(self.conv(x)).mean((2, 3)))


@pytest.mark.parametrize("fmt", ["export", "script"])
def test_an_unsupported_op_is_named(fmt: str, tmp_path) -> None:
    with pytest.raises(PruningError, match=r"aten\.sigmoid.* at node 'sigmoid'") as info:
        load_model_file(save(Gated().eval(), fmt, tmp_path / "gated.pt2"), X)
    assert "plain CNNs" in (info.value.hint or "")


@pytest.mark.parametrize("fmt", ["export", "script"])
def test_wrong_input_shape_names_the_shape(fmt: str, tmp_path) -> None:
    path = save(built("plain"), fmt, tmp_path / "plain.pt2")
    with pytest.raises(PruningError, match=r"shape \(4, 3, 8, 8\)") as info:
        load_model_file(path, torch.randn(4, 3, 8, 8))
    assert "(N, C, H, W)" in (info.value.hint or "")


def test_outputs_that_differ_after_lifting_are_refused(tmp_path, monkeypatch) -> None:
    path = save(built("plain"), "export", tmp_path / "plain.pt2")

    def wrong_relu(lifter, node, args):  # a lifting bug: ReLU rebuilt as ReLU6
        return lifter.module(node, nn.ReLU6(), (lifter._tensor(args["self"], "input", node),))

    monkeypatch.setitem(lift._HANDLERS, torch.ops.aten.relu.default, wrong_relu)
    with pytest.raises(PruningError, match="outputs differ"):
        load_model_file(path, X * 100)


def test_lift_exported_keeps_residual_adds_as_functions() -> None:
    ep = torch.export.export(built("residual"), (X,))
    adds = [
        n
        for n in lift_exported(ep).graph.nodes
        if n.op == "call_function" and "add" in str(n.target)
    ]
    assert len(adds) == 1


class Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.stem = nn.Conv2d(1, 3, 1)
        self.fc = nn.Linear(3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.fc(self.conv(torch.relu(self.conv(x))).mean((2, 3)))


def test_a_layer_applied_twice_stays_one_module() -> None:
    model = Twice().eval()
    ep = torch.export.export(model, (X,))
    lifted = lift_exported(ep)
    calls = [n.target for n in lifted.graph.nodes if n.op == "call_module"]
    assert calls.count("conv") == 2
    assert [name for name, m in lifted.named_modules() if isinstance(m, nn.Conv2d)] == [
        "stem",
        "conv",
    ]
    with torch.no_grad():
        torch.testing.assert_close(lifted(X), model(X), atol=1e-5, rtol=0)
