"""FULLY_CONNECTED: TFLM's ``FullyConnected`` / ``FullyConnectedPerChannel`` (reference
integer_ops). Per-tensor weights keep TFLM's per-tensor multiplier (the float32 product of
the input and weight scales); ``passes.fold_transpose`` may permute the weight columns so the
layer reads an NHWC map directly instead of a transposed copy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops.base import (
    MAX_DIM,
    Const,
    Layer,
    activation,
    const,
    fail,
    fused,
    int_values,
    output,
    symmetric_weights,
    weight_values,
)
from sparsearch.codegen.quant import (
    activation_range,
    per_channel_multipliers,
    per_tensor_multiplier,
)

CODES = ("FULLY_CONNECTED",)

KERNELS = {
    "fc": r"""
typedef struct {
    uint16_t batches, depth, out_c;
    int16_t in_offset, out_offset;
    int8_t act_min, act_max;
    uint8_t per_channel;  /* mult/shift hold out_c entries, else one */
    const int8_t *w;      /* out_c x depth */
    const int32_t *bias;  /* out_c, or NULL */
    const int32_t *mult;
    const int8_t *shift;
} fc_t;

/* FullyConnected(PerChannel): each output is a dot product with one weight row. */
static NOINLINE void fc(const fc_t *p, const int8_t *in, int8_t *out)
{
    for (int b = 0; b < p->batches; ++b) {
        const int8_t *x = in + b * p->depth;
        for (int oc = 0; oc < p->out_c; ++oc) {
            const int8_t *w = p->w + oc * p->depth;
            int32_t acc = 0;
            for (int d = 0; d < p->depth; ++d) {
                acc += w[d] * (x[d] + p->in_offset);
            }
            if (p->bias) {
                acc += p->bias[oc];
            }
            const int q = p->per_channel ? oc : 0;
            *out++ = requantize(acc, p->mult[q], p->shift[q], p->out_offset,
                                p->act_min, p->act_max);
        }
    }
}
""",
}


def lower(
    op: Operator,
    model: Model,
    source: int | None = None,
    columns: Sequence[int] | None = None,
) -> Layer:
    """The layer of a fully-connected op. ``source``/``columns``: read tensor ``source``
    instead (a folded TRANSPOSE + RESHAPE) with the weight columns taken in ``columns`` order."""
    x = activation(model, op, 0) if source is None else model.tensor(source)
    y = output(model, op)
    w = const(model, op, 1, "int8")
    b = const(model, op, 2, "int32", optional=True)
    assert w is not None
    if op.options.get("weights_format", "DEFAULT") != "DEFAULT":
        raise fail(op, f"weights format {op.options.get('weights_format')} is not supported")
    if len(w.shape) != 2:
        raise fail(op, f"weights have shape {list(w.shape)}; expected 2-D (outputs x depth)")
    out_c, depth = w.shape
    if x.numel % depth or x.numel // depth < 1:
        raise fail(op, f"input of {x.numel} values is not a multiple of the depth {depth}")
    batches = x.numel // depth
    if batches != 1:
        raise fail(op, f"batch {batches}; the C target runs one sample per invoke")
    if y.numel != out_c:
        raise fail(op, f"output of {y.numel} values for {out_c} weight rows")
    for d in (depth, out_c):
        if d > MAX_DIM:
            raise fail(op, f"a dimension of {d} is too large (1..{MAX_DIM} supported)")
    scales = symmetric_weights(op, w, out_c)
    if len(scales) > 1 and w.quantized_dimension != 0:
        raise fail(op, f"weights quantized along dimension {w.quantized_dimension}")
    if b is not None and b.shape != (out_c,):
        raise fail(op, f"bias has shape {list(b.shape)}, expected [{out_c}]")
    act = fused(op)
    lo, hi = activation_range(act, y.scales[0], y.zero_points[0])
    if len(scales) == 1:
        pairs = [per_tensor_multiplier(x.scales[0], scales[0], y.scales[0])]
    else:
        pairs = per_channel_multipliers(x.scales[0], scales, y.scales[0])
    weights = weight_values(w)
    if columns is not None:
        weights = weights.reshape(out_c, depth)[:, np.asarray(columns)].ravel()
    name = f"l{op.index}"
    consts = [Const(f"{name}_w", "int8_t", weights)]
    if b is not None:
        consts.append(Const(f"{name}_b", "int32_t", int_values(b)))
    consts.append(Const(f"{name}_m", "int32_t", tuple(m for m, _ in pairs)))
    consts.append(Const(f"{name}_s", "int8_t", tuple(s for _, s in pairs)))
    fields = [str(v) for v in (batches, depth, out_c, -x.zero_points[0], y.zero_points[0], lo, hi)]
    fields += [
        "1" if len(pairs) > 1 else "0",
        f"{name}_w",
        f"{name}_b" if b is not None else "0",
        f"{name}_m",
        f"{name}_s",
    ]
    return Layer(
        op=op,
        kernel="fc",
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        consts=consts,
        comment=f"fully connected {depth} -> {out_c}"
        + (" (reads the NHWC map, columns permuted)" if columns is not None else "")
        + (f", {act.lower()}" if act != "NONE" else ""),
        macs=depth * out_c,
    )
