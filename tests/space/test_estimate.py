"""The analytic cost model: hand-computed nets, thop, the measured table, the greedy planner."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparsearch.errors import SpaceError
from sparsearch.space import (
    ArchSpec,
    BlockSpec,
    PruningSpec,
    effective_arch,
    estimate,
    layer_shapes,
)
from sparsearch.space._tflm_graph import arena_buffers, arena_head, live_peak, lower, plan_greedy
from sparsearch.space.estimate import (
    TAIL_BASE,
    TAIL_OP_STATE,
    TAIL_PER_CHANNEL,
    TAIL_PER_OP,
    TAIL_PER_TENSOR,
)

B = BlockSpec

# (1,8,8) -> conv3x3 4 + pool -> dsconv3x3 8 -> gap -> fc 3
SMALL = ArchSpec((1, 8, 8), 3, (B("conv", 3, 4, "pool"), B("dsconv", 3, 8)))
# (2,6,6) -> conv3x3 3 stride 2 -> flatten -> fc 5 -> fc 4
FLAT = ArchSpec((2, 6, 6), 4, (B("conv", 3, 3, "stride"),), head_pool="flatten", head_units=5)


def test_small_net_by_hand() -> None:
    e = estimate(SMALL)
    # weights: conv 4*1*9=36, dw 4*9=36, pw 8*4=32, fc 8*3=24 -> 128
    # biases (BN folded): 4 + 4 + 8 + 3 = 19
    assert e.params == 128 + 19
    assert e.weight_bytes == 128 + 4 * 19
    # MACs: conv 8*8*4*9*1=2304, dw 4*4*4*9=576, pw 4*4*8*4=512, fc 8*3=24
    assert e.macs == 2304 + 576 + 512 + 24
    # Arena (16-B aligned sizes, op index lifetimes): in 64 [0,0], conv 256 [0,1], pool 64 [1,2],
    # dw 64 [2,3], pw 128 [3,4], mean 8->16 [4,5], fc 3->16 [5,5], mean scratch 32,16,16 [4,4].
    # Greedy: conv@0, pw@0, in@256, pool@256, dw@128, scratch32@128, mean@160, fc@0, 176, 192
    # -> head 320 = input + conv output, the live peak.
    assert e.activation_bytes == 320
    # SpArSe count, dense: 128 weights + ceil(128/8)=16 bitmap + 76 bias bytes
    assert e.nnz_flash_bytes == 128 + 16 + 76


def test_flatten_net_by_hand() -> None:
    e = estimate(FLAT)
    # conv 3*2*9=54 weights on a 3x3 output (stride 2 on 6x6) -> 9*54=486 MACs
    # flatten 27 -> fc 5 (135 weights) -> fc 4 (20 weights)
    assert e.macs == 486 + 135 + 20
    assert e.params == (54 + 135 + 20) + (3 + 5 + 4)
    # 6x6 is even, so PyTorch's symmetric padding needs an explicit PAD (2x8x8=128).
    # Buffers: in 72->80 [0,0], pad 128 [0,1], conv 27->32 [1,2], transpose 32 [2,3],
    # reshape 32 [3,4], fc 16 [4,5], fc 16 [5,5]. pad@0, in@128 -> head 208.
    assert e.activation_bytes == 208
    graph = lower(layer_shapes(FLAT))
    codes = [op.code for op in graph.ops]
    assert codes == ["PAD", "CONV_2D", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    # 7 activation tensors + paddings, w, b, perm, shape, w, b, w, b = 16 tensors
    assert len(graph.tensors) == 16
    tail = (
        TAIL_BASE
        + 6 * TAIL_PER_OP
        + 16 * TAIL_PER_TENSOR
        + (3 + 5 + 4) * TAIL_PER_CHANNEL
        + TAIL_OP_STATE["CONV_2D"]
    )
    assert e.ram_bytes == 208 + tail


def test_unstructured_pruning_changes_only_the_sparse_count() -> None:
    dense = estimate(SMALL)
    sparse = estimate(SMALL, PruningSpec("magnitude", 0.5))
    # ceil(0.5 * 128) = 64 non-zeros + 16 bitmap + 76 bias bytes
    assert sparse.nnz_flash_bytes == 64 + 16 + 76
    assert (sparse.flash_bytes, sparse.ram_bytes, sparse.macs) == (
        dense.flash_bytes,
        dense.ram_bytes,
        dense.macs,
    )


def test_structured_pruning_is_the_effective_arch() -> None:
    arch = ArchSpec(
        (1, 28, 28), 10, (B("conv", 3, 16, "stride"), B("dsconv", 5, 32, "pool")), head_units=24
    )
    pruning = PruningSpec("filter_norm", 0.5)
    pruned = estimate(arch, pruning)
    assert pruned == estimate(effective_arch(arch, pruning))
    full = estimate(arch)
    assert pruned.flash_bytes < full.flash_bytes
    assert pruned.ram_bytes < full.ram_bytes
    assert pruned.macs < full.macs


def test_to_dict_is_json_safe_ints() -> None:
    d = estimate(SMALL).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {
        "flash_bytes",
        "ram_bytes",
        "activation_bytes",
        "macs",
        "params",
        "weight_bytes",
        "nnz_flash_bytes",
    }
    assert all(isinstance(v, int) for v in d.values())


VARIED = [
    SMALL,
    FLAT,
    ArchSpec(
        (1, 28, 28),
        10,
        (B("conv", 5, 8, "stride"), B("dsconv", 3, 16, "pool"), B("conv", 7, 12)),
        input_scale=0.75,
    ),
    ArchSpec(
        (3, 32, 32),
        7,
        (B("dsconv", 3, 6, "stride"), B("conv", 1, 10, "stride")),
        head_pool="flatten",
        head_units=16,
        input_scale=0.5,
    ),
]


@pytest.mark.parametrize("arch", VARIED)
def test_macs_and_params_match_thop(arch: ArchSpec) -> None:
    torch = pytest.importorskip("torch")
    thop = pytest.importorskip("thop")
    from thop.vision.basic_hooks import zero_ops

    from sparsearch.space import build_model

    model = build_model(arch).eval()
    bn_affine = sum(
        2 * m.num_features for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )
    dense_bias = sum(m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear))
    x = torch.zeros(1, *arch.model_input_shape)
    # thop counts BN and average pooling as ops; DESIGN.md's MACs are conv + dense only.
    macs, params = thop.profile(
        model,
        inputs=(x,),
        verbose=False,
        custom_ops={torch.nn.BatchNorm2d: zero_ops, torch.nn.AdaptiveAvgPool2d: zero_ops},
    )
    e = estimate(arch)
    assert int(macs) == e.macs
    # thop's params are the float model's (BN gamma/beta, dense biases, no conv bias); the
    # deployed int8 model folds BN into one bias per conv output channel.
    layers = layer_shapes(arch)
    assert int(params) - bn_affine - dense_bias == sum(layer.weights for layer in layers)
    assert e.params == sum(layer.weights + layer.biases for layer in layers)


# DESIGN.md, measured table (litert-torch 0.10 int8, tflite-micro recording allocator).
# Rows 1-3 were exported with an NCHW input (an input TRANSPOSE), row 4 with to_channel_last_io.
TABLE = [
    # arch, channels_last_input, .tflite, int8 w + int32 b, arena total, head, tail
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 8, "pool"), B("conv", 3, 16, "pool")),
            head_pool="flatten",
        ),
        False,
        14_400,
        9_200,
        10_336,
        7_840,
        2_496,
    ),
    (
        ArchSpec((1, 28, 28), 10, (B("conv", 3, 16, "stride"), B("dsconv", 3, 32))),
        False,
        7_952,
        1_416,
        12_240,
        9_408,
        2_832,
    ),
    (
        ArchSpec((1, 8, 8), 10, (B("conv", 3, 4), B("conv", 3, 8, "stride")), head_pool="flatten"),
        False,
        6_440,
        1_692,
        2_912,
        656,
        2_256,
    ),
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 5, "stride"), B("conv", 3, 12, "stride"), B("conv", 3, 16)),
        ),
        True,
        9_440,
        2_645,
        4_880,
        2_272,
        2_608,
    ),
]


@pytest.mark.parametrize("row", range(len(TABLE)))
def test_reproduces_measured_table(row: int) -> None:
    arch, channels_last, flash, weight_bytes, total, head, tail = TABLE[row]
    e = estimate(arch, channels_last_input=channels_last)
    assert e.weight_bytes == weight_bytes
    # The greedy planner on the lowered graph (with the converter's PAD ops) is exact.
    assert e.activation_bytes == head
    assert abs(e.ram_bytes - e.activation_bytes - tail) <= 50
    assert abs(e.ram_bytes - total) <= 0.15 * total
    assert abs(e.flash_bytes - flash) <= 0.15 * flash


def test_greedy_planner_can_exceed_the_live_peak() -> None:
    # (size, first op, last op). At most two buffers are ever alive: peak 96.
    buffers = [(48, 0, 1), (48, 1, 2), (48, 3, 3), (48, 2, 3)]
    assert live_peak(buffers) == 96
    # Largest first, ties in order: A@0; B overlaps A -> 48; C (alone at op 3) -> 0; D overlaps
    # B at op 2 and C at op 3 -> 96. A better plan (D@0, C@48) needs 96; greedy needs 144.
    assert plan_greedy(buffers) == [0, 48, 0, 96]
    assert arena_head(buffers) == 144


def test_greedy_reuses_memory_of_dead_buffers() -> None:
    buffers = [(64, 0, 0), (32, 1, 1), (32, 0, 1)]
    # 64@0; 32 [1,1] reuses 0; 32 [0,1] overlaps both -> 64
    assert plan_greedy(buffers) == [0, 0, 64]


def test_arena_buffers_are_aligned_and_keep_the_input_alive_from_op_0() -> None:
    graph = lower(layer_shapes(FLAT))
    buffers = arena_buffers(graph)
    assert all(size % 16 == 0 for size, _, _ in buffers)
    assert buffers[0] == (80, 0, 0)  # 2*6*6 = 72 input bytes, rounded up to 16
    assert buffers[-1] == (16, 5, 5)  # the model output lives until the last op


def test_downsampling_below_1x1_is_rejected() -> None:
    arch = ArchSpec((1, 8, 8), 10, tuple(B("conv", 3, 4, "pool") for _ in range(4)))
    with pytest.raises(SpaceError) as info:
        estimate(arch)
    assert "block 3" in info.value.message
    assert "input_scale" in (info.value.hint or "")
    # A stride-2 conv on a 1x1 map stays 1x1 (ceil), so it is allowed.
    strided = ArchSpec((1, 8, 8), 10, tuple(B("conv", 3, 4, "stride") for _ in range(5)))
    assert layer_shapes(strided)[-2].in_shape == (4, 1, 1)


@pytest.mark.parametrize(
    "arch",
    [
        ArchSpec((1, 8, 8), 10, ()),
        ArchSpec((1, 8, 8), 10, (B("conv", 3, 0),)),
        ArchSpec((1, 8, 8), 10, (B("conv", 2, 4),)),
        ArchSpec((1, 8, 8), 10, (B("conv", 0, 4),)),
        ArchSpec((1, 8, 8), 0, (B("conv", 3, 4),)),
        ArchSpec((1, 8, 8), 10, (B("pool", 3, 4),)),  # type: ignore[arg-type]
        ArchSpec((1, 8, 8), 10, (B("conv", 3, 4),), head_pool="max"),  # type: ignore[arg-type]
    ],
)
def test_nonsense_is_a_space_error(arch: ArchSpec) -> None:
    with pytest.raises(SpaceError):
        estimate(arch)


def test_importing_space_and_estimating_does_not_import_torch() -> None:
    code = (
        "import sys, sparsearch.space as s;"
        "s.estimate(s.ArchSpec((1, 8, 8), 10, (s.BlockSpec('conv', 3, 4),)));"
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
