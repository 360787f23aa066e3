"""MAX_POOL_2D and AVERAGE_POOL_2D: TFLM's reference integer pooling (the window clipped to
the input, the average rounded half away from zero over the taps inside)."""

from __future__ import annotations

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops.base import (
    Layer,
    activation,
    fail,
    fused,
    nhwc,
    output,
    window_in_place,
)
from sparsearch.codegen.ops.conv import window
from sparsearch.codegen.quant import activation_range

CODES = ("MAX_POOL_2D", "AVERAGE_POOL_2D")

_POOL_T = r"""
typedef struct {
    uint16_t in_h, in_w, c, out_h, out_w, f_h, f_w;
    uint8_t stride_h, stride_w;
    uint16_t pad_top, pad_left;
    int8_t act_min, act_max;
} pool_t;
"""

KERNELS = {
    "pool_t": _POOL_T,
    "maxpool": r"""
static NOINLINE void maxpool(const pool_t *p, const int8_t *in, int8_t *out)
{
    for (int oy = 0; oy < p->out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_top;
        const int fy0 = y0 < 0 ? -y0 : 0;
        const int fy1 = p->in_h - y0 < p->f_h ? p->in_h - y0 : p->f_h;
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int x0 = ox * p->stride_w - p->pad_left;
            const int fx0 = x0 < 0 ? -x0 : 0;
            const int fx1 = p->in_w - x0 < p->f_w ? p->in_w - x0 : p->f_w;
            for (int ch = 0; ch < p->c; ++ch) {
                int32_t m = -128;
                for (int fy = fy0; fy < fy1; ++fy) {
                    for (int fx = fx0; fx < fx1; ++fx) {
                        const int32_t v = in[((y0 + fy) * p->in_w + x0 + fx) * p->c + ch];
                        m = v > m ? v : m;
                    }
                }
                m = m < p->act_min ? p->act_min : m;
                m = m > p->act_max ? p->act_max : m;
                *out++ = (int8_t)m;
            }
        }
    }
}
""",
    "avgpool": r"""
static NOINLINE void avgpool(const pool_t *p, const int8_t *in, int8_t *out)
{
    for (int oy = 0; oy < p->out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_top;
        const int fy0 = y0 < 0 ? -y0 : 0;
        const int fy1 = p->in_h - y0 < p->f_h ? p->in_h - y0 : p->f_h;
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int x0 = ox * p->stride_w - p->pad_left;
            const int fx0 = x0 < 0 ? -x0 : 0;
            const int fx1 = p->in_w - x0 < p->f_w ? p->in_w - x0 : p->f_w;
            const int32_t n = (fy1 - fy0) * (fx1 - fx0);
            for (int ch = 0; ch < p->c; ++ch) {
                int32_t acc = 0;
                for (int fy = fy0; fy < fy1; ++fy) {
                    for (int fx = fx0; fx < fx1; ++fx) {
                        acc += in[((y0 + fy) * p->in_w + x0 + fx) * p->c + ch];
                    }
                }
                acc = acc > 0 ? (acc + n / 2) / n : (acc - n / 2) / n;
                acc = acc < p->act_min ? p->act_min : acc;
                acc = acc > p->act_max ? p->act_max : acc;
                *out++ = (int8_t)acc;
            }
        }
    }
}
""",
}


def lower(op: Operator, model: Model) -> Layer:
    x, y = activation(model, op, 0), output(model, op)
    h, w, c = nhwc(op, x, "the input")
    oh, ow, oc = nhwc(op, y, "the output")
    if oc != c:
        raise fail(op, f"pooling changes {c} channels into {oc}")
    if (x.scales[0], x.zero_points[0]) != (y.scales[0], y.zero_points[0]):
        raise fail(op, "input and output quantization differ (TFLM requires them equal)")
    fh, fw = op.options.get("filter_height", 0), op.options.get("filter_width", 0)
    if not (1 <= fh <= 255 and 1 <= fw <= 255):
        raise fail(op, f"filter {fh}x{fw} is not supported")
    sh, sw, _, _, top, left = window(op, (h, w), (fh, fw), (oh, ow))
    act = fused(op)
    lo, hi = activation_range(act, y.scales[0], y.zero_points[0])
    kind = "maxpool" if op.code == "MAX_POOL_2D" else "avgpool"
    fields = [str(v) for v in (h, w, c, oh, ow, fh, fw, sh, sw, top, left, lo, hi)]
    return Layer(
        op=op,
        kernel=kind,
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        comment=f"{kind} {fh}x{fw} stride {sh}x{sw}: {h}x{w}x{c} -> {oh}x{ow}x{c}",
        in_place=window_in_place(
            (h, w, c), (oh, ow, c), (fh, fw), (sh, sw), (1, 1), (top, left), 1
        ),
        macs=oh * ow * c * fh * fw,
    )
