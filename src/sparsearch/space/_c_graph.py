"""A candidate as the typed graph the C generator reads (``codegen.graph.Model``), without
exporting anything: the same operators, shapes and constants the litert-torch int8 export
produces (the rules of ``_tflm_graph.lower``, checked tensor for tensor there), with zero
weights and unit scales. ``codegen.passes`` and ``codegen.planner`` then lower and plan it
exactly as they do the shipped file, so the estimator's C arena is the generator's.
"""

from __future__ import annotations

from collections.abc import Sequence

from sparsearch.codegen.graph import Model, Operator, Tensor
from sparsearch.space._shapes import Layer
from sparsearch.space._tflm_graph import _needs_pad


class _Builder:
    def __init__(self) -> None:
        self.tensors: list[Tensor] = []
        self.ops: list[Operator] = []

    def activation(self, shape: tuple[int, ...]) -> int:
        i = len(self.tensors)
        self.tensors.append(Tensor(i, shape, "int8", (1.0,), (-128,)))
        return i

    def const(
        self,
        shape: tuple[int, ...],
        dtype: str,
        channels: int = 0,
        qdim: int = 0,
        values: Sequence[int] | None = None,
    ) -> int:
        import struct

        i = len(self.tensors)
        n = 1
        for d in shape:
            n *= d
        if values is not None:
            data = struct.pack(f"<{n}{'i' if dtype == 'int32' else 'b'}", *values)
        else:
            data = bytes(n * (4 if dtype == "int32" else 1))
        scales = (1.0,) * channels
        self.tensors.append(Tensor(i, shape, dtype, scales, (0,) * channels, qdim, data))
        return i

    def op(
        self, code: str, inputs: Sequence[int], out_shape: tuple[int, ...], **options: object
    ) -> int:
        out = self.activation(out_shape)
        self.ops.append(Operator(len(self.ops), code, tuple(inputs), (out,), dict(options)))
        return out


def model_of(layers: Sequence[Layer]) -> Model:
    """The int8 graph of ``layers`` (NHWC int8 input, as the project exports)."""
    b = _Builder()
    c, h, w = layers[0].in_shape
    x = first = b.activation((1, h, w, c))
    shape: tuple[int, ...] = (1, h, w, c)
    for layer in layers:
        c, h, w = layer.in_shape
        co, ho, wo = layer.out_shape
        act = "RELU" if layer.relu else "NONE"
        if layer.kind in ("conv", "dwconv"):
            kh, kw = layer.kernel_hw
            sh, sw = layer.stride_hw
            padding = "VALID" if layer.kernel == 1 else "SAME"
            if _needs_pad(layer):
                ph, pw = layer.padding_hw
                pads = b.const((4, 2), "int32", values=(0, 0, ph, ph, pw, pw, 0, 0))
                x = b.op("PAD", [x, pads], (1, h + 2 * ph, w + 2 * pw, c))
                padding = "VALID"
            depthwise = layer.kind == "dwconv" or c == 1
            if depthwise:
                wt = b.const((1, kh, kw, co), "int8", co, 3)
                code = "DEPTHWISE_CONV_2D"
            else:
                wt = b.const((co, kh, kw, c), "int8", co, 0)
                code = "CONV_2D"
            bias = b.const((co,), "int32", co)
            x = b.op(
                code,
                [x, wt, bias],
                (1, ho, wo, co),
                padding=padding,
                stride_h=sh,
                stride_w=sw,
                fused_activation_function=act,
                depth_multiplier=co // c,
                dilation_h_factor=1,
                dilation_w_factor=1,
            )
            shape = (1, ho, wo, co)
        elif layer.kind == "maxpool":
            fh, fw = (1, 2) if layer.one_d else (2, 2)
            x = b.op(
                "MAX_POOL_2D",
                [x],
                (1, ho, wo, co),
                padding="VALID",
                stride_h=fh,
                stride_w=fw,
                filter_height=fh,
                filter_width=fw,
                fused_activation_function="NONE",
            )
            shape = (1, ho, wo, co)
        elif layer.kind == "gap" and h * w == 1 and c == 1:  # the converter leaves a reshape
            x = b.op("RESHAPE", [x, b.const((2,), "int32", values=(1, 1))], (1, 1))
            shape = (1, 1)
        elif layer.kind == "gap":
            keep = c == 1
            axis = b.const((2,), "int32", values=(1, 2))
            code = "SUM" if h * w == 1 else "MEAN"
            x = b.op(code, [x, axis], (1, 1, 1, c) if keep else (1, c), keep_dims=keep)
            if keep:
                x = b.op("RESHAPE", [x, b.const((2,), "int32", values=(1, c))], (1, c))
            shape = (1, c)
        elif layer.kind == "flatten":
            if h * w > 1 and c > 1:  # NHWC and NCHW orders differ only then
                perm = b.const((4,), "int32", values=(0, 3, 1, 2))
                x = b.op("TRANSPOSE", [x, perm], (1, c, h, w))
            if h * w > 1 or c == 1:  # a 1 x 1 map of several channels is read as it is
                new = b.const((2,), "int32", values=(1, c * h * w))
                x = b.op("RESHAPE", [x, new], (1, c * h * w))
                shape = (1, c * h * w)
        else:  # dense
            depth = 1
            for d in shape[1:]:
                depth *= d
            wt = b.const((co, depth), "int8", co, 0)
            bias = b.const((co,), "int32", co)
            x = b.op(
                "FULLY_CONNECTED",
                [x, wt, bias],
                (1, co),
                fused_activation_function=act,
                weights_format="DEFAULT",
                keep_num_dims=True,
            )
            shape = (1, co)
    return Model(tuple(b.tensors), tuple(b.ops), (first,), (x,))
