"""Height-1 inputs (sensor windows, audio features) get 1-D operators: 1 x k convs, 1 x 2
pooling, stride 2 along the length only. Torch model, shape walk, costs and TFLite graph agree;
the 2-D path is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from sparsearch.errors import SpaceError
from sparsearch.space import ArchSpec, BlockSpec, PruningSpec, estimate, layer_shapes
from sparsearch.space._shapes import is_one_d
from sparsearch.space._tflm_graph import arena_buffers, lower

B = BlockSpec
SENSOR = (3, 1, 128)  # C, H, W: a 3-axis window of 128 samples

ARCHS_1D = [
    ArchSpec(SENSOR, 4, (B("conv", 3, 8),)),
    ArchSpec(SENSOR, 4, (B("conv", 5, 8, "stride"), B("conv", 7, 12, "pool"))),
    ArchSpec(SENSOR, 4, (B("dsconv", 7, 8, "pool"), B("dsconv", 3, 16, "stride"))),
    ArchSpec(
        SENSOR,
        6,
        (B("conv", 5, 8, "stride"), B("dsconv", 7, 12, "pool"), B("conv", 1, 16, "pool")),
        head_pool="flatten",
        head_units=10,
    ),
    ArchSpec(
        SENSOR,
        5,
        (B("dsconv", 5, 6, "stride"), B("conv", 3, 10, "stride"), B("dsconv", 7, 8, "pool")),
        input_scale=0.75,  # (3, 1, 96)
        head_units=8,
    ),
    ArchSpec((1, 1, 50), 3, (B("conv", 7, 4, "stride"), B("conv", 3, 4, "pool")), input_scale=0.5),
]


def _ids(arch: ArchSpec) -> str:
    return "-".join(f"{b.kind}{b.kernel}{b.downsample[0]}" for b in arch.blocks)


# --- the shape walk --------------------------------------------------------------------------


def test_lengths_halve_and_the_height_stays_1() -> None:
    arch = ArchSpec(
        SENSOR,
        4,
        (B("conv", 5, 8, "stride"), B("dsconv", 3, 12, "pool"), B("conv", 3, 16, "stride")),
    )
    walk = [(layer.kind, layer.out_shape) for layer in layer_shapes(arch)]
    assert walk == [
        ("conv", (8, 1, 64)),  # stride 2 along the length: 128 -> 64
        ("dwconv", (8, 1, 64)),
        ("conv", (12, 1, 64)),
        ("maxpool", (12, 1, 32)),  # 1 x 2 pool: 64 -> 32, the height stays 1
        ("conv", (16, 1, 16)),
        ("gap", (16, 1, 1)),
        ("dense", (4, 1, 1)),
    ]
    # odd lengths: stride 2 gives ceil, pooling floor
    odd = ArchSpec((3, 1, 33), 4, (B("conv", 3, 4, "stride"), B("conv", 3, 4, "pool")))
    assert [layer.out_shape for layer in layer_shapes(odd)][:3] == [
        (4, 1, 17),
        (4, 1, 17),
        (4, 1, 8),
    ]


@pytest.mark.parametrize("arch", ARCHS_1D, ids=_ids)
def test_every_conv_and_pool_layer_is_one_dimensional(arch: ArchSpec) -> None:
    assert is_one_d(arch)
    for layer in layer_shapes(arch):
        if layer.kind in ("conv", "dwconv", "maxpool"):
            assert layer.one_d
            assert layer.kernel_hw == (1, layer.kernel)
            assert layer.stride_hw == (1, layer.stride)
            assert layer.in_shape[1] == layer.out_shape[1] == 1


def test_weights_count_k_per_tap_not_k_squared() -> None:
    arch = ArchSpec(SENSOR, 4, (B("conv", 5, 8), B("dsconv", 7, 12)))
    conv, dw, pw, _, fc = layer_shapes(arch)
    assert conv.weights == 8 * 3 * 5  # not 8 * 3 * 25
    assert dw.weights == 8 * 7  # not 8 * 49
    assert pw.weights == 12 * 8
    # MACs: one output per length position, k taps each
    assert conv.macs == 128 * 8 * 3 * 5
    assert dw.macs == 128 * 8 * 7
    e = estimate(arch)
    assert e.params == (120 + 56 + 96 + 12 * 4) + (8 + 8 + 12 + 4)
    assert e.macs == 128 * (120 + 56 + 96) + 12 * 4


def test_pooling_a_length_1_sequence_is_a_space_error() -> None:
    # 8 -> 4 -> 2 -> 1 -> pool would be 0 long; a 2-D walk would have refused the first pool
    arch = ArchSpec((2, 1, 8), 3, (B("conv", 3, 4, "pool"),) * 4)
    with pytest.raises(SpaceError) as info:
        layer_shapes(arch)
    assert "block 3" in info.value.message and "length" in info.value.message
    assert "input_scale" in (info.value.hint or "")
    assert layer_shapes(ArchSpec((2, 1, 8), 3, (B("conv", 3, 4, "pool"),) * 3))[-3].out_shape == (
        4,
        1,
        1,
    )


def test_input_scale_scales_only_the_length() -> None:
    assert ArchSpec(SENSOR, 4, (B("conv", 3, 4),), input_scale=0.25).model_input_shape == (3, 1, 32)
    # a 2-row input scaled to one row is 1-D too (the decision is on the model input)
    arch = ArchSpec((2, 2, 40), 5, (B("conv", 5, 8, "pool"),), input_scale=0.25)
    assert arch.model_input_shape == (2, 1, 10)
    assert is_one_d(arch) and layer_shapes(arch)[0].kernel_hw == (1, 5)
    assert not is_one_d(ArchSpec((2, 2, 40), 5, (B("conv", 5, 8, "pool"),)))


def test_structured_pruning_keeps_the_model_one_dimensional() -> None:
    arch = ARCHS_1D[3]
    pruned = estimate(arch, PruningSpec("filter_norm", 0.5))
    full = estimate(arch)
    assert pruned.params < full.params and pruned.macs < full.macs


# --- the int8 TFLite graph -------------------------------------------------------------------


def test_stride_2_pads_along_the_length_only() -> None:
    arch = ArchSpec((2, 1, 16), 3, (B("conv", 3, 4, "stride"),))
    graph = lower(layer_shapes(arch))
    assert [op.code for op in graph.ops] == ["PAD", "CONV_2D", "MEAN", "FULLY_CONNECTED"]
    pad = graph.tensors[graph.ops[0].outputs[0]]
    assert pad.nbytes == 2 * 1 * (16 + 2)  # a 2-D pad would be 2 * 3 * 18
    weights = graph.tensors[graph.ops[1].inputs[1]]
    assert weights.const and weights.nbytes == 4 * 2 * 3
    # Buffers: in 32 [0,0], pad 36->48 [0,1], conv 32 [1,2], mean 16 [2,3], fc 16 [3,3],
    # mean scratch 16, 16, 8->16 [2,2]. Greedy: pad@0, in@48, conv@48, mean@0, fc@16,
    # scratch@16, @32, @80 -> head 96.
    assert arena_buffers(graph) == [
        (32, 0, 0),
        (48, 0, 1),
        (32, 1, 2),
        (16, 2, 3),
        (16, 3, 3),
        (16, 2, 2),
        (16, 2, 2),
        (16, 2, 2),
    ]
    assert estimate(arch).activation_bytes == 96
    # an odd length needs no PAD: PyTorch and TFLite SAME agree along W, and H is not padded
    odd = lower(layer_shapes(ArchSpec((2, 1, 15), 3, (B("conv", 3, 4, "stride"),))))
    assert [op.code for op in odd.ops] == ["CONV_2D", "MEAN", "FULLY_CONNECTED"]


def test_pooling_and_flatten_buffers() -> None:
    arch = ArchSpec((2, 1, 16), 3, (B("dsconv", 5, 4, "pool"),), head_pool="flatten")
    graph = lower(layer_shapes(arch))
    codes = [op.code for op in graph.ops]
    assert codes == [
        "DEPTHWISE_CONV_2D",
        "CONV_2D",
        "MAX_POOL_2D",
        "TRANSPOSE",  # NHWC (1, 1, 8, 4) and NCHW (4, 1, 8) flatten differently
        "RESHAPE",
        "FULLY_CONNECTED",
    ]
    sizes = [graph.tensors[op.outputs[0]].nbytes for op in graph.ops]
    assert sizes == [2 * 16, 4 * 16, 4 * 8, 32, 32, 3]
    assert graph.tensors[graph.ops[0].inputs[1]].nbytes == 2 * 5  # depthwise 1 x 5
    assert graph.tensors[graph.ops[5].inputs[1]].nbytes == 32 * 3


# --- the 2-D path is unchanged ---------------------------------------------------------------

# Figures of the code before 1-D operators existed (same estimate for every field); flash and
# RAM as refitted to the stripped export (issue 11).
FIXED_2D = [
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 8, "pool"), B("conv", 3, 16, "pool")),
            head_pool="flatten",
        ),
        PruningSpec(),
        (12298, 10192, 7840, 290080, 9098, 9200, 10333),
    ),
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 5, "stride"), B("conv", 3, 12, "stride"), B("conv", 3, 16)),
        ),
        PruningSpec(),
        (6110, 4880, 2272, 120112, 2516, 2645, 2955),
    ),
    (
        ArchSpec(
            (3, 32, 32),
            7,
            (B("dsconv", 5, 6, "stride"), B("conv", 1, 10, "pool"), B("dsconv", 7, 12, "stride")),
            head_pool="flatten",
            head_units=16,
            input_scale=0.75,
        ),
        PruningSpec(),
        (8240, 7872, 4080, 29362, 2667, 2859, 3185),
    ),
    (
        ArchSpec(
            (3, 32, 32),
            7,
            (B("dsconv", 5, 6, "stride"), B("conv", 1, 10, "pool"), B("dsconv", 7, 12, "stride")),
            head_pool="flatten",
            head_units=16,
            input_scale=0.75,
        ),
        PruningSpec("filter_norm", 0.5),
        (5748, 7680, 4080, 17219, 899, 1010, 1118),
    ),
    # strided down to 1x1: the later layers see one-row maps but stay 2-D
    (
        ArchSpec((1, 8, 8), 10, tuple(B("conv", 3, 4, "stride") for _ in range(5))),
        PruningSpec(),
        (4664, 3328, 208, 1624, 682, 772, 854),
    ),
    # two rows: 2-D, although the pool makes it one row high
    (
        ArchSpec(
            (2, 2, 40), 5, (B("conv", 5, 8, "pool"), B("dsconv", 3, 8, "stride")), head_units=8
        ),
        PruningSpec(),
        (4452, 3600, 800, 33464, 677, 788, 868),
    ),
]


@pytest.mark.parametrize("row", range(len(FIXED_2D)))
def test_two_dimensional_estimates_are_unchanged(row: int) -> None:
    arch, pruning, figures = FIXED_2D[row]
    assert not is_one_d(arch)
    e = estimate(arch, pruning)
    fields = (
        e.flash_bytes,
        e.ram_bytes,
        e.activation_bytes,
        e.macs,
        e.params,
        e.weight_bytes,
        e.nnz_flash_bytes,
    )
    assert fields == figures
    assert all(not layer.one_d for layer in layer_shapes(arch))


def test_two_row_map_pooled_to_one_row_still_refuses_a_2d_pool() -> None:
    arch = ArchSpec((2, 2, 40), 5, (B("conv", 5, 8, "pool"), B("conv", 3, 8, "pool")))
    with pytest.raises(SpaceError) as info:
        layer_shapes(arch)
    assert "1x20" in info.value.message and "1x1" in info.value.message


# --- the torch model -------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS_1D, ids=_ids)
def test_built_model_uses_1xk_kernels_and_matches_the_walk(arch: ArchSpec) -> None:
    torch = pytest.importorskip("torch")
    from sparsearch.space import build_model

    model = build_model(arch).eval()
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    layers = [layer for layer in layer_shapes(arch) if layer.kind in ("conv", "dwconv")]
    assert len(convs) == len(layers)
    for conv, layer in zip(convs, layers, strict=True):
        k = layer.kernel
        assert conv.kernel_size == (1, k)
        assert conv.padding == (0, k // 2)
        assert conv.stride == (1, layer.stride)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert all(p.kernel_size == (1, 2) and p.stride == (1, 2) for p in pools)

    seen: list[tuple[int, ...]] = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.MaxPool2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:])))
    with torch.no_grad():
        y = model(torch.randn(4, *arch.model_input_shape))
    assert tuple(y.shape) == (4, arch.num_classes)
    walk = [
        layer.out_shape
        for layer in layer_shapes(arch)
        if layer.kind in ("conv", "dwconv", "maxpool")
    ]
    assert seen == walk


@pytest.mark.parametrize("arch", ARCHS_1D, ids=_ids)
def test_parameter_count_matches_the_estimator(arch: ArchSpec) -> None:
    torch = pytest.importorskip("torch")
    from sparsearch.space import build_model

    model = build_model(arch)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(m.weight.shape[2] == 1 for m in convs)  # k weights per tap, not k * k
    conv_w = sum(m.weight.numel() for m in convs)
    # deployed: BatchNorm folds into one bias per conv output channel
    folded_bias = sum(
        m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    dense = sum(
        m.weight.numel() + m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.Linear)
    )
    assert conv_w + folded_bias + dense == estimate(arch).params
    # the float model: BN gamma + beta where the deployed one has the folded bias
    total = sum(p.numel() for p in model.parameters())
    assert total == estimate(arch).params + folded_bias


@pytest.mark.parametrize("arch", ARCHS_1D, ids=_ids)
def test_macs_match_thop_and_a_manual_count(arch: ArchSpec) -> None:
    torch = pytest.importorskip("torch")
    thop = pytest.importorskip("thop")
    from thop.vision.basic_hooks import zero_ops

    from sparsearch.space import build_model

    model = build_model(arch).eval()
    x = torch.zeros(1, *arch.model_input_shape)
    macs, _ = thop.profile(
        model,
        inputs=(x,),
        verbose=False,
        custom_ops={torch.nn.BatchNorm2d: zero_ops, torch.nn.AdaptiveAvgPool2d: zero_ops},
    )
    e = estimate(arch)
    assert int(macs) == e.macs

    manual = 0

    def count(m, _inp, out) -> None:
        nonlocal manual
        if isinstance(m, torch.nn.Conv2d):
            kh, kw = m.kernel_size
            assert kh == 1
            manual += out.numel() * (m.in_channels // m.groups) * kw
        else:
            manual += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_hook(count)
    with torch.no_grad():
        model(x)
    assert manual == e.macs


# --- end to end: one trial on a synthetic sensor data set ------------------------------------


def _sensor_dataset(seed: int = 0):
    from sparsearch.datasets import Dataset

    rng = np.random.default_rng(seed)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n, dtype=np.int64) % 2
        t = np.linspace(0, 1, 128, dtype=np.float32)
        freq = np.where(y == 0, 3.0, 11.0).astype(np.float32)
        x = np.sin(2 * np.pi * freq[:, None] * t[None, :])[:, None, None, :]
        x = np.repeat(x, 3, axis=1) + 0.1 * rng.standard_normal((n, 3, 1, 128))
        return np.ascontiguousarray(x, dtype=np.float32), y

    (xt, yt), (xv, yv), (xs, ys) = split(96), split(32), split(32)
    return Dataset("sensor", xt, yt, xv, yv, xs, ys, num_classes=2)


def test_run_trial_trains_a_height_1_data_set() -> None:
    torch = pytest.importorskip("torch")
    from sparsearch.space.spec import TrainSpec, TrialSpec
    from sparsearch.worker.export import load_model
    from sparsearch.worker.trial import prepare_inputs, run_trial

    data = _sensor_dataset()
    assert data.input_shape == SENSOR
    arch = ArchSpec(
        data.input_shape,
        data.num_classes,
        (B("conv", 5, 8, "stride"), B("dsconv", 7, 8, "pool"), B("conv", 3, 8, "pool")),
        input_scale=0.5,  # trains on (3, 1, 64): only the length is resized
        head_units=8,
    )
    spec = TrialSpec(
        arch=arch,
        pruning=PruningSpec("filter_norm", 0.5),
        train=TrainSpec(lr=1e-2, epochs=1, finetune_epochs=1, batch_size=16, seed=0),
        export_onnx=True,
    )
    x_train, _, _ = prepare_inputs(spec, data)
    assert x_train.shape == (96, 3, 1, 64)

    result = run_trial(spec, data)
    assert 0.0 <= result.accuracy <= 1.0 and 0.0 <= result.test_accuracy <= 1.0
    model = load_model(result.effective_spec, result.artifacts["state_dict"])
    assert sum(p.numel() for p in model.parameters()) == result.param_count
    effective = ArchSpec.from_dict(result.effective_spec["arch"])
    bn = sum(m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert result.param_count == estimate(effective).params + bn
    assert all(m.kernel_size[0] == 1 for m in model.modules() if isinstance(m, torch.nn.Conv2d))

    onnx = pytest.importorskip("onnx")
    proto = onnx.load_from_string(result.artifacts["onnx"])
    dims = [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 1, 64]
    kernels = [
        list(a.ints)
        for node in proto.graph.node
        if node.op_type == "Conv"
        for a in node.attribute
        if a.name == "kernel_shape"
    ]
    assert kernels and all(k[0] == 1 for k in kernels)
    assert [1, 5] in kernels and [1, 7] in kernels
