"""codegen.reader: agreement with TFLite's own flatbuffer parser on real exports, and safety on
hostile input (patched, truncated and fuzzed files raise only ModelError, quickly, in little
memory).

The models under data/ are int8 exports of the project's CNNs (stripped of metadata):
``dw_conv_pool_transpose_fc_8x8`` (DEPTHWISE_CONV_2D, CONV_2D, MAX_POOL_2D, TRANSPOSE,
RESHAPE, FULLY_CONNECTED), ``pad_dw_conv_mean_reshape_fc_8x8`` (PAD, ..., MEAN) and
``dw_conv_pool_sum_fc_1x40`` (..., SUM).
"""

from __future__ import annotations

import math
import random
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from sparsearch.codegen import reader
from sparsearch.codegen.graph import DTYPE_SIZES, Model, ModelError
from sparsearch.codegen.reader import builtin_name, read_model

DATA = Path(__file__).parent / "data"
MODELS = sorted(DATA.glob("*.tflite"))

_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}
_PADDINGS = ("SAME", "VALID")
_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")
_CONV = ("padding", "stride_w", "stride_h", "fused_activation_function")
_DILATION = ("dilation_w_factor", "dilation_h_factor")
_POOL = ("padding", "stride_w", "stride_h", "filter_width", "filter_height")
# Operator -> (options class of the object API, the keys the reader fills), by the schema.
_OPTIONS = {
    "CONV_2D": (schema.Conv2DOptionsT, (*_CONV, *_DILATION)),
    "DEPTHWISE_CONV_2D": (
        schema.DepthwiseConv2DOptionsT,
        (*_CONV[:3], "depth_multiplier", "fused_activation_function", *_DILATION),
    ),
    "MAX_POOL_2D": (schema.Pool2DOptionsT, (*_POOL, "fused_activation_function")),
    "AVERAGE_POOL_2D": (schema.Pool2DOptionsT, (*_POOL, "fused_activation_function")),
    "FULLY_CONNECTED": (
        schema.FullyConnectedOptionsT,
        ("fused_activation_function", "weights_format", "keep_num_dims"),
    ),
    "MEAN": (schema.ReducerOptionsT, ("keep_dims",)),
    "SUM": (schema.ReducerOptionsT, ("keep_dims",)),
    "RESHAPE": (schema.ReshapeOptionsT, ("new_shape",)),
    "SOFTMAX": (schema.SoftmaxOptionsT, ("beta",)),
    "PAD": (schema.PadOptionsT, ()),
    "TRANSPOSE": (schema.TransposeOptionsT, ()),
}


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part.title() for part in rest)


def _reference_options(code: str, ref_op) -> dict:
    if code not in _OPTIONS:
        return {}
    cls, keys = _OPTIONS[code]
    obj = ref_op.builtinOptions if ref_op.builtinOptions is not None else cls()
    options = {}
    for key in keys:
        value = getattr(obj, _camel(key))
        if key == "padding":
            value = _PADDINGS[value]
        elif key == "fused_activation_function":
            value = _ACTIVATIONS[value]
        elif key == "weights_format":
            value = ("DEFAULT", "SHUFFLED4x16INT8")[value]
        elif key == "new_shape":
            value = None if value is None else tuple(int(v) for v in value)
        options[key] = value
    if code == "FULLY_CONNECTED":
        options["asymmetric_quantize_inputs"] = obj.asymmetricQuantizeInputs
    return options


def assert_matches_reference(data: bytes, model: Model) -> None:
    """Everything the reader fills equals what ai_edge_litert's object API reads."""
    ref = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    assert len(ref.subgraphs) == 1
    graph = ref.subgraphs[0]
    assert model.size == len(data)
    assert list(model.inputs) == list(graph.inputs)
    assert list(model.outputs) == list(graph.outputs)
    assert len(model.tensors) == len(graph.tensors)
    for i, (ours, theirs) in enumerate(zip(model.tensors, graph.tensors, strict=True)):
        assert ours.index == i
        assert list(ours.shape) == [
            int(d) for d in (theirs.shape if theirs.shape is not None else ())
        ]
        assert ours.dtype == _DTYPES[theirs.type]
        ref_data = ref.buffers[theirs.buffer].data
        assert ours.data == (bytes(ref_data) if ref_data is not None and len(ref_data) else None)
        q = theirs.quantization
        scales = [] if q is None or q.scale is None else [float(s) for s in q.scale]
        zero_points = [] if q is None or q.zeroPoint is None else [int(z) for z in q.zeroPoint]
        assert list(ours.scales) == scales  # exactly: float32 -> double loses nothing
        assert list(ours.zero_points) == zero_points
        assert ours.quantized_dimension == (0 if q is None else q.quantizedDimension)
    assert len(model.operators) == len(graph.operators)
    for i, (ours, theirs) in enumerate(zip(model.operators, graph.operators, strict=True)):
        code = ref.operatorCodes[theirs.opcodeIndex]
        assert ours.index == i
        assert ours.code == builtin_name(max(code.builtinCode, code.deprecatedBuiltinCode))
        assert list(ours.inputs) == list(theirs.inputs)
        assert list(ours.outputs) == list(theirs.outputs)
        assert ours.options == _reference_options(ours.code, theirs)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_agrees_with_the_reference_parser(path: Path) -> None:
    data = path.read_bytes()
    start = time.perf_counter()
    model = read_model(data)
    assert time.perf_counter() - start < 0.05
    assert_matches_reference(data, model)
    assert all(t.dtype in ("int8", "int32") for t in model.tensors)


