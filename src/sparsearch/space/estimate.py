"""Analytic cost of a candidate on the deployment target (int8 model on TensorFlow Lite Micro).

Pure Python, no torch: the search driver calls ``estimate`` for every candidate, and rejects the
ones over a job's limits before anything is trained.

Model (see DESIGN.md, "The numbers the product promises"), from the structure the runtime shows
rather than a least-squares fit of totals:

- the int8 graph litert-torch exports (``_tflm_graph.lower``), tensor for tensor;
- ``activation_bytes``: TFLM's greedy arena plan of that graph (the arena head);
- ``flash_bytes``: the size of the STRIPPED flatbuffer (what ships, ``worker.tflite.strip``),
  item by item as flatbuffers' builder lays it out (``FLATBUFFER``): per tensor its table, shape
  vector and quantization (a float32 scale + an int64 zero point per channel), per constant its
  buffer (data padded to 4 B), per operator its table, input / output vectors and builtin
  options, per operator code one entry, one vtable per distinct table layout, plus a fixed part
  (model, subgraph, metadata, header). Fitted: ``FLASH_BASE`` and ``FLASH_ZERO_POINT_PAD`` (the
  expected 8-byte alignment padding before a zero-point vector, which depends on the
  converter's tensor order);
- ``ram_bytes`` = activation_bytes + the persistent tail, replayed allocation by allocation as
  TFLM's recording allocator makes them (``HOST64``): the allocator objects, one
  TfLiteEvalTensor per tensor, one NodeAndRegistration per operator, each operator's parsed
  builtin data, its kernel op data and per-channel multiplier / shift arrays (16-byte aligned),
  scratch-buffer handles, and the persistent input / output TfLiteTensors with their
  quantization; struct sizes of the 64-bit host build that measures trials.

Fitted on 48 architectures of the default space (benchmarks/estimator_accuracy.py: Sobol seed
0, 12 per input shape 8x8x1, 28x28x1, 32x32x3, 1x40x1, trained-like random weights and
BatchNorm statistics; litert-torch 0.10.0, ai-edge-litert 2.3.0, tflite-micro
0.dev20261023182759) and judged on 24 others (seed 1). Residuals, flash: fitted worst 0.96 %,
mean |.| 0.17 %; judged worst 0.84 %, mean |.| 0.20 % (the zero-point padding the layout cannot
place, up to about 40 B). RAM: head and tail exact on all 72 nets (and on the six of
tests/space/test_estimate.py). The tail is the 64-bit host's; a 32-bit MCU's is 19-36 % smaller
(``MCU32``, benchmarks/results/estimator_accuracy.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sparsearch.space import _tflm_graph
from sparsearch.space._shapes import Layer, layer_shapes
from sparsearch.space.pruned import effective_arch
from sparsearch.space.spec import ArchSpec, PruningSpec
from sparsearch.vocabulary import STRUCTURED_METHODS

__all__ = ["CostEstimate", "Layer", "estimate", "layer_shapes"]

# -- flash: the stripped flatbuffer ---------------------------------------------------------------


@dataclass(frozen=True)
class FlatbufferLayout:
    """Bytes of each item of a .tflite as flatbuffers' Python builder writes it (layout facts of
    the schema: 4-byte offsets, default-valued scalars omitted, vtables shared between tables of
    equal layout). Measured item by item on stripped exports (appending a copy of a tensor, an
    operator or a buffer and serializing again)."""

    vector_entry: int = 4  # an offset in the subgraph's tensors / operators, the model's buffers
    tensor_activation: int = 20  # table: shape, type, quantization, has_rank (+ its soffset)
    tensor_constant: int = 24  # ... + the buffer index
    quantization: int = 12  # table: scale and zero_point vectors
    quantized_dimension: int = 8  # + quantized_dimension (depthwise weights), with padding
    empty_table: int = 4  # the quantization of an int32 operand, PAD's options
    buffer: int = 12  # table (data offset) + the data vector's length
    operator: int = 20  # table: opcode index, inputs, outputs, options type and offset
    operator_without_options: int = 12  # TRANSPOSE, RESHAPE
    opcode_index: int = 4  # an operator whose code is not the model's first
    operator_code: int = 16  # table: deprecated code, version, builtin code (12: version 1)
    #: options tables (SAME / VALID conv: VALID writes the padding field)
    options: dict[tuple, int] = field(
        default_factory=lambda: {
            ("conv", False): 16,
            ("conv", True): 20,
            ("dw", False): 20,
            ("dw", True): 24,
            ("pool",): 24,
            ("fc", False, False): 4,
            ("fc", True, False): 8,
            ("fc", False, True): 8,
            ("fc", True, True): 8,
            ("reduce", False): 4,
            ("reduce", True): 8,
            ("pad",): 4,
        }
    )
    #: vtables (4 + 2 per field up to the last one set, to 4 B) of the layouts that vary
    vtables: dict[tuple, int] = field(
        default_factory=lambda: {
            ("tensor", False): 24,
            ("tensor", True): 24,
            ("quantization", False): 12,
            ("quantization", True): 20,
            ("operator", True, False): 16,  # (has options, opcode index written)
            ("operator", True, True): 16,
            ("operator", False, False): 12,
            ("operator", False, True): 12,
            ("conv", False): 12,
            ("conv", True): 12,
            ("dw", False): 16,
            ("dw", True): 16,
            ("pool",): 16,
            ("fc", False, False): 0,  # the empty vtable, always present
            ("fc", True, False): 8,
            ("fc", False, True): 12,
            ("fc", True, True): 12,
            ("reduce", False): 0,
            ("reduce", True): 8,
            ("pad",): 0,
            ("operator_code", True): 12,
            ("operator_code", False): 12,
        }
    )
    #: model + subgraph tables and vectors, the two metadata entries and their buffers, the empty
    #: buffer 0, the always-present vtables, root offset and file identifier (280 B by the
    #: layout); the fitted FLASH_BASE adds the alignment padding the layout cannot place.
    base: int = 0
    zero_point_pad: float = 0.0


FLASH_BASE = 326
FLASH_ZERO_POINT_PAD = 2.0
FLATBUFFER = FlatbufferLayout(base=FLASH_BASE, zero_point_pad=FLASH_ZERO_POINT_PAD)
_VERSION_1_OPS = frozenset({"RESHAPE"})


def flatbuffer_terms(g: _tflm_graph.Graph, fb: FlatbufferLayout = FLATBUFFER) -> dict[str, int]:
    """The stripped flatbuffer of ``g`` in parts: ``structure`` (every item the layout places
    exactly), ``zero_point_vectors`` (each may be preceded by 4 B of alignment padding)."""
    a4 = lambda n: -(-n // 4) * 4  # noqa: E731
    size, zp_vectors, vts = 0, 0, set()
    for t in g.tensors:
        size += fb.vector_entry + 4 + 4 * t.rank
        if t.channels:
            size += (4 + 4 * t.channels) + (4 + 8 * t.channels) + fb.quantization
            size += fb.quantized_dimension if t.qdim else 0
            vts.add(("quantization", t.qdim))
            zp_vectors += 1
        else:
            size += fb.empty_table
        size += fb.tensor_constant if t.const else fb.tensor_activation
        vts.add(("tensor", t.const))
        if t.const:  # one buffer per constant tensor (shared operands are one tensor)
            size += fb.vector_entry + fb.buffer + a4(t.nbytes)
    codes: list[str] = []
    for op in g.ops:
        if op.code not in codes:
            codes.append(op.code)
        size += fb.vector_entry + 4 + 4 * len(op.inputs) + 4 + 4 * len(op.outputs)
        size += fb.opcode_index if op.code != codes[0] else 0
        if op.options:
            size += fb.operator + fb.options[op.options]
            vts.add(op.options)
        else:
            size += fb.operator_without_options
        vts.add(("operator", bool(op.options), op.code != codes[0]))
    for code in codes:
        version_1 = code in _VERSION_1_OPS
        size += fb.vector_entry + fb.operator_code - 4 * version_1
        vts.add(("operator_code", not version_1))
    size += sum(fb.vtables[k] for k in vts)
    return {"structure": size, "zero_point_vectors": zp_vectors}


def flash_of_graph(g: _tflm_graph.Graph, fb: FlatbufferLayout = FLATBUFFER) -> int:
    terms = flatbuffer_terms(g, fb)
    return round(fb.base + terms["structure"] + fb.zero_point_pad * terms["zero_point_vectors"])


# -- RAM: TFLM's persistent tail ------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeLayout:
    """Sizes and alignments of what TFLM keeps in the arena's tail. ``HOST64`` is the 64-bit
    host build that measures trials: every size checked against the recording allocator's
    breakdown (EvalTensor, NodeAndRegistration, op data, per-channel arrays, persistent tensors
    and their quantization are what it reports; the rest follows from the totals)."""

    #: allocator, memory planner, builtin-data allocator, subgraph allocations
    fixed: int = 488
    eval_tensor: int = 24  # TfLiteEvalTensor {data*, dims*, type}, per tensor
    node: int = 64  # NodeAndRegistration {TfLiteNode (6 pointers + int), registration*}
    pointer: int = 8  # alignment of those arrays; a ScratchBufferHandle {data*}
    tensor: int = 64  # persistent TfLiteTensor (model input and output)
    quantization: int = 24  # its TfLiteAffineQuantization {scale*, zero_point*, int}
    zero_points: int = 8  # its zero-point TfLiteIntArray (one channel)
    io_pointers: int = 8  # the interpreter's input / output TfLiteTensor* arrays
    #: parsed builtin options (size, alignment); PAD and TRANSPOSE have none
    builtin: dict[str, tuple[int, int]] = field(
        default_factory=lambda: {
            "CONV_2D": (28, 4),
            "DEPTHWISE_CONV_2D": (28, 4),
            "MAX_POOL_2D": (40, 4),
            "FULLY_CONNECTED": (32, 8),
            "MEAN": (1, 1),
            "SUM": (1, 1),
            "RESHAPE": (36, 4),
        }
    )
    #: kernel op data (OpDataConv, OpDataFullyConnected, ...), allocated 16-byte aligned
    op_data: dict[str, int] = field(
        default_factory=lambda: {
            "PAD": 56,
            "CONV_2D": 80,
            "DEPTHWISE_CONV_2D": 80,
            "MAX_POOL_2D": 32,
            "MEAN": 44,
            "SUM": 44,
            "FULLY_CONNECTED": 72,
        }
    )


HOST64 = RuntimeLayout()
#: The same structs on a 32-bit MCU (derived from the layouts, not measured): pointers and
#: size_t of 4 bytes. ``fixed`` is a range (allocator objects are mostly pointers): 244-488.
MCU32 = replace(
    HOST64,
    eval_tensor=12,
    node=32,
    pointer=4,
    tensor=40,
    quantization=12,
    io_pointers=4,
    builtin={**HOST64.builtin, "FULLY_CONNECTED": (24, 4)},
    op_data={**HOST64.op_data, "CONV_2D": 64, "DEPTHWISE_CONV_2D": 64, "FULLY_CONNECTED": 60},
)

#: The recording allocator's names for what it reports; "other" is the rest of the tail.
TAIL_CLASSES = (
    "TfLiteEvalTensor data",
    "NodeAndRegistration struct",
    "Persistent buffer data",
    "Persistent TfLiteTensor data",
    "Persistent TfLiteTensor quantization data",
    "other",
)


def tail_of_graph(g: _tflm_graph.Graph, rt: RuntimeLayout = HOST64) -> dict[str, int]:
    """The tail, allocation by allocation in TFLM's order (each one aligned where the tail
    pointer stands), as bytes per class of ``TAIL_CLASSES`` plus ``total``."""
    used = dict.fromkeys(TAIL_CLASSES, 0)
    at = 0

    def alloc(size: int, align: int, what: str = "other") -> None:
        nonlocal at
        end = -(-(at + size) // align) * align
        used[what] += end - at
        at = end

    alloc(rt.fixed, 1)
    alloc(rt.eval_tensor * len(g.tensors), rt.pointer, TAIL_CLASSES[0])
    alloc(rt.node * len(g.ops), rt.pointer, TAIL_CLASSES[1])
    for op in g.ops:  # builtin data, parsed before any kernel runs
        if op.code in rt.builtin:
            alloc(*rt.builtin[op.code])
    a = _tflm_graph.ARENA_ALIGNMENT
    for op in g.ops:  # kernel Init: op data
        if op.code in rt.op_data:
            alloc(rt.op_data[op.code], a, TAIL_CLASSES[2])
    for op in g.ops:  # kernel Prepare: per-channel output multipliers and shifts
        if op.channels:
            alloc(4 * op.channels, a, TAIL_CLASSES[2])
            alloc(4 * op.channels, a, TAIL_CLASSES[2])
    handles = sum(len(op.scratch) for op in g.ops)
    if handles:
        alloc(rt.pointer * handles, rt.pointer)
    for _ in (g.input, g.output):  # the interpreter's input, then output tensor
        alloc(rt.io_pointers, a, TAIL_CLASSES[2])
        alloc(rt.tensor, rt.pointer, TAIL_CLASSES[3])
        alloc(rt.quantization, rt.pointer, TAIL_CLASSES[4])
        alloc(rt.zero_points, 4, TAIL_CLASSES[4])
    return {**used, "total": at}


# -- the estimate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostEstimate:
    """Predicted deployment cost. Byte fields are plain integers (JSON-safe).

    ``params``: weights + biases of the deployed int8 model (BatchNorm folded into biases);
    ``weight_bytes``: int8 weights + int32 biases; ``nnz_flash_bytes``: the SpArSe count for
    sparse runtimes (non-zero int8 weights + 1-bit-per-weight bitmap + int32 biases).
    """

    flash_bytes: int
    ram_bytes: int
    activation_bytes: int
    macs: int
    params: int
    weight_bytes: int
    nnz_flash_bytes: int
    #: Cortex-M4 instructions of one inference (the ``c`` target's estimate; None for tflm).
    instructions: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nonzero_weights(weights: int, pruning: PruningSpec) -> int:
    if pruning.active and pruning.method not in STRUCTURED_METHODS:
        return math.ceil((1.0 - pruning.level) * weights - 1e-9)
    return weights


def graph_of(
    arch: ArchSpec, pruning: PruningSpec = PruningSpec(), *, channels_last_input: bool = True
) -> _tflm_graph.Graph:
    """The lowered int8 graph of ``arch`` after ``pruning``. Raises SpaceError."""
    return _tflm_graph.lower(layer_shapes(effective_arch(arch, pruning)), channels_last_input)


def tail_breakdown(
    arch: ArchSpec, pruning: PruningSpec = PruningSpec(), rt: RuntimeLayout = HOST64
) -> dict[str, int]:
    """The estimated arena tail of ``arch`` by the recording allocator's classes."""
    return tail_of_graph(graph_of(arch, pruning), rt)


