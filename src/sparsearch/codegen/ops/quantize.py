"""QUANTIZE from int8 to int8 (a requantization the converter inserts where an activation
gets a scale of its own, e.g. after an average pool): TFLM's reference ``Requantize``, one
``MultiplyByQuantizedMultiplier`` per element with ``input scale / output scale``.
Float <-> int8 QUANTIZE / DEQUANTIZE (a model with float input or output) is refused by
``passes.check_io``: the C target's API is int8 in, int8 out."""

from __future__ import annotations

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops.base import Layer, activation, fail, output
from sparsearch.codegen.quant import quantize_multiplier

CODES = ("QUANTIZE",)

KERNELS = {
    "requant": r"""
typedef struct {
    int32_t size;
    int16_t in_zp, out_zp;
    int32_t mult;
    int8_t shift;
} requant_t;

/* Requantize: element by element, so it may run in place. */
static NOINLINE void requant(const requant_t *p, const int8_t *in, int8_t *out)
{
    for (int32_t i = 0; i < p->size; ++i) {
        out[i] = requantize(in[i] - p->in_zp, p->mult, p->shift, p->out_zp, -128, 127);
    }
}
""",
}


def lower(op: Operator, model: Model) -> Layer:
    x, y = activation(model, op, 0), output(model, op)
    if x.numel != y.numel:
        raise fail(op, f"turns {x.numel} values into {y.numel}")
    m, s = quantize_multiplier(x.scales[0] / y.scales[0])
    fields = [str(v) for v in (x.numel, x.zero_points[0], y.zero_points[0], m, s)]
    return Layer(
        op=op,
        kernel="requant",
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        comment=f"requantize {x.numel} values (scale {x.scales[0]:.6g} -> {y.scales[0]:.6g})",
        in_place=True,
        macs=x.numel,
    )
