"""CONV_2D and DEPTHWISE_CONV_2D: TFLM's ``ConvPerChannel`` / ``DepthwiseConvPerChannel``
(reference integer_ops), one generic kernel each, the layer's shapes in a const struct.

Padding follows TFLM's ``ComputePaddingHeightWidth``: SAME pads ``total // 2`` before (the odd
pixel after), and taps outside the input are skipped, which is what an explicit PAD with the
input's zero point contributes too (so ``passes.fold_pad`` may move a PAD in here).
"""

from __future__ import annotations

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
    nhwc,
    output,
    symmetric_weights,
    weight_values,
    window_in_place,
)
from sparsearch.codegen.quant import activation_range, per_channel_multipliers

CODES = ("CONV_2D", "DEPTHWISE_CONV_2D")

KERNELS = {
    "conv": r"""
typedef struct {
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c, k_h, k_w;
    uint8_t stride_h, stride_w, dil_h, dil_w;
    uint16_t pad_top, pad_left;
    int16_t in_offset, out_offset;
    int8_t act_min, act_max;
    const int8_t *w;      /* out_c x k_h x k_w x in_c */
    const int32_t *bias;  /* out_c, or NULL */
    const int32_t *mult;  /* out_c requantization multipliers (Q31) */
    const int8_t *shift;  /* out_c shifts */
} conv_t;

/* ConvPerChannel: NHWC in, NHWC out, one output element after another. */
static NOINLINE void conv(const conv_t *p, const int8_t *in, int8_t *out)
{
    const int in_c = p->in_c;
    const int32_t in_offset = p->in_offset;
    const int32_t taps = (int32_t)p->k_h * p->k_w * in_c;
    for (int oy = 0; oy < p->out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_top;
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int x0 = ox * p->stride_w - p->pad_left;
            for (int oc = 0; oc < p->out_c; ++oc) {
                const int8_t *w = p->w + oc * taps;
                int32_t acc = 0;
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int y = y0 + ky * p->dil_h;
                    if (y < 0 || y >= p->in_h) {
                        continue;
                    }
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int x = x0 + kx * p->dil_w;
                        if (x < 0 || x >= p->in_w) {
                            continue;
                        }
                        const int8_t *src = in + (y * p->in_w + x) * in_c;
                        const int8_t *const end = src + in_c;
                        const int8_t *wk = w + (ky * p->k_w + kx) * in_c;
                        do {
                            acc += *wk++ * (*src++ + in_offset);
                        } while (src < end);
                    }
                }
                if (p->bias) {
                    acc += p->bias[oc];
                }
                *out++ = requantize(acc, p->mult[oc], p->shift[oc], p->out_offset,
                                    p->act_min, p->act_max);
            }
        }
    }
}
""",
    "dwconv": r"""
typedef struct {
    uint16_t in_h, in_w, in_c, out_h, out_w, depth_mult, k_h, k_w;
    uint8_t stride_h, stride_w, dil_h, dil_w;
    uint16_t pad_top, pad_left;
    int16_t in_offset, out_offset;
    int8_t act_min, act_max;
    const int8_t *w;      /* k_h x k_w x (in_c * depth_mult) */
    const int32_t *bias;  /* in_c * depth_mult, or NULL */
    const int32_t *mult;
    const int8_t *shift;
} dwconv_t;

/* DepthwiseConvPerChannel: output channel ic * depth_mult + m reads input channel ic. */
static NOINLINE void dwconv(const dwconv_t *p, const int8_t *in, int8_t *out)
{
    const int out_c = p->in_c * p->depth_mult;
    for (int oy = 0; oy < p->out_h; ++oy) {
        const int y0 = oy * p->stride_h - p->pad_top;
        for (int ox = 0; ox < p->out_w; ++ox) {
            const int x0 = ox * p->stride_w - p->pad_left;
            for (int oc = 0; oc < out_c; ++oc) {
                const int ic = oc / p->depth_mult;
                int32_t acc = 0;
                for (int ky = 0; ky < p->k_h; ++ky) {
                    const int y = y0 + ky * p->dil_h;
                    if (y < 0 || y >= p->in_h) {
                        continue;
                    }
                    for (int kx = 0; kx < p->k_w; ++kx) {
                        const int x = x0 + kx * p->dil_w;
                        if (x < 0 || x >= p->in_w) {
                            continue;
                        }
                        acc += p->w[(ky * p->k_w + kx) * out_c + oc]
                               * (in[(y * p->in_w + x) * p->in_c + ic] + p->in_offset);
                    }
                }
                if (p->bias) {
                    acc += p->bias[oc];
                }
                *out++ = requantize(acc, p->mult[oc], p->shift[oc], p->out_offset,
                                    p->act_min, p->act_max);
            }
        }
    }
}
""",
}


def out_size(padding: str, size: int, k: int, stride: int, dilation: int) -> int:
    """ComputeOutSize."""
    eff = (k - 1) * dilation + 1
    return (size + stride - 1) // stride if padding == "SAME" else (size + stride - eff) // stride


def pad_before(stride: int, dilation: int, size: int, k: int, out: int) -> int:
    """ComputePaddingWithOffset: the padding before (the odd remainder goes after)."""
    total = (out - 1) * stride + (k - 1) * dilation + 1 - size
    return max(total, 0) // 2


