"""TFLM's integer requantization, computed at generation time exactly as the runtime does.

``quantize_multiplier`` is ``QuantizeMultiplier`` (tensorflow/lite/kernels/internal/
quantization_util.cc): frexp of a double, the mantissa rounded half away from zero to Q31.
``multiply_by_quantized_multiplier`` is the reference ``MultiplyByQuantizedMultiplier`` (the
double-rounding variant TFLM builds by default: ``SaturatingRoundingDoublingHighMul`` then
``RoundingDivideByPOT``), in Python for the tests and the MEAN rescaling; the generated C has
the same function. Scales are float32 values held as Python floats; where TFLM multiplies
two float32 scales in float32 first, ``f32`` rounds the product the same way.
"""

from __future__ import annotations

import math
import struct

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
#: The fused activations our kernels clamp with (TfLiteFusedActivation names).
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def f32(x: float) -> float:
    """``x`` rounded to the nearest float32 (C's ``(float)x``)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _round_half_away(x: float) -> int:
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(Q31 multiplier, shift) with ``real ~= multiplier * 2**(shift - 31)``."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = _round_half_away(q * (1 << 31))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    return q_fixed, shift


def per_channel_multipliers(
    input_scale: float, filter_scales: tuple[float, ...], output_scale: float
) -> list[tuple[int, int]]:
    """PopulateConvolutionQuantizationParams (conv, depthwise, per-channel fully connected):
    ``double(input) * double(filter[c]) / double(output)``."""
    return [quantize_multiplier(input_scale * f / output_scale) for f in filter_scales]


def per_tensor_multiplier(
    input_scale: float, filter_scale: float, output_scale: float
) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler (per-tensor fully connected): the float32 product of
    the input and filter scales, then divided in double."""
    return quantize_multiplier(f32(input_scale * filter_scale) / output_scale)


def _srdhm(a: int, b: int) -> int:
    if a == b == INT32_MIN:
        return INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return _trunc_div(ab + nudge, 1 << 31)


def _trunc_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _wrap32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def _rounding_divide_by_pot(x: int, exponent: int) -> int:
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def multiply_by_quantized_multiplier(x: int, multiplier: int, shift: int) -> int:
    """The reference ``MultiplyByQuantizedMultiplier(int32 x, int32 m, int shift)``."""
    left = shift if shift > 0 else 0
    right = 0 if shift > 0 else -shift
    return _rounding_divide_by_pot(_srdhm(_wrap32(x * (1 << left)), multiplier), right)


def quantize(value: float, scale: float, zero_point: int) -> int:
    """TFLM's ``zero_point + round(f / scale)`` in float32 (activation bounds)."""
    return zero_point + _round_half_away(f32(f32(value) / scale))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """CalculateActivationRangeQuantized for int8 outputs: the [min, max] a fused activation
    clamps to."""
    lo, hi = -128, 127
    if activation == "RELU":
        lo = max(lo, quantize(0.0, scale, zero_point))
    elif activation == "RELU6":
        lo = max(lo, quantize(0.0, scale, zero_point))
        hi = min(hi, quantize(6.0, scale, zero_point))
    elif activation == "RELU_N1_TO_1":
        lo = max(lo, quantize(-1.0, scale, zero_point))
        hi = min(hi, quantize(1.0, scale, zero_point))
    return lo, hi


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """QuantizedMeanOrSum's rescaling for a mean over ``count`` elements: the 1/count factor
    folded into the multiplier (tensorflow/lite/kernels/internal/reference/reduce.h)."""
    s = min(count.bit_length() - 1, 32, 31 + shift)  # >= 0: shift >= -31
    return _trunc_div(multiplier << s, count), shift - s
