"""The analytic cost model: hand-computed nets, thop, the measured table, the lowering rules the
converter follows, the greedy planner and the tail replay."""

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
from sparsearch.space.estimate import HOST64, TAIL_CLASSES, tail_of_graph

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
    # Greedy, largest first, ties last-added first: conv@0, pw@0, dw@128, pool@256, in@256,
    # scratch32@128, scratch16@160, @176, fc@0, mean@192 -> head 320 = input + conv output.
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
    # reshape 32 [3,4], fc 16 [4,5], fc 16 [5,5]. pad@0, in@128 -> head 208 (measured: 208).
    assert e.activation_bytes == 208
    graph = lower(layer_shapes(FLAT))
    codes = [op.code for op in graph.ops]
    assert codes == ["PAD", "CONV_2D", "TRANSPOSE", "RESHAPE", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    # 7 activation tensors + paddings, w, b, perm, shape, w, b, w, b = 16 tensors
    assert len(graph.tensors) == 16
    # Tail, allocation by allocation (64-bit host): 488 fixed; eval tensors 16 * 24 -> 872;
    # nodes 6 * 64 -> 1256; builtin data conv 28 -> 1284, reshape 36 -> 1320, fc 32 (8-aligned)
    # -> 1352, 1384; op data (16-aligned) pad 56 -> 1440, conv 80 -> 1520, fc 72 -> 1600, 1680;
    # per-channel multipliers + shifts conv 2 x 12 -> 1712, fc 2 x 20 -> 1776, fc 2 x 16 -> 1808;
    # input: pointer array 8 (16-aligned) -> 1824, TfLiteTensor 64, quantization 24 + 8 -> 1920;
    # output: -> 1936, 2000, 2032. Measured: tail 2032, total 2240.
    tail = tail_of_graph(graph)
    assert tail["total"] == 2032
    assert sum(tail[k] for k in TAIL_CLASSES) == tail["total"]
    assert tail["TfLiteEvalTensor data"] == 16 * HOST64.eval_tensor
    assert tail["NodeAndRegistration struct"] == 6 * HOST64.node
    assert e.ram_bytes == 208 + 2032


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
        "instructions",  # the c target's; None under tflm
    }
    assert d.pop("instructions") is None
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


# DESIGN.md's nets and the two above, measured on the shipped (stripped) export with NHWC int8
# input (litert-torch 0.10.0 int8, tflite-micro 0.dev20261023182759 recording allocator, 64-bit
# host; trained-like random weights and BatchNorm statistics, benchmarks/estimator_accuracy.py's
# ``measure``). The unstripped files were 16192, 10664, 8064, 11040, 7592 and 6128 B.
TABLE = [
    # arch, stripped .tflite, int8 w + int32 b, arena total, head, tail
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 8, "pool"), B("conv", 3, 16, "pool")),
            head_pool="flatten",
        ),
        12_296,
        9_200,
        10_192,
        7_840,
        2_352,
    ),
    (
        ArchSpec((1, 28, 28), 10, (B("conv", 3, 16, "stride"), B("dsconv", 3, 32))),
        5_512,
        1_416,
        12_080,
        9_408,
        2_672,
    ),
    (
        ArchSpec((1, 8, 8), 10, (B("conv", 3, 4), B("conv", 3, 8, "stride")), head_pool="flatten"),
        4_424,
        1_692,
        2_768,
        656,
        2_112,
    ),
    (
        ArchSpec(
            (1, 28, 28),
            10,
            (B("conv", 3, 5, "stride"), B("conv", 3, 12, "stride"), B("conv", 3, 16)),
        ),
        6_120,
        2_645,
        4_880,
        2_272,
        2_608,
    ),
    (SMALL, 2_912, 204, 2_544, 320, 2_224),
    (FLAT, 2_648, 257, 2_240, 208, 2_032),
]


@pytest.mark.parametrize("row", range(len(TABLE)))
def test_reproduces_measured_table(row: int) -> None:
    arch, flash, weight_bytes, total, head, tail = TABLE[row]
    e = estimate(arch)
    assert e.weight_bytes == weight_bytes
    # The greedy planner on the lowered graph and the tail replay are exact.
    assert e.activation_bytes == head
    assert e.ram_bytes - e.activation_bytes == tail
    assert e.ram_bytes == total
    # The flatbuffer layout places every item but the zero-point alignment padding.
    assert abs(e.flash_bytes - flash) <= 0.03 * flash


# --- what the converter emits (checked on the flatbuffers of benchmarks/estimator_accuracy.py) ---


