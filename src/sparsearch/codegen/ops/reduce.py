"""MEAN and SUM over the spatial axes (global average pooling): TFLM's integer
``QuantizedMeanOrSum`` — an int32 sum per channel, the zero point taken out, then one
requantization whose multiplier folds in 1 / count for a mean."""

from __future__ import annotations

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops.base import Layer, activation, const, fail, int_values, nhwc, output
from sparsearch.codegen.quant import mean_multiplier, quantize_multiplier

CODES = ("MEAN", "SUM")

KERNELS = {
    "reduce": r"""
typedef struct {
    uint16_t count, c;    /* spatial positions summed, channels */
    int16_t in_zp, out_zp;
    int32_t mult;
    int8_t shift;
} reduce_t;

/* QuantizedMeanOrSum over H and W of an NHWC map: channel by channel. */
static NOINLINE void reduce(const reduce_t *p, const int8_t *in, int8_t *out)
{
    for (int ch = 0; ch < p->c; ++ch) {
        int32_t sum = 0;
        for (int i = 0; i < p->count; ++i) {
            sum += in[i * p->c + ch];
        }
        out[ch] = requantize(sum - p->in_zp * p->count, p->mult, p->shift, p->out_zp,
                             -128, 127);
    }
}
""",
}


def lower(op: Operator, model: Model) -> Layer:
    x, y = activation(model, op, 0), output(model, op)
    axis = const(model, op, 1, "int32")
    assert axis is not None
    h, w, c = nhwc(op, x, "the input")
    axes = {a % 4 if -4 <= a < 4 else a for a in int_values(axis)}
    if axes != {1, 2}:
        raise fail(
            op,
            f"reduces axes {sorted(int_values(axis))}; only the spatial axes [1, 2] "
            "(global pooling) are supported",
        )
    if y.numel != c:
        raise fail(op, f"output of {y.numel} values for {c} channels")
    count = h * w
    m, s = quantize_multiplier(x.scales[0] / y.scales[0])
    if op.code == "MEAN":
        m, s = mean_multiplier(m, s, count)
    fields = [str(v) for v in (count, c, x.zero_points[0], y.zero_points[0], m, s)]
    return Layer(
        op=op,
        kernel="reduce",
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        comment=f"{op.code.lower()} over {h}x{w}: {h}x{w}x{c} -> {c}",
        in_place=True,  # channel ch is written after its last read, over byte ch
        macs=count * c,
    )
