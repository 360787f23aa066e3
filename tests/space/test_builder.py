"""ArchSpec -> torch model: shapes, validation, parameter counts, pruned state_dicts."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sparsearch.errors import SpaceError  # noqa: E402
from sparsearch.space import (  # noqa: E402
    ArchSpec,
    BlockSpec,
    PruningSpec,
    build_model,
    effective_arch,
    layer_shapes,
    pruned_width,
)

B = BlockSpec

ARCHS = [
    ArchSpec((1, 8, 8), 10, (B("conv", 3, 4),)),
    ArchSpec(
        (1, 8, 8),
        10,
        (B("conv", 3, 8, "pool"), B("dsconv", 3, 16, "stride")),
        head_pool="flatten",
        head_units=12,
    ),
    ArchSpec(
        (1, 8, 8), 10, (B("dsconv", 5, 8, "stride"), B("conv", 3, 8, "pool")), input_scale=0.75
    ),
    ArchSpec((1, 8, 8), 10, (B("conv", 3, 4, "pool"),), input_scale=0.5, head_pool="flatten"),
    ArchSpec(
        (1, 28, 28), 10, (B("conv", 3, 8, "pool"), B("conv", 3, 16, "pool")), head_pool="flatten"
    ),
    ArchSpec(
        (1, 28, 28),
        5,
        (B("conv", 7, 6, "stride"), B("dsconv", 3, 12, "stride"), B("conv", 5, 16, "pool")),
        input_scale=0.75,
        head_units=8,
    ),
    ArchSpec(
        (3, 28, 28),
        2,
        (B("dsconv", 3, 4, "pool"), B("dsconv", 3, 4, "stride")),
        input_scale=0.5,
        head_pool="flatten",
    ),
]


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shape_and_layer_shapes_match_torch(arch: ArchSpec) -> None:
    model = build_model(arch).eval()
    seen: list[tuple[int, ...]] = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.MaxPool2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:])))
    with torch.no_grad():
        y = model(torch.zeros(2, *arch.model_input_shape))
    assert tuple(y.shape) == (2, arch.num_classes)
    walk = [
        layer.out_shape
        for layer in layer_shapes(arch)
        if layer.kind in ("conv", "dwconv", "maxpool")
    ]
    assert seen == walk


def test_input_scale_sets_the_model_input() -> None:
    arch = ArchSpec((1, 28, 28), 10, (B("conv", 3, 4, "stride"),), input_scale=0.75)
    assert arch.model_input_shape == (1, 21, 21)
    # 21 is odd: the stride-2 conv gives ceil(21 / 2) = 11
    assert layer_shapes(arch)[0].out_shape == (4, 11, 11)
    model = build_model(arch)
    assert model(torch.zeros(1, 1, 21, 21)).shape == (1, 10)


def test_pooling_a_1x1_map_is_a_space_error() -> None:
    # 4x4 -> pool 2x2 -> pool 1x1 -> pool would be 0x0
    arch = ArchSpec((1, 8, 8), 10, (B("conv", 3, 4, "pool"),) * 3, input_scale=0.5)
    with pytest.raises(SpaceError) as info:
        build_model(arch)
    assert "block 2" in info.value.message and "1x1" in info.value.message
    assert "downsampling" in (info.value.hint or "")


@pytest.mark.parametrize(
    "blocks",
    [(), (B("conv", 3, 0),), (B("dsconv", 4, 8),), (B("conv", -1, 8),)],
)
def test_nonsense_specs_are_space_errors(blocks: tuple[BlockSpec, ...]) -> None:
    with pytest.raises(SpaceError):
        build_model(ArchSpec((1, 8, 8), 10, blocks))


@pytest.mark.parametrize("arch", ARCHS)
def test_weight_count_matches_the_estimator(arch: ArchSpec) -> None:
    model = build_model(arch)
    weights = sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)
    )
    assert weights == sum(layer.weights for layer in layer_shapes(arch))
    assert all(m.bias is None for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_module_names_are_stable() -> None:
    arch = ArchSpec((1, 8, 8), 10, (B("conv", 3, 4, "pool"), B("dsconv", 3, 8)), head_units=6)
    keys = {k for k in build_model(arch).state_dict() if k.endswith("weight")}
    assert keys == {
        "features.0.0.weight",  # block 0 conv
        "features.0.1.weight",  # its BatchNorm
        "features.1.0.weight",  # block 1 depthwise
        "features.1.1.weight",
        "features.1.3.weight",  # block 1 pointwise
        "features.1.4.weight",
        "head.2.weight",  # hidden dense (after pool, flatten)
        "head.4.weight",  # classifier (after ReLU)
    }


@pytest.mark.parametrize("level", [0.25, 0.5])
def test_physically_pruned_state_dict_loads_into_the_effective_arch(level: float) -> None:
    tp = pytest.importorskip("torch_pruning")
    arch = ArchSpec(
        (1, 8, 8),
        10,
        (B("conv", 3, 8, "pool"), B("dsconv", 3, 12, "stride"), B("conv", 3, 6)),
        head_units=10,
    )
    model = build_model(arch).eval()
    x = torch.zeros(1, *arch.model_input_shape)
    dg = tp.DependencyGraph().build_dependency(model, example_inputs=x)
    # The filters the structured pruners remove: each block's output conv and the hidden dense;
    # depthwise channels follow their input through the dependency graph.
    targets = [model.features[0][0], model.features[1][3], model.features[2][0]]
    for conv in targets:
        n = conv.out_channels - pruned_width(conv.out_channels, level)
        group = dg.get_pruning_group(conv, tp.prune_conv_out_channels, idxs=list(range(n)))
        assert dg.check_pruning_group(group)
        group.prune()
    hidden = model.head[2]
    n = hidden.out_features - pruned_width(hidden.out_features, level)
    dg.get_pruning_group(hidden, tp.prune_linear_out_channels, idxs=list(range(n))).prune()

    target = build_model(effective_arch(arch, PruningSpec("filter_norm", level))).eval()
    target.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(target(x + 1), model(x + 1))
