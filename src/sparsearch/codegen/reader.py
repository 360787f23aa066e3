"""Read a ``.tflite`` flatbuffer (schema ``tensorflow/lite/schema/schema.fbs``) into ``graph``.

Pure Python on ``struct``: the generator must not need the TFLite runtime, and the file may
come from a user, so it is treated as hostile. Every offset is checked against the file
before it is followed, every vector length times its element size against the bytes left
before anything is allocated or looped over, and every count against a cap; whatever is
wrong raises ``ModelError`` naming the table and field, never IndexError or struct.error.
The schema's nesting is fixed (Model -> SubGraph -> Tensor -> QuantizationParameters), so
it is read by fixed-depth code: an offset cycle cannot cause recursion.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from sparsearch.codegen.graph import DTYPE_SIZES, Model, ModelError, Operator, Tensor

MIN_FILE_BYTES = 8
MAX_FILE_BYTES = 64 << 20
MAX_TENSORS = 4096
MAX_OPERATORS = 4096
MAX_BUFFERS = 4096
MAX_OPERATOR_CODES = 4096
MAX_RANK = 8
MAX_DIM = 1 << 24
MAX_NUMEL = 1 << 26
#: Tensor indices an operator (or the subgraph) lists as inputs or outputs.
MAX_IO = 4096
#: Per-channel quantization entries of one tensor (channels of a layer).
MAX_CHANNELS = 1 << 16
#: Numbers decoded from all vectors together: each becomes a Python object several times
#: its stored size, so vectors that overlap or are shared must not multiply the memory.
MAX_DECODED = 1 << 20

_MALFORMED = "the file is truncated or corrupted; export the model to .tflite again"
_UNSUPPORTED = "export the model as an int8 TFLite model that uses builtin operators only"
_IDENTIFIER = b"TFL3"

_BUILTIN_NAMES = {
    0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D", 4: "DEPTHWISE_CONV_2D",
    6: "DEQUANTIZE", 9: "FULLY_CONNECTED", 14: "LOGISTIC", 17: "MAX_POOL_2D", 18: "MUL",
    19: "RELU", 21: "RELU6", 22: "RESHAPE", 25: "SOFTMAX", 28: "TANH", 32: "CUSTOM", 34: "PAD",
    39: "TRANSPOSE", 40: "MEAN", 41: "SUB", 43: "SQUEEZE", 45: "STRIDED_SLICE", 74: "SUM",
    114: "QUANTIZE",
}  # fmt: skip
_CUSTOM = 32

#: TensorType enum: the names (for messages) and the dtypes graph.py knows.
_TYPE_NAMES = (
    "FLOAT32", "FLOAT16", "INT32", "UINT8", "INT64", "STRING", "BOOL", "INT16", "COMPLEX64",
    "INT8", "FLOAT64", "COMPLEX128", "UINT64", "RESOURCE", "VARIANT", "UINT32", "UINT16",
    "INT4", "BFLOAT16",
)  # fmt: skip
_DTYPES = {0: "float32", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}

_ENUMS = {
    "padding": ("SAME", "VALID"),
    "activation": ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT"),
    "weights_format": ("DEFAULT", "SHUFFLED4x16INT8"),
}

# Builtin options by operator: (union tag, ((field index, key, kind, default), ...)).
# Kinds: an _ENUMS name (stored as int8), "int" (int32), "bool", "float" (float32), "shape".
_CONV_FIELDS = (
    (0, "padding", "padding", 0), (1, "stride_w", "int", 0), (2, "stride_h", "int", 0),
    (3, "fused_activation_function", "activation", 0), (4, "dilation_w_factor", "int", 1),
    (5, "dilation_h_factor", "int", 1),
)  # fmt: skip
_DEPTHWISE_FIELDS = (
    (0, "padding", "padding", 0), (1, "stride_w", "int", 0), (2, "stride_h", "int", 0),
    (3, "depth_multiplier", "int", 0), (4, "fused_activation_function", "activation", 0),
    (5, "dilation_w_factor", "int", 1), (6, "dilation_h_factor", "int", 1),
)  # fmt: skip
_POOL_FIELDS = (
    (0, "padding", "padding", 0), (1, "stride_w", "int", 0), (2, "stride_h", "int", 0),
    (3, "filter_width", "int", 0), (4, "filter_height", "int", 0),
    (5, "fused_activation_function", "activation", 0),
)  # fmt: skip
_FC_FIELDS = (
    (0, "fused_activation_function", "activation", 0), (1, "weights_format", "weights_format", 0),
    (2, "keep_num_dims", "bool", 0), (3, "asymmetric_quantize_inputs", "bool", 0),
)  # fmt: skip
_REDUCER = (27, ((0, "keep_dims", "bool", 0),))
_OPTIONS: dict[str, tuple[int, tuple[tuple[int, str, str, Any], ...]]] = {
    "CONV_2D": (1, _CONV_FIELDS),
    "DEPTHWISE_CONV_2D": (2, _DEPTHWISE_FIELDS),
    "MAX_POOL_2D": (5, _POOL_FIELDS),
    "AVERAGE_POOL_2D": (5, _POOL_FIELDS),
    "FULLY_CONNECTED": (8, _FC_FIELDS),
    "SOFTMAX": (9, ((0, "beta", "float", 0.0),)),
    "RESHAPE": (17, ((0, "new_shape", "shape", None),)),
    "PAD": (22, ()),
    "TRANSPOSE": (26, ()),  # schema.fbs: TransposeOptions is union member 26
    "MEAN": _REDUCER,
    "SUM": _REDUCER,
}

_STRUCTS = {f: struct.Struct("<" + f) for f in "bBHiIqQf"}
_U32 = _STRUCTS["I"]
_VTABLE_HEADER = struct.Struct("<HH")  # vtable size, table size


def builtin_name(code: int) -> str:
    """The schema name of BuiltinOperator ``code`` (``BUILTIN_<code>`` for ones we don't list)."""
    return _BUILTIN_NAMES.get(code, f"BUILTIN_{code}")


def _enum_name(kind: str, value: int) -> str:
    names = _ENUMS[kind]
    return names[value] if 0 <= value < len(names) else f"UNKNOWN_{value}"


class _File:
    """The bytes plus the running total of decoded numbers and copied constant bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)
        self.decoded = 0
        self.copied = 0

    def need(self, pos: int, nbytes: int, ctx: str, what: str) -> None:
        if pos < 0 or pos + nbytes > self.size:
            raise ModelError(
                f"{ctx}: {what} at byte {pos} runs past the end of the file ({self.size} bytes)",
                _MALFORMED,
            )

    def scalar(self, fmt: str, pos: int, ctx: str, what: str) -> Any:
        s = _STRUCTS[fmt]
        self.need(pos, s.size, ctx, what)
        return s.unpack_from(self.data, pos)[0]

    def span(self, pos: int, elem_size: int, ctx: str, what: str, cap: int) -> tuple[int, int]:
        """A vector at ``pos``: (first element's position, count), checked, nothing read."""
        count = self.scalar("I", pos, ctx, f"length of {what}")
        if pos + 4 + count * elem_size > self.size:
            raise ModelError(
                f"{ctx}: vector of {count} {what} runs past the end of the file at byte {pos}",
                _MALFORMED,
            )
        if count > cap:
            raise ModelError(f"{ctx}: {count} {what}, over the cap of {cap}", _UNSUPPORTED)
        return pos + 4, count

    def numbers(self, fmt: str, pos: int, ctx: str, what: str, cap: int) -> tuple[Any, ...]:
        start, count = self.span(pos, _STRUCTS[fmt].size, ctx, what, cap)
        self.decoded += count
        if self.decoded > MAX_DECODED:
            raise ModelError(
                f"{ctx}: the model's vectors hold more than {MAX_DECODED} numbers in all "
                "(vectors that overlap or are shared?)",
                _MALFORMED,
            )
        return struct.unpack_from(f"<{count}{fmt}", self.data, start)

    def element(self, start: int, k: int, ctx: str) -> _Table:
        """Table ``k`` of a vector of tables (each element an offset from its own position)."""
        pos = start + 4 * k
        target = pos + _U32.unpack_from(self.data, pos)[0]  # in the file: span() checked it
        return _Table(self, target, ctx)


class _Table:
    """A table at ``pos``: its vtable checked once, fields looked up by schema index."""

    __slots__ = ("file", "pos", "ctx", "vtable", "vtable_size", "table_size")

    def __init__(self, file: _File, pos: int, ctx: str) -> None:
        self.file, self.pos, self.ctx = file, pos, ctx
        vtable = pos - file.scalar("i", pos, ctx, "table")
        if vtable < 0 or vtable + 4 > file.size:
            raise ModelError(
                f"{ctx}: the table at byte {pos} points to a vtable at byte {vtable}, "
                f"outside the file ({file.size} bytes)",
                _MALFORMED,
            )
        self.vtable = vtable
        self.vtable_size, self.table_size = _VTABLE_HEADER.unpack_from(file.data, vtable)
        file.need(vtable, self.vtable_size, ctx, f"vtable of {self.vtable_size} bytes")
        file.need(pos, max(self.table_size, 4), ctx, f"table of {self.table_size} bytes")

    def field(self, index: int, nbytes: int, name: str) -> int | None:
        """The absolute position of field ``index``, or None when it is absent (default)."""
        slot = 4 + 2 * index
        if slot + 2 > self.vtable_size:
            return None
        offset = _STRUCTS["H"].unpack_from(self.file.data, self.vtable + slot)[0]
        if offset == 0:
            return None
        if offset + nbytes > self.table_size:
            raise ModelError(
                f"{self.ctx}: field {name} at offset {offset} lies outside its table of "
                f"{self.table_size} bytes at byte {self.pos}",
                _MALFORMED,
            )
        return self.pos + offset

    def scalar(self, index: int, fmt: str, default: Any, name: str) -> Any:
        pos = self.field(index, _STRUCTS[fmt].size, name)
        return default if pos is None else _STRUCTS[fmt].unpack_from(self.file.data, pos)[0]

    def ref(self, index: int, name: str) -> int | None:
        """Where a table, vector or string field points (offset from the field itself)."""
        pos = self.field(index, 4, name)
        if pos is None:
            return None
        target = pos + _U32.unpack_from(self.file.data, pos)[0]
        self.file.need(target, 4, self.ctx, name)
        return target

    def table(self, index: int, name: str) -> _Table | None:
        pos = self.ref(index, name)
        return None if pos is None else _Table(self.file, pos, self.ctx)

    def numbers(self, index: int, fmt: str, name: str, cap: int) -> tuple[Any, ...] | None:
        pos = self.ref(index, name)
        return None if pos is None else self.file.numbers(fmt, pos, self.ctx, name, cap)

    def span(self, index: int, elem_size: int, name: str, cap: int) -> tuple[int, int]:
        """(start, count) of a vector field; (0, 0) when absent."""
        pos = self.ref(index, name)
        return (0, 0) if pos is None else self.file.span(pos, elem_size, self.ctx, name, cap)

    def string(self, index: int, name: str) -> str | None:
        """The string's first 200 characters (for messages), or None when absent."""
        pos = self.ref(index, name)
        if pos is None:
            return None
        start, count = self.file.span(pos, 1, self.ctx, name, MAX_FILE_BYTES)
        return self.file.data[start : start + min(count, 200)].decode("utf-8", "replace")


def read_model(data: bytes) -> Model:
    """The graph of the ``.tflite`` file ``data``; ``ModelError`` if it is malformed or uses
    something the C generator cannot handle (custom ops, sparse tensors, subgraphs, ...)."""
    size = len(data)
    if size < MIN_FILE_BYTES:
        raise ModelError(f"the model file has {size} bytes, too few for a TFLite model", _MALFORMED)
    if size > MAX_FILE_BYTES:
        raise ModelError(
            f"the model file has {size} bytes, over the cap of {MAX_FILE_BYTES} (64 MiB)",
            "a model for a microcontroller should be far smaller; check that this is the model",
        )
    file = _File(bytes(data))
    root = file.scalar("I", 0, "the model", "root offset")
    if root < 4 or root + 4 > size:
        raise ModelError(
            f"the model's root offset {root} points outside the file ({size} bytes)", _MALFORMED
        )
    # The identifier is optional in flatbuffers; when absent, bytes 4..8 hold vtable or
    # padding bytes, which are never all printable, so printable bytes other than TFL3 mean
    # another kind of flatbuffer.
    identifier = file.data[4:8]
    if root >= 8 and identifier != _IDENTIFIER and all(32 <= b < 127 for b in identifier):
        raise ModelError(
            f"not a TFLite model: the file identifier is {identifier.decode()!r}, not 'TFL3'",
            "pass a .tflite file",
        )
    model = _Table(file, root, "the model")

    sub_start, sub_count = model.span(2, 4, "subgraphs", MAX_FILE_BYTES)
    if sub_count != 1:
        raise ModelError(
            f"the model has {sub_count} subgraphs; the C generator supports one",
            "export a model without control flow (one graph)" if sub_count else _MALFORMED,
        )
    subgraph = file.element(sub_start, 0, "subgraph 0")
    tensors = _read_tensors(file, subgraph, _read_buffers(file, model))
    codes = _read_operator_codes(file, model)

    op_start, op_count = subgraph.span(3, 4, "operators", MAX_OPERATORS)
    operators = tuple(
        _read_operator(file.element(op_start, i, f"operator {i}"), i, codes, len(tensors))
        for i in range(op_count)
    )
    inputs = _indices(subgraph, 1, "inputs", len(tensors), allow_omitted=False)
    outputs = _indices(subgraph, 2, "outputs", len(tensors), allow_omitted=False)
    return Model(tensors, operators, inputs, outputs, size=size)


def _read_buffers(file: _File, model: _Table) -> list[tuple[int, int]]:
    """Every buffer's data (start, length), checked even where no tensor uses it (a cut or
    bent buffer table is an error, as in TFLite's verifier); tensors copy the bytes."""
    start, count = model.span(4, 4, "buffers", MAX_BUFFERS)
    spans = []
    for index in range(count):
        buffer = file.element(start, index, f"buffer {index}")
        offset = buffer.scalar(1, "Q", 0, "offset")
        if offset > 1:
            raise ModelError(
                f"buffer {index}: its data lies outside the flatbuffer (offset {offset})",
                "export the model without external buffers (a model under 2 GB needs none)",
            )
        spans.append(buffer.span(0, 1, "data bytes", MAX_FILE_BYTES))
    return spans


def _read_tensors(
    file: _File, subgraph: _Table, buffers: list[tuple[int, int]]
) -> tuple[Tensor, ...]:
    start, count = subgraph.span(0, 4, "tensors", MAX_TENSORS)
    tensors = []
    copies: dict[int, bytes] = {}  # by buffer: tensors that share one share its bytes
    for i in range(count):
        ctx = f"tensor {i}"
        table = file.element(start, i, ctx)
        shape = table.numbers(0, "i", "shape dimensions", MAX_RANK) or ()
        numel = 1
        for axis, dim in enumerate(shape):
            if not 1 <= dim <= MAX_DIM:
                raise ModelError(
                    f"{ctx}: dimension {axis} of shape {list(shape)} is {dim}; "
                    f"dimensions must be 1..{MAX_DIM}",
                    _UNSUPPORTED,
                )
            numel *= dim
        if numel > MAX_NUMEL:
            raise ModelError(
                f"{ctx}: shape {list(shape)} has {numel} elements, over the cap of {MAX_NUMEL}",
                _UNSUPPORTED,
            )
        type_code = table.scalar(1, "b", 0, "type")
        if type_code not in _DTYPES:
            name = _TYPE_NAMES[type_code] if 0 <= type_code < len(_TYPE_NAMES) else type_code
            raise ModelError(
                f"{ctx}: tensor type {name} is not supported "
                f"(supported: {', '.join(sorted(DTYPE_SIZES))})",
                _UNSUPPORTED,
            )
        dtype = _DTYPES[type_code]
        if table.field(6, 4, "sparsity") is not None:
            raise ModelError(f"{ctx}: sparse tensors are not supported", _UNSUPPORTED)
        quantization = table.table(4, "quantization")
        scales, zero_points, qdim = _read_quantization(quantization, shape, ctx)
        buffer = table.scalar(2, "I", 0, "buffer")
        if buffer >= len(buffers):
            raise ModelError(
                f"{ctx}: buffer {buffer} does not exist (the model has {len(buffers)} buffers)",
                _MALFORMED,
            )
        data_start, data_len = buffers[buffer]
        nbytes = numel * DTYPE_SIZES[dtype]
        if data_len and data_len != nbytes:
            raise ModelError(
                f"{ctx}: buffer {buffer} holds {data_len} bytes, but shape {list(shape)} of "
                f"{dtype} needs {nbytes}",
                _MALFORMED,
            )
        if data_len and buffer not in copies:
            # Buffers may point at overlapping bytes; copying more than the file's size in
            # all could only come from that, and would multiply the memory.
            file.copied += data_len
            if file.copied > file.size:
                raise ModelError(
                    f"{ctx}: the buffers hold more bytes in all than the file has "
                    "(buffers that overlap?)",
                    _MALFORMED,
                )
            copies[buffer] = file.data[data_start : data_start + data_len]
        data = copies.get(buffer) if data_len else None
        tensors.append(Tensor(i, shape, dtype, scales, zero_points, qdim, data))
    return tuple(tensors)


def _read_quantization(
    table: _Table | None, shape: tuple[int, ...], ctx: str
) -> tuple[tuple[float, ...], tuple[int, ...], int]:
    if table is None:
        return (), (), 0
    if table.scalar(4, "B", 0, "details_type") != 0:
        raise ModelError(f"{ctx}: custom quantization details are not supported", _UNSUPPORTED)
    qdim = table.scalar(6, "i", 0, "quantized_dimension")
    scales = table.numbers(2, "f", "scales", MAX_CHANNELS) or ()
    zero_points = table.numbers(3, "q", "zero points", MAX_CHANNELS)
    if zero_points is None:
        zero_points = (0,) * len(scales)
    if len(zero_points) != len(scales):
        raise ModelError(
            f"{ctx}: {len(scales)} scales but {len(zero_points)} zero points", _MALFORMED
        )
    if qdim < 0 or (len(scales) > 1 and qdim >= len(shape)):
        raise ModelError(
            f"{ctx}: quantized dimension {qdim} is not an axis of shape {list(shape)}", _MALFORMED
        )
    if len(scales) > 1 and len(scales) != shape[qdim]:
        raise ModelError(
            f"{ctx}: {len(scales)} scales along dimension {qdim} of size {shape[qdim]}",
            _MALFORMED,
        )
    for k, scale in enumerate(scales):
        if not (math.isfinite(scale) and scale > 0):
            raise ModelError(
                f"{ctx}: scale {k} is {scale}; scales must be finite and > 0", _MALFORMED
            )
    return scales, zero_points, qdim


def _read_operator_codes(file: _File, model: _Table) -> list[tuple[int, str | None]]:
    """(builtin code, custom code or None) of every operator code."""
    start, count = model.span(1, 4, "operator codes", MAX_OPERATOR_CODES)
    codes = []
    for index in range(count):
        table = file.element(start, index, f"operator code {index}")
        # Codes over 127 live only in builtin_code; older files fill only the deprecated
        # int8 field, so the larger of the two is the code.
        deprecated = table.scalar(0, "b", 0, "deprecated_builtin_code")
        code = max(deprecated, table.scalar(3, "i", 0, "builtin_code"))
        codes.append((code, table.string(1, "custom_code")))
    return codes


def _indices(
    table: _Table, index: int, name: str, n_tensors: int, *, allow_omitted: bool
) -> tuple[int, ...]:
    values = table.numbers(index, "i", name, MAX_IO) or ()
    for k, value in enumerate(values):
        if not (0 <= value < n_tensors or (allow_omitted and value == -1)):
            raise ModelError(
                f"{table.ctx}: {name}[{k}] = {value} is not a tensor index "
                f"(the model has {n_tensors} tensors)",
                _MALFORMED,
            )
    return values


def _read_operator(
    table: _Table, index: int, codes: list[tuple[int, str | None]], n_tensors: int
) -> Operator:
    code_index = table.scalar(0, "I", 0, "opcode_index")
    if code_index >= len(codes):
        raise ModelError(
            f"{table.ctx}: operator code {code_index} does not exist "
            f"(the model has {len(codes)} operator codes)",
            _MALFORMED,
        )
    builtin, custom = codes[code_index]
    if custom is not None or builtin == _CUSTOM:
        name = "without a custom_code" if custom is None else repr(custom)
        raise ModelError(f"{table.ctx}: custom operator {name} is not supported", _UNSUPPORTED)
    code = builtin_name(builtin)
    inputs = _indices(table, 1, "inputs", n_tensors, allow_omitted=True)
    outputs = _indices(table, 2, "outputs", n_tensors, allow_omitted=False)
    return Operator(index, code, inputs, outputs, _read_options(table, code))


def _read_options(op: _Table, code: str) -> dict[str, Any]:
    if code not in _OPTIONS:
        return {}  # the generator refuses the op by name, or it has no options we use
    tag, fields = _OPTIONS[code]
    union_type = op.scalar(3, "B", 0, "builtin_options_type")
    table = op.table(4, "builtin_options")
    if union_type not in (0, tag) or (union_type == 0 and table is not None):
        raise ModelError(
            f"{op.ctx}: {code} carries builtin options of union type {union_type}, expected {tag}",
            _MALFORMED,
        )
    options: dict[str, Any] = {}
    for index, key, kind, default in fields:
        if kind == "shape":
            value = None if table is None else table.numbers(index, "i", key, MAX_RANK)
        elif kind == "float":
            value = default if table is None else table.scalar(index, "f", default, key)
        else:
            fmt = "i" if kind == "int" else "b"
            value = default if table is None else table.scalar(index, fmt, default, key)
            value = bool(value) if kind == "bool" else value
            value = _enum_name(kind, value) if kind in _ENUMS else value
        options[key] = value
    return options