def estimate(
    arch: ArchSpec,
    pruning: PruningSpec = PruningSpec(),
    *,
    channels_last_input: bool = True,
    target: str = "tflm",
    pixel_scale: float | None = 1.0 / 255.0,
) -> CostEstimate:
    """Cost of ``arch`` after ``pruning`` (structured methods shrink it first) on ``target``.

    ``tflm``: the stripped ``.tflite`` and TFLM's arena (below). ``c``: the interpreter-free C
    model as Cortex-M4 firmware (``c_estimate``); ``pixel_scale``: None for data stored as
    floats (``classify`` then takes the int8 input; 8-bit images pay for the preprocessing).
    ``channels_last_input`` models the export with an NHWC int8 input (``to_channel_last_io``);
    False adds the input TRANSPOSE an NCHW export carries. Raises SpaceError for an arch that
    cannot be built.
    """
    if target == "c":
        return c_estimate(arch, pruning, pixel_scale=pixel_scale)
    layers = layer_shapes(effective_arch(arch, pruning))
    graph = _tflm_graph.lower(layers, channels_last_input)
    weights = sum(layer.weights for layer in layers)
    biases = sum(layer.biases for layer in layers)
    head = _tflm_graph.arena_head(_tflm_graph.arena_buffers(graph))
    tail = tail_of_graph(graph)["total"]
    nnz = _nonzero_weights(weights, pruning)
    return CostEstimate(
        flash_bytes=flash_of_graph(graph),
        ram_bytes=head + tail,
        activation_bytes=head,
        macs=sum(layer.macs for layer in layers),
        params=weights + biases,
        weight_bytes=weights + 4 * biases,
        nnz_flash_bytes=nnz + math.ceil(weights / 8) + 4 * biases,
    )