def window(
    op: Operator,
    in_hw: tuple[int, int],
    k: tuple[int, int],
    out_hw: tuple[int, int],
    pads: tuple[int, int] | None = None,
) -> tuple[int, int, int, int, int, int]:
    """(stride_h, stride_w, dil_h, dil_w, pad_top, pad_left) of a windowed op, checked against
    its output shape. ``pads``: explicit padding (a folded PAD) instead of the option's."""
    o = op.options
    sh, sw = o.get("stride_h", 0), o.get("stride_w", 0)
    dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
    padding = o.get("padding", "SAME")
    for name, v in (("stride", sh), ("stride", sw), ("dilation", dh), ("dilation", dw)):
        if not 1 <= v <= 255:
            raise fail(op, f"{name} {v} is not supported (1..255)")
    if padding not in ("SAME", "VALID"):
        raise fail(op, f"padding {padding} is not supported")
    (h, w), (kh, kw), (oh, ow) = in_hw, k, out_hw
    if pads is not None:
        ph, pw = pads
        want = (
            (h + ph[0] + ph[1] - (kh - 1) * dh - 1) // sh + 1,
            (w + pw[0] + pw[1] - (kw - 1) * dw - 1) // sw + 1,
        )
        top, left = ph[0], pw[0]
    else:
        want = (out_size(padding, h, kh, sh, dh), out_size(padding, w, kw, sw, dw))
        top = pad_before(sh, dh, h, kh, oh) if padding == "SAME" else 0
        left = pad_before(sw, dw, w, kw, ow) if padding == "SAME" else 0
    if (oh, ow) != want:
        raise fail(
            op, f"output is {oh}x{ow} but the input, window and strides give {want[0]}x{want[1]}"
        )
    if top > MAX_DIM or left > MAX_DIM:
        raise fail(op, "padding too large")
    return sh, sw, dh, dw, top, left


def lower(
    op: Operator,
    model: Model,
    pads: tuple[tuple[int, int], tuple[int, int]] | None = None,
    source: int | None = None,
) -> Layer:
    """The layer of a convolution. ``pads``/``source``: a folded PAD's paddings and the tensor
    it read (the conv then reads that tensor and pads itself)."""
    x = activation(model, op, 0) if source is None else model.tensor(source)
    y = output(model, op)
    w = const(model, op, 1, "int8")
    b = const(model, op, 2, "int32", optional=True)
    assert w is not None
    h, wd, c = nhwc(op, x, "the input")
    oh, ow, oc = nhwc(op, y, "the output")
    depthwise = op.code == "DEPTHWISE_CONV_2D"
    if len(w.shape) != 4:
        raise fail(op, f"weights have shape {list(w.shape)}; expected 4-D")
    if depthwise:
        one, kh, kw, wc = w.shape
        if one != 1 or wc != oc:
            raise fail(op, f"depthwise weights {list(w.shape)} do not match {oc} output channels")
        if oc % c:
            raise fail(op, f"{oc} output channels are not a multiple of {c} input channels")
        mult = oc // c
        opt = op.options.get("depth_multiplier", 0)
        if opt not in (0, mult):
            raise fail(op, f"depth_multiplier {opt} does not match {c} -> {oc} channels")
        qdim_ok = len(w.scales) == 1 or w.quantized_dimension == 3
    else:
        wo, kh, kw, wc = w.shape
        if wo != oc or wc != c:
            raise fail(
                op,
                f"weights {list(w.shape)} do not match {c} -> {oc} channels "
                "(grouped convolutions are not supported)",
            )
        qdim_ok = len(w.scales) == 1 or w.quantized_dimension == 0
    if not qdim_ok:
        raise fail(op, f"weights quantized along dimension {w.quantized_dimension}")
    scales = symmetric_weights(op, w, oc)
    if b is not None and b.shape != (oc,):
        raise fail(op, f"bias has shape {list(b.shape)}, expected [{oc}]")
    sh, sw, dh, dw, top, left = window(
        op, (h, wd), (kh, kw), (oh, ow), pads if pads is not None else None
    )
    act = fused(op)
    lo, hi = activation_range(act, y.scales[0], y.zero_points[0])
    pairs = per_channel_multipliers(
        x.scales[0], scales if len(scales) == oc else scales * oc, y.scales[0]
    )
    name = f"l{op.index}"
    consts = [Const(f"{name}_w", "int8_t", weight_values(w))]
    if b is not None:
        consts.append(Const(f"{name}_b", "int32_t", int_values(b)))
    consts.append(Const(f"{name}_m", "int32_t", tuple(m for m, _ in pairs)))
    consts.append(Const(f"{name}_s", "int8_t", tuple(s for _, s in pairs)))
    fields = [
        str(v)
        for v in (
            h,
            wd,
            c,
            oh,
            ow,
            mult if depthwise else oc,
            kh,
            kw,
            sh,
            sw,
            dh,
            dw,
            top,
            left,
            -x.zero_points[0],
            y.zero_points[0],
            lo,
            hi,
        )
    ]
    fields += [f"{name}_w", f"{name}_b" if b is not None else "0", f"{name}_m", f"{name}_s"]
    kind = "depthwise " if depthwise else ""
    return Layer(
        op=op,
        kernel="dwconv" if depthwise else "conv",
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        consts=consts,
        comment=(
            f"{kind}conv {kh}x{kw} stride {sh}x{sw}: {h}x{wd}x{c} -> {oh}x{ow}x{oc}"
            + (f", {act.lower()}" if act != "NONE" else "")
        ),
        in_place=window_in_place(
            (h, wd, c),
            (oh, ow, oc),
            (kh, kw),
            (sh, sw),
            (dh, dw),
            (top, left),
            mult if depthwise else None,
        ),
        macs=oh * ow * oc * kh * kw * (1 if depthwise else c),
    )
