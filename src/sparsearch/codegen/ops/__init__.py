"""Operator registry: builtin operator name -> the module that lowers it.

Every module has ``CODES``, ``KERNELS`` (C source by kernel name) and ``lower(op, model)``;
``REQUIRES`` lists the shared C pieces each kernel uses (emitted once, in this order)."""

from __future__ import annotations

from types import ModuleType

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops import conv, fully_connected, pool, quantize, reduce, shape
from sparsearch.codegen.ops.base import HINT, Const, Layer, fail

_MODULES: tuple[ModuleType, ...] = (conv, fully_connected, pool, quantize, reduce, shape)
REGISTRY: dict[str, ModuleType] = {code: m for m in _MODULES for code in m.CODES}
SUPPORTED = tuple(sorted(REGISTRY))

#: Shared C: TFLM's MultiplyByQuantizedMultiplier (double rounding) and the output stage.
COMMON = {
    "requantize": r"""
/* MultiplyByQuantizedMultiplier: SaturatingRoundingDoublingHighMul, then
 * RoundingDivideByPOT (TFLM's reference arithmetic, bit for bit). */
static int32_t mbqm(int32_t x, int32_t mult, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    const int32_t a = (int32_t)((uint32_t)x << left);
    int32_t high;
    if (a == mult && a == INT32_MIN) {
        high = INT32_MAX;
    } else {
        const int64_t ab = (int64_t)a * mult;
        const int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
        high = (int32_t)((ab + nudge) / ((int64_t)1 << 31));
    }
    const int32_t mask = (int32_t)(((uint32_t)1 << right) - 1);
    const int32_t remainder = high & mask;
    const int32_t threshold = (mask >> 1) + (high < 0 ? 1 : 0);
    return (high >> right) + (remainder > threshold ? 1 : 0);
}

static NOINLINE int8_t requantize(int32_t acc, int32_t mult, int shift, int32_t offset,
                         int32_t lo, int32_t hi)
{
    acc = mbqm(acc, mult, shift) + offset;
    acc = acc < lo ? lo : acc;
    acc = acc > hi ? hi : acc;
    return (int8_t)acc;
}
""",
}
REQUIRES = {
    "conv": ("requantize",),
    "dwconv": ("requantize",),
    "fc": ("requantize",),
    "reduce": ("requantize",),
    "requant": ("requantize",),
    "maxpool": ("pool_t",),
    "avgpool": ("pool_t",),
}
KERNELS: dict[str, str] = {**COMMON}
for _m in _MODULES:
    KERNELS.update(_m.KERNELS)


def lower(op: Operator, model: Model) -> Layer:
    module = REGISTRY.get(op.code)
    if module is None:
        raise fail(op, "this operator is not supported by the C target")
    return module.lower(op, model)


def kernel_sources(used: set[str]) -> list[str]:
    """The C of the kernels in ``used`` and what they need, each once, dependencies first."""
    order: list[str] = []
    for name in sorted(used):
        for dep in (*REQUIRES.get(name, ()), name):
            if dep not in order:
                order.append(dep)
    deps = [n for n in order if n in COMMON or n.endswith("_t")]
    rest = [n for n in order if n not in deps]
    return [KERNELS[n].strip("\n") for n in deps + rest]


__all__ = ["HINT", "REGISTRY", "SUPPORTED", "Const", "Layer", "kernel_sources", "lower"]