def _codes(arch: ArchSpec) -> list[str]:
    return [op.code for op in lower(layer_shapes(arch)).ops]


def test_a_conv_on_one_channel_is_depthwise() -> None:
    # the first conv on a grey image and the pointwise conv after a one-channel depthwise
    arch = ArchSpec((1, 8, 8), 3, (B("conv", 3, 4), B("dsconv", 3, 1), B("dsconv", 3, 6)))
    graph = lower(layer_shapes(arch))
    dw, conv = "DEPTHWISE_CONV_2D", "CONV_2D"
    # conv 1->4, dw 4, pw 4->1, dw 1, pw 1->6
    assert [op.code for op in graph.ops][:5] == [dw, dw, conv, dw, dw]
    weights = [graph.tensors[op.inputs[1]] for op in graph.ops[:5]]
    # quantized along dimension 3 when a depthwise filter has more than one channel
    assert [w.qdim for w in weights] == [True, True, False, False, True]


def test_global_pooling_and_flatten_operators() -> None:
    blocks = (B("conv", 3, 4, "stride"),)
    assert _codes(ArchSpec((2, 4, 4), 3, blocks))[-2:] == ["MEAN", "FULLY_CONNECTED"]
    # a 1x1 map is summed; one channel keeps its dims and is reshaped
    assert _codes(ArchSpec((2, 2, 2), 3, blocks))[-2:] == ["SUM", "FULLY_CONNECTED"]
    one = ArchSpec((2, 4, 4), 3, (B("conv", 3, 1, "stride"),))
    assert _codes(one)[-3:] == ["MEAN", "RESHAPE", "FULLY_CONNECTED"]
    # flatten: TRANSPOSE + RESHAPE, RESHAPE alone for one channel, nothing on a 1x1 map
    flat = ArchSpec((2, 4, 4), 3, blocks, head_pool="flatten")
    assert _codes(flat)[-3:] == ["TRANSPOSE", "RESHAPE", "FULLY_CONNECTED"]
    flat_one = ArchSpec((2, 4, 4), 3, (B("conv", 3, 1, "stride"),), head_pool="flatten")
    assert _codes(flat_one)[-3:] == ["CONV_2D", "RESHAPE", "FULLY_CONNECTED"]
    flat_1x1 = ArchSpec((2, 2, 2), 3, blocks, head_units=8, head_pool="flatten")
    graph = lower(layer_shapes(flat_1x1))
    assert [op.code for op in graph.ops] == ["PAD", "CONV_2D", "FULLY_CONNECTED", "FULLY_CONNECTED"]
    # keep_num_dims is false when FULLY_CONNECTED reads the 4-D conv output directly
    assert [op.options for op in graph.ops[2:]] == [("fc", True, False), ("fc", False, True)]


def test_pads_with_equal_paddings_share_one_tensor_and_are_valid() -> None:
    arch = ArchSpec((2, 16, 16), 3, (B("conv", 3, 4, "stride"), B("conv", 3, 4, "stride")))
    graph = lower(layer_shapes(arch))
    pads = [op for op in graph.ops if op.code == "PAD"]
    assert len(pads) == 2 and pads[0].inputs[1] == pads[1].inputs[1]
    assert [op.options for op in graph.ops if op.code == "CONV_2D"] == [("conv", True)] * 2
    # a stride-1 k x k conv is SAME, a 1 x 1 conv VALID
    same = lower(layer_shapes(ArchSpec((2, 8, 8), 3, (B("conv", 3, 4), B("conv", 1, 4)))))
    assert [op.options for op in same.ops[:2]] == [("conv", False), ("conv", True)]


def test_greedy_planner_can_exceed_the_live_peak() -> None:
    # (size, first op, last op). At most two buffers are ever alive: peak 96.
    buffers = [(48, 2, 3), (48, 3, 3), (48, 1, 2), (48, 0, 1)]
    assert live_peak(buffers) == 96
    # Largest first, ties last-added first: [0,1]@0; [1,2] overlaps it -> 48; [3,3] (alone at
    # op 3) -> 0; [2,3] overlaps [1,2] at op 2 and [3,3] at op 3 -> 96. A better plan ([2,3]@0,
    # [3,3]@48) needs 96; greedy needs 144.
    assert plan_greedy(buffers) == [96, 0, 48, 0]
    assert arena_head(buffers) == 144


def test_greedy_planner_places_ties_last_added_first() -> None:
    # TFLM fills its sort array from the tail and bubble-sorts it: equal sizes keep reverse order
    assert plan_greedy([(16, 0, 1), (16, 0, 1), (32, 0, 1)]) == [48, 32, 0]


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
