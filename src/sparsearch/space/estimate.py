"""Analytic cost of a candidate on the deployment target (int8 model on TensorFlow Lite Micro).

Pure Python, no torch: the search driver calls ``estimate`` for every candidate, and rejects the
ones over a job's limits before anything is trained.

Model (see DESIGN.md, "The numbers the product promises"):
- the int8 graph litert-torch exports (``_tflm_graph.lower``): BN folded into an int32 bias per
  output channel, ReLU fused, PAD / TRANSPOSE / RESHAPE / MEAN where the converter adds them;
- ``activation_bytes``: TFLM's greedy arena plan of that graph (exact on the measured table);
- ``ram_bytes`` = activation_bytes + the runtime's persistent tail;
- ``flash_bytes`` = constant data (weights, biases, shape operands) + flatbuffer overhead;
- a one-row model input (``_shapes``: 1 x k convs, 1 x 2 pooling) is costed by the same rules.
The overhead constants are fitted to the four nets measured in DESIGN.md's table (litert-torch
0.10 int8 export, tflite-micro recording allocator on a 64-bit host). Fit residuals: flash
+2.6 / +0.8 / +7.6 / -9.8 %, tail 0 / +12 / 0 / -12 B, head exact, for rows 1-4.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from sparsearch.space import _tflm_graph
from sparsearch.space._shapes import Layer, layer_shapes
from sparsearch.space.spec import STRUCTURED_METHODS, ArchSpec, PruningSpec, effective_arch

__all__ = ["CostEstimate", "Layer", "estimate", "layer_shapes"]

# Flatbuffer overhead. Per quantized channel: a float32 scale + an int64 zero point, on both the
# weight and the bias tensor of a layer (layout fact, not fitted). The base (model header,
# signature, metadata, operator codes), per-operator and per-tensor costs (tables, shape
# vectors, names, per-tensor quantization) are least-squares fits to the table's .tflite sizes.
FLASH_BASE = 1830
FLASH_PER_OP = 80
FLASH_PER_TENSOR = 125
FLASH_PER_QUANT_CHANNEL = 12

# Arena tail (persistent runtime structures on a 64-bit host). Per tensor: one TfLiteEvalTensor
# (24 B); per operator: TfLiteNode + registration pointer (64 B); per output channel of a
# conv/depthwise/dense: int32 multiplier + int32 shift (8 B). Base and the kernels' op data
# (conv params + OpDataConv, pooling op data) are fitted to the table's tails.
TAIL_BASE = 904
TAIL_PER_OP = 64
TAIL_PER_TENSOR = 24
TAIL_PER_CHANNEL = 8
TAIL_OP_STATE = {"CONV_2D": 148, "DEPTHWISE_CONV_2D": 148, "MAX_POOL_2D": 40}


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _nonzero_weights(weights: int, pruning: PruningSpec) -> int:
    if pruning.active and pruning.method not in STRUCTURED_METHODS:
        return math.ceil((1.0 - pruning.level) * weights - 1e-9)
    return weights


def estimate(
    arch: ArchSpec, pruning: PruningSpec = PruningSpec(), *, channels_last_input: bool = True
) -> CostEstimate:
    """Cost of ``arch`` after ``pruning`` (structured methods shrink it first).

    ``channels_last_input`` models the export with an NHWC int8 input (``to_channel_last_io``);
    False adds the input TRANSPOSE an NCHW export carries. Raises SpaceError for an arch that
    cannot be built.
    """
    layers = layer_shapes(effective_arch(arch, pruning))
    graph = _tflm_graph.lower(layers, channels_last_input)

    weights = sum(layer.weights for layer in layers)
    biases = sum(layer.biases for layer in layers)
    weight_bytes = weights + 4 * biases
    const_bytes = sum(t.nbytes for t in graph.tensors if t.const)

    n_ops, n_tensors = len(graph.ops), len(graph.tensors)
    flash = (
        const_bytes
        + FLASH_BASE
        + FLASH_PER_OP * n_ops
        + FLASH_PER_TENSOR * n_tensors
        + FLASH_PER_QUANT_CHANNEL * sum(t.channels for t in graph.tensors)
    )
    head = _tflm_graph.arena_head(_tflm_graph.arena_buffers(graph))
    tail = (
        TAIL_BASE
        + TAIL_PER_OP * n_ops
        + TAIL_PER_TENSOR * n_tensors
        + TAIL_PER_CHANNEL * sum(op.channels for op in graph.ops)
        + sum(TAIL_OP_STATE.get(op.code, 0) for op in graph.ops)
    )
    nnz = _nonzero_weights(weights, pruning)
    return CostEstimate(
        flash_bytes=flash,
        ram_bytes=head + tail,
        activation_bytes=head,
        macs=sum(layer.macs for layer in layers),
        params=weights + biases,
        weight_bytes=weight_bytes,
        nnz_flash_bytes=nnz + math.ceil(weights / 8) + 4 * biases,
    )
