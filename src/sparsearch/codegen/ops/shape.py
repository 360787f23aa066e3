"""RESHAPE (no code: the output is the input's bytes), TRANSPOSE (a copy in the permuted
order) and PAD (a copy into a larger map filled with the zero point), as TFLM runs them."""

from __future__ import annotations

from sparsearch.codegen.graph import Model, Operator
from sparsearch.codegen.ops.base import (
    MAX_DIM,
    Layer,
    activation,
    const,
    fail,
    int_values,
    output,
)

CODES = ("RESHAPE", "TRANSPOSE", "PAD")

KERNELS = {
    "copy4d": r"""
typedef struct {
    uint16_t out_dims[4];   /* output extents, outermost first */
    int32_t in_strides[4];  /* input stride of each output axis (bytes) */
    uint16_t before[4];     /* padding before, per output axis */
    uint16_t in_dims[4];    /* input extent along each output axis */
    int8_t fill;            /* value of padded bytes */
} copy4d_t;

/* TRANSPOSE and PAD: output element by element, from the input or the fill value. */
static NOINLINE void copy4d(const copy4d_t *p, const int8_t *in, int8_t *out)
{
    int i[4];
    for (i[0] = 0; i[0] < p->out_dims[0]; ++i[0]) {
        for (i[1] = 0; i[1] < p->out_dims[1]; ++i[1]) {
            for (i[2] = 0; i[2] < p->out_dims[2]; ++i[2]) {
                for (i[3] = 0; i[3] < p->out_dims[3]; ++i[3]) {
                    int32_t at = 0;
                    int inside = 1;
                    for (int a = 0; a < 4; ++a) {
                        const int v = i[a] - p->before[a];
                        inside &= v >= 0 && v < p->in_dims[a];
                        at += v * p->in_strides[a];
                    }
                    *out++ = inside ? in[at] : p->fill;
                }
            }
        }
    }
}
""",
}


def _dims4(op: Operator, shape: tuple[int, ...], what: str) -> tuple[int, int, int, int]:
    if not 1 <= len(shape) <= 4:
        raise fail(op, f"{what} has rank {len(shape)}; 1 to 4 supported")
    dims = (1,) * (4 - len(shape)) + tuple(shape)
    if any(not 1 <= d <= MAX_DIM for d in dims):
        raise fail(op, f"{what} has shape {list(shape)} (dimensions 1..{MAX_DIM} supported)")
    return dims  # type: ignore[return-value]


def _strides(dims: tuple[int, ...]) -> list[int]:
    out, acc = [0] * len(dims), 1
    for a in range(len(dims) - 1, -1, -1):
        out[a] = acc
        acc *= dims[a]
    return out


def lower(op: Operator, model: Model) -> Layer:
    x, y = activation(model, op, 0), output(model, op)
    if (x.scales[0], x.zero_points[0]) != (y.scales[0], y.zero_points[0]):
        raise fail(op, "input and output quantization differ (TFLM requires them equal)")
    if op.code == "RESHAPE":
        if x.numel != y.numel:
            raise fail(op, f"reshapes {x.numel} values into {y.numel}")
        return Layer(
            op=op,
            kernel=None,
            inputs=(x.index,),
            output=y.index,
            alias=True,
            comment=f"reshape {list(x.shape)} -> {list(y.shape)} (no code: same bytes)",
        )
    xd = _dims4(op, x.shape, "the input")
    yd = _dims4(op, y.shape, "the output")
    offs = 4 - len(x.shape)
    xs = _strides(xd)
    if op.code == "TRANSPOSE":
        perm_t = const(model, op, 1, "int32")
        assert perm_t is not None
        perm = [int(p) for p in int_values(perm_t)]
        if sorted(perm) != list(range(len(x.shape))):
            raise fail(op, f"permutation {perm} is not a permutation of {len(x.shape)} axes")
        full = list(range(offs)) + [p + offs for p in perm]
        if tuple(xd[a] for a in full) != yd:
            raise fail(op, f"output {list(y.shape)} is not the input {list(x.shape)} permuted")
        fields = _copy_fields(yd, [xs[a] for a in full], [0] * 4, [xd[a] for a in full], 0)
        comment = f"transpose {list(x.shape)} by {perm} -> {list(y.shape)}"
    else:  # PAD
        pads_t = const(model, op, 1, "int32")
        assert pads_t is not None
        pads = int_values(pads_t)
        if len(pads) != 2 * len(x.shape):
            raise fail(op, f"paddings {list(pads)} do not match rank {len(x.shape)}")
        before = [0] * offs + [pads[2 * a] for a in range(len(x.shape))]
        after = [0] * offs + [pads[2 * a + 1] for a in range(len(x.shape))]
        if any(not 0 <= v <= MAX_DIM for v in before + after):
            raise fail(op, f"paddings {list(pads)} are negative or too large")
        if tuple(xd[a] + before[a] + after[a] for a in range(4)) != yd:
            raise fail(op, f"output {list(y.shape)} is not the input {list(x.shape)} padded")
        fields = _copy_fields(yd, xs, before, list(xd), y.zero_points[0])
        comment = f"pad {list(x.shape)} by {list(pads)} -> {list(y.shape)}"
    return Layer(
        op=op,
        kernel="copy4d",
        inputs=(x.index,),
        output=y.index,
        fields=fields,
        comment=comment,
        macs=y.numel,
    )


def _copy_fields(out_dims, in_strides, before, in_dims, fill) -> list[str]:  # type: ignore[no-untyped-def]
    def arr(v: list[int] | tuple[int, ...]) -> str:
        return "{" + ", ".join(str(int(a)) for a in v) + "}"

    return [arr(out_dims), arr(in_strides), arr(before), arr(in_dims), str(fill)]
