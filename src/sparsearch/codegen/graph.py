"""The typed graph the generator works on: what an int8 ``.tflite`` holds, read once.

``reader.read_model`` builds it from the flatbuffer (checking every offset and size); the
operator modules (``ops/``) resolve and emit it; nothing here knows the flatbuffer layout.
Shapes are TFLite's (NHWC activations; conv filters O x H x W x I; depthwise 1 x H x W x O;
fully-connected O x I). Scales are the flatbuffer's float32 values held as Python floats
(exactly: a float32 converts to a double without loss), which is what TFLM computes with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sparsearch.errors import SparsearchError

#: TensorType names of the schema (the ones a model of ours may hold; others are refused by
#: name in ``reader``).
DTYPE_SIZES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8, "float32": 4}


class ModelError(SparsearchError):
    """A ``.tflite`` that cannot be read (malformed, truncated, hostile) or that uses an
    operator, type or quantization the C generator does not support. ``message`` names what."""


@dataclass(frozen=True)
class Tensor:
    index: int
    shape: tuple[int, ...]
    dtype: str
    #: Quantization: per-tensor (one entry) or per-channel along ``quantized_dimension``;
    #: empty for unquantized tensors (int32 shapes, axes, paddings).
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()
    quantized_dimension: int = 0
    #: The constant contents (little-endian, as stored), or None for an activation.
    data: bytes | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * DTYPE_SIZES[self.dtype]

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class Operator:
    index: int
    #: The builtin operator's schema name (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ...).
    code: str
    inputs: tuple[int, ...]  # tensor indices; -1 marks an omitted optional input
    outputs: tuple[int, ...]
    #: The builtin options table's fields by schema name (``padding``: "SAME" | "VALID",
    #: ``stride_w``, ``fused_activation_function``: "NONE" | "RELU" | "RELU6" |
    #: "RELU_N1_TO_1", ``keep_dims``, ...), defaults filled in.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Model:
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    #: The flatbuffer's size in bytes (the TFLM target's flash).
    size: int = 0

    def tensor(self, i: int) -> Tensor:
        return self.tensors[i]