def c_estimate(
    arch: ArchSpec, pruning: PruningSpec = PruningSpec(), *, pixel_scale: float | None = 1 / 255
) -> CostEstimate:
    """The C target's cost: the candidate as the graph the generator reads (``_c_graph``,
    checked equal to the export's), lowered and planned by ``codegen`` itself (the static
    buffer is the generator's to the byte), costed by ``codegen.cost`` (flash, stack and
    instructions of the compiled kernels: one toolchain's tables)."""
    from sparsearch.codegen import cost, passes
    from sparsearch.space._c_graph import model_of

    layers = layer_shapes(effective_arch(arch, pruning))
    model = model_of(layers)
    c, h, w = arch.input_shape
    pre = cost.classify_of(model, source_hwc=(h, w, c), pixel_scale=pixel_scale)
    got = cost.c_cost(model, passes.layers(model), classify=pre)
    weights = sum(layer.weights for layer in layers)
    biases = sum(layer.biases for layer in layers)
    return CostEstimate(
        flash_bytes=got.flash_bytes,
        ram_bytes=got.ram_bytes,
        activation_bytes=got.static_ram_bytes,
        macs=sum(layer.macs for layer in layers),
        params=weights + biases,
        weight_bytes=weights + 4 * biases,
        nnz_flash_bytes=_nonzero_weights(weights, pruning) + math.ceil(weights / 8) + 4 * biases,
        instructions=got.instructions,
    )