def test_the_committed_models_cover_the_operators() -> None:
    codes = {op.code for path in MODELS for op in read_model(path.read_bytes()).operators}
    assert codes == {
        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "MEAN", "SUM", "RESHAPE", "TRANSPOSE",
        "FULLY_CONNECTED", "PAD",
    }  # fmt: skip


def test_builtin_name() -> None:
    assert builtin_name(3) == "CONV_2D"
    assert builtin_name(114) == "QUANTIZE"
    assert builtin_name(999) == "BUILTIN_999"


# --- hostile input: patches at places found with the reader's own table walker -------------

MODEL = (DATA / "dw_conv_pool_transpose_fc_8x8.tflite").read_bytes()


def _walk(data: bytes) -> tuple[reader._File, reader._Table, reader._Table]:
    file = reader._File(data)
    model = reader._Table(file, struct.unpack_from("<I", data)[0], "model")
    start, _ = model.span(2, 4, "subgraphs", 10)
    return file, model, file.element(start, 0, "subgraph")


def _element(data: bytes, table_index: int, vector_field: int, k: int) -> reader._Table:
    """Table ``k`` of vector field ``vector_field`` of the model (0) or its subgraph (1)."""
    file, model, subgraph = _walk(data)
    start, _ = (model, subgraph)[table_index].span(vector_field, 4, "v", 1 << 20)
    return file.element(start, k, "element")


def _patch(data: bytes, pos: int, fmt: str, value) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, pos, value)
    return bytes(out)


def _operator(k: int) -> reader._Table:
    return _element(MODEL, 1, 3, k)


def _tensor(k: int) -> reader._Table:
    return _element(MODEL, 1, 0, k)


def _const_tensor() -> int:
    return next(t.index for t in read_model(MODEL).tensors if t.dtype == "int8" and t.is_const)


def _with_custom_code(data: bytes, name: bytes) -> bytes:
    """Operator code 0 replaced by an appended table: custom_code ``name``, builtin CUSTOM."""
    out = bytearray(data + b"\0" * (-len(data) % 4))
    vtable = len(out)
    out += struct.pack("<6H", 12, 16, 0, 4, 0, 8)  # fields 1 (custom_code), 3 (builtin_code)
    table = len(out)
    out += struct.pack("<iIiI", table - vtable, 12, 32, 0)  # the string follows the table
    out += struct.pack("<I", len(name)) + name + b"\0"
    file, model, _ = _walk(data)
    start, _ = model.span(1, 4, "operator codes", 100)
    struct.pack_into("<I", out, start, table - start)
    return bytes(out)


