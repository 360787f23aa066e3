"""What every operator module gives the generator: a ``Layer`` (one call of one C kernel with
its constant parameters) and the shared checks that turn what TFLM would reject, or what we do
not reproduce, into a ``ModelError`` naming the operator and the reason.

An operator module (``conv.py``, ``pool.py``, ...) has ``CODES`` (the builtin operators it
lowers), ``KERNELS`` (C source of the static kernel functions it needs, by name) and
``lower(op, model) -> Layer``. A new operator touches no existing file but ``ops/__init__``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sparsearch.codegen.graph import Model, ModelError, Operator, Tensor

HINT = (
    "the C target takes int8 models made of CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, "
    "MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, SUM, PAD, RESHAPE, TRANSPOSE and int8 QUANTIZE "
    "(what sparsearch exports, and more); use --target tflm for other models"
)
#: Largest dimension a kernel's parameters hold (uint16 fields).
MAX_DIM = 65535


@dataclass(frozen=True, eq=False)
class Const:
    """A constant array the layer needs in flash: C element type and values (a tuple, or a
    NumPy array for weights: the estimator lowers thousands of candidates)."""

    name: str
    ctype: str  # "int8_t" | "int32_t"
    values: Sequence[int]

    @property
    def nbytes(self) -> int:
        return len(self.values) * (1 if self.ctype == "int8_t" else 4)


@dataclass
class Layer:
    """One step of ``invoke``: kernel ``kernel`` reads ``inputs`` and writes ``output``.

    ``fields``: the kernel's parameter struct initializer in declaration order (C
    expressions; ``&name`` style references to ``consts`` by name). ``alias``: no code, the
    output is the input's bytes (RESHAPE). ``in_place``: the kernel may write its output over
    its input (checked per layer: every output element is written after the last read of the
    input bytes it lands on). ``macs``: multiply-accumulates (or element reads) of one run,
    for the cost model."""

    op: Operator
    kernel: str | None
    inputs: tuple[int, ...]
    output: int
    fields: list[str] = field(default_factory=list)
    consts: list[Const] = field(default_factory=list)
    comment: str = ""
    alias: bool = False
    in_place: bool = False
    macs: int = 0


def fail(op: Operator, why: str) -> ModelError:
    return ModelError(f"operator {op.index} ({op.code}): {why}", HINT)


def activation(model: Model, op: Operator, i: int = 0) -> Tensor:
    """Input ``i`` of ``op``: an int8, per-tensor quantized activation (not a constant)."""
    if i >= len(op.inputs) or op.inputs[i] < 0:
        raise fail(op, f"input {i} is missing")
    t = model.tensor(op.inputs[i])
    _int8_per_tensor(op, t, f"input {i}")
    if t.is_const:
        raise fail(op, f"input {i} is a constant; the C target expects an activation there")
    return t


def output(model: Model, op: Operator) -> Tensor:
    if len(op.outputs) != 1:
        raise fail(op, f"has {len(op.outputs)} outputs, expected 1")
    t = model.tensor(op.outputs[0])
    _int8_per_tensor(op, t, "the output")
    if t.is_const:
        raise fail(op, "the output is a constant tensor")
    return t


def _int8_per_tensor(op: Operator, t: Tensor, what: str) -> None:
    if t.dtype != "int8":
        raise fail(
            op, f"{what} (tensor {t.index}) is {t.dtype}; only int8 activations are supported"
        )
    if len(t.scales) != 1:
        raise fail(
            op,
            f"{what} (tensor {t.index}) has {len(t.scales)} quantization scales; int8 "
            "activations need exactly one (per-tensor)",
        )
    if not -128 <= t.zero_points[0] <= 127:
        raise fail(op, f"{what} (tensor {t.index}) has zero point {t.zero_points[0]}")


def const(model: Model, op: Operator, i: int, dtype: str, optional: bool = False) -> Tensor | None:
    """Input ``i`` of ``op``: a constant of ``dtype`` (None when optional and omitted)."""
    if i >= len(op.inputs) or op.inputs[i] < 0:
        if optional:
            return None
        raise fail(op, f"input {i} is missing")
    t = model.tensor(op.inputs[i])
    if not t.is_const:
        raise fail(op, f"input {i} (tensor {t.index}) must be a constant")
    if t.dtype != dtype:
        raise fail(op, f"input {i} (tensor {t.index}) is {t.dtype}, expected {dtype}")
    return t


def nhwc(op: Operator, t: Tensor, what: str) -> tuple[int, int, int]:
    """(H, W, C) of a 4-D NHWC tensor of batch 1."""
    if len(t.shape) != 4:
        raise fail(op, f"{what} has shape {list(t.shape)}; expected 4-D NHWC")
    n, h, w, c = t.shape
    if n != 1:
        raise fail(op, f"{what} has batch {n}; the C target runs one sample per invoke")
    for d in (h, w, c):
        if not 1 <= d <= MAX_DIM:
            raise fail(op, f"{what} has a dimension of {d} (1..{MAX_DIM} supported)")
    return h, w, c


def weight_values(t: Tensor) -> np.ndarray:
    """The int8 values of a constant weight tensor, as an array (no per-element Python)."""
    assert t.data is not None
    return np.frombuffer(t.data, dtype=np.int8)


def int_values(t: Tensor) -> tuple[int, ...]:
    """The values of a constant integer tensor (int8 or int32)."""
    import struct

    assert t.data is not None
    fmt = {"int8": "b", "int32": "i", "int64": "q", "uint8": "B"}[t.dtype]
    return struct.unpack(f"<{t.numel}{fmt}", t.data)


def fused(op: Operator) -> str:
    act = op.options.get("fused_activation_function", "NONE")
    if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        raise fail(op, f"fused activation {act} is not supported")
    return act


def symmetric_weights(op: Operator, w: Tensor, channels: int) -> tuple[float, ...]:
    """Per-channel (``channels`` scales along the quantized dimension) or per-tensor scales
    of int8 weights with zero points 0 (TFLite's int8 specification)."""
    if len(w.scales) not in (1, channels):
        raise fail(
            op, f"weights (tensor {w.index}) have {len(w.scales)} scales for {channels} channels"
        )
    if any(z != 0 for z in w.zero_points):
        raise fail(op, f"weights (tensor {w.index}) have non-zero zero points (not symmetric int8)")
    return w.scales


def c_int(v: int) -> str:
    """A C literal of an int32 value (INT32_MIN cannot be written as a literal)."""
    return "INT32_MIN" if v == -(2**31) else str(v)


def window_in_place(
    in_hwc: tuple[int, int, int],
    out_hwc: tuple[int, int, int],
    k: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    pad: tuple[int, int],
    depth_mult: int | None,
) -> bool:
    """Whether a windowed kernel (output pixels row by row, channels innermost) may write its
    output over its input: at every output pixel, the lowest input byte still to be read is
    at or after the last output byte written so far. ``depth_mult``: None for a full conv
    (each output channel reads every input channel), else the depthwise multiplier (output
    channel ``o`` reads input channel ``o // depth_mult``; pooling is 1)."""
    h, w, c = in_hwc
    oh, ow, oc = out_hwc
    kh, kw = k

    def first_inside(origin: int, taps: int, dil: int, size: int) -> int | None:
        for t in range(taps):
            v = origin + t * dil
            if 0 <= v < size:
                return v
        return None

    for oy in range(oh):
        y = first_inside(oy * stride[0] - pad[0], kh, dilation[0], h)
        for ox in range(ow):
            x = first_inside(ox * stride[1] - pad[1], kw, dilation[1], w)
            if y is None or x is None:
                continue
            pixel = (oy * ow + ox) * oc
            read = (y * w + x) * c
            if depth_mult is None:
                ok = read >= pixel + oc - 1
            else:  # output channel o reads input channel o // m at read + o // m
                ok = read >= pixel + (oc - 1) - (oc - 1) // depth_mult
            if not ok:
                return False
    return True