HOSTILE = {
    "bad identifier": (lambda: MODEL[:4] + b"ABCD" + MODEL[8:], ["not a TFLite model"]),
    "root past the end": (lambda: _patch(MODEL, 0, "I", len(MODEL) + 100), ["root offset"]),
    "tiny file": (lambda: MODEL[:7], ["7 bytes"]),
    "huge input vector": (
        lambda: _patch(MODEL, _operator(2).ref(1, "inputs"), "I", 0xFFFFFFFF),
        ["operator 2", "vector of 4294967295 inputs", "past the end"],
    ),
    "missing buffer": (
        lambda: _patch(MODEL, _tensor(3).field(2, 4, "buffer"), "I", 1000),
        ["tensor 3", "buffer 1000 does not exist", "21 buffers"],
    ),
    "data length mismatch": (
        lambda: _patch(
            MODEL,
            _element(MODEL, 0, 4, _tensor(_const_tensor()).scalar(2, "I", 0, "")).ref(0, ""),
            "I",
            3,
        ),
        ["holds 3 bytes", "needs"],
    ),
    "builtin CUSTOM": (
        lambda: _patch(MODEL, _element(MODEL, 0, 1, 0).field(3, 4, ""), "i", 32),
        ["operator 0", "custom operator"],
    ),
    "named custom op": (
        lambda: _with_custom_code(MODEL, b"MyFancyOp"),
        ["operator 0", "custom operator 'MyFancyOp'"],
    ),
    "two subgraphs": (
        lambda: _patch(MODEL, _walk(MODEL)[1].ref(2, ""), "I", 2),
        ["2 subgraphs", "supports one"],
    ),
    "float16 tensor": (
        lambda: _patch(MODEL, _tensor(0).field(1, 1, ""), "b", 1),
        ["tensor 0", "FLOAT16", "not supported"],
    ),
    "rank over the cap": (
        lambda: _patch(MODEL, _tensor(0).ref(0, ""), "I", 9),
        ["tensor 0", "9 shape dimensions", "cap of 8"],
    ),
    "negative scale": (
        lambda: _patch(MODEL, _tensor(0).table(4, "").ref(2, "") + 4, "f", -1.0),
        ["tensor 0", "scale 0 is -1.0"],
    ),
    "options of another op": (
        lambda: _patch(MODEL, _operator(3).field(3, 1, ""), "B", 5),
        ["operator 3", "CONV_2D", "union type 5"],
    ),
    "output index out of range": (
        lambda: _patch(MODEL, _operator(1).ref(2, "") + 4, "i", 77),
        ["operator 1", "outputs[0] = 77", "30 tensors"],
    ),
}


@pytest.mark.parametrize("case", HOSTILE, ids=str)
def test_hostile_patches_name_what_is_wrong(case: str) -> None:
    make, words = HOSTILE[case]
    with pytest.raises(ModelError) as info:
        read_model(make())
    for word in words:
        assert word in info.value.message
    assert info.value.hint


def test_every_truncation_is_refused() -> None:
    for path in MODELS:
        data = path.read_bytes()
        for n in range(0, len(data), 7):
            with pytest.raises(ModelError):
                read_model(data[:n])


# --- fuzz -----------------------------------------------------------------------------------


def _mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    kind = rng.randrange(4)
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            out[rng.randrange(len(out))] = rng.randrange(256)
    elif kind == 1:
        del out[rng.randrange(len(out)) :]
    else:
        for _ in range(rng.randint(1, 3)):
            big = (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, rng.randrange(1 << 16, 1 << 32))
            struct.pack_into("<I", out, 4 * rng.randrange(len(out) // 4), rng.choice(big))
        if kind == 3:  # and a few flipped bits
            for _ in range(rng.randint(1, 4)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return bytes(out)


def _check_invariants(model: Model) -> None:
    """What a returned model promises, however odd the file was."""
    n = len(model.tensors)
    for t in model.tensors:
        assert len(t.shape) <= 8 and all(1 <= d <= 1 << 24 for d in t.shape)
        assert t.numel <= 1 << 26 and t.dtype in DTYPE_SIZES
        assert t.data is None or len(t.data) == t.nbytes
        assert len(t.scales) == len(t.zero_points)
        assert all(math.isfinite(s) and s > 0 for s in t.scales)
    for op in model.operators:
        assert all(i == -1 or 0 <= i < n for i in op.inputs)
        assert all(0 <= i < n for i in (*op.outputs, *model.inputs, *model.outputs))


def test_fuzzed_models_raise_only_model_error() -> None:
    rng = random.Random(20240611)
    seeds = [path.read_bytes() for path in MODELS]
    outcomes = {"model": 0, "error": 0}
    peaks = []
    for i in range(3000):
        data = _mutate(rng, rng.choice(seeds))
        measure = i % 40 == 0
        if measure:
            tracemalloc.start()
        start = time.perf_counter()
        try:
            _check_invariants(read_model(data))
            outcomes["model"] += 1
        except ModelError as error:
            assert error.message and error.hint
            outcomes["error"] += 1
        finally:
            if measure:
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
        assert time.perf_counter() - start < 1.0, f"mutation {i} took too long"
    assert max(peaks) < 64 << 20
    # Both outcomes occur: the mutations hit structure as well as contents.
    assert outcomes["model"] > 100 and outcomes["error"] > 1000, outcomes


def test_vectors_that_add_up_past_the_budget_are_refused(monkeypatch) -> None:
    # Shared or overlapping vectors could otherwise decode the same bytes over and over.
    monkeypatch.setattr(reader, "MAX_DECODED", 50)
    with pytest.raises(ModelError, match="numbers in all"):
        read_model(MODEL)
