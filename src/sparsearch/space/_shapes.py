"""Shape walk of an ArchSpec: the float model's layers in order, with their shapes.

The builder and the estimator both start from this walk, so a candidate that cannot be built is
rejected by the estimator too, with the same message.

A model whose input is one row high (``model_input_shape`` H == 1: sensor windows, audio
features, stored N x C x 1 x L) is one-dimensional: every conv and depthwise conv is 1 x k
(padding k//2 along the length only), stride-2 downsampling and the 2-wide max-pool act along the
length only, and the height stays 1. ``Layer.one_d`` marks those layers; ``kernel`` and
``stride`` stay the size along the length, so two-dimensional layers read exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sparsearch.errors import SpaceError
from sparsearch.space.spec import BLOCK_KINDS, DOWNSAMPLES, HEAD_POOLS, ArchSpec

LayerKind = Literal["conv", "dwconv", "maxpool", "gap", "flatten", "dense"]
Shape = tuple[int, int, int]  # (C, H, W); dense features are (F, 1, 1)

_HINT_DOWNSAMPLE = "use fewer downsampling blocks (downsample='none') or a larger input_scale"


@dataclass(frozen=True)
class Layer:
    """One layer of the float model. ``block`` is the block index, or -1 for the head.

    ``kernel`` / ``stride`` are the window and step along the width (the length); the height
    uses the same values, except for a ``one_d`` layer, whose window is 1 x kernel and which
    steps 1 x stride (see ``kernel_hw``, ``stride_hw``, ``padding_hw``)."""

    kind: LayerKind
    block: int
    in_shape: Shape
    out_shape: Shape
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    relu: bool = False
    one_d: bool = False

    @property
    def kernel_hw(self) -> tuple[int, int]:
        """(kh, kw) of the conv / pooling window."""
        return (1, self.kernel) if self.one_d else (self.kernel, self.kernel)

    @property
    def stride_hw(self) -> tuple[int, int]:
        return (1, self.stride) if self.one_d else (self.stride, self.stride)

    @property
    def padding_hw(self) -> tuple[int, int]:
        """PyTorch's symmetric zero padding of a conv ('same' for stride 1): k//2 per side."""
        kh, kw = self.kernel_hw
        return kh // 2, kw // 2

    @property
    def weights(self) -> int:
        """Weight count (conv kernels / dense matrix); 0 for parameter-free layers."""
        if self.kind in ("conv", "dwconv"):
            kh, kw = self.kernel_hw
            return self.out_shape[0] * (self.in_shape[0] // self.groups) * kh * kw
        if self.kind == "dense":
            return self.in_shape[0] * self.out_shape[0]
        return 0

    @property
    def biases(self) -> int:
        """Bias count of the deployed layer: BatchNorm folds into a per-output-channel bias."""
        return self.out_shape[0] if self.kind in ("conv", "dwconv", "dense") else 0

    @property
    def macs(self) -> int:
        """Multiply-accumulates; pooling and the mean are not counted."""
        if self.kind in ("conv", "dwconv"):
            _, ho, wo = self.out_shape
            return ho * wo * self.weights
        if self.kind == "dense":
            return self.weights
        return 0


def _stride_out(n: int) -> int:
    return (n + 1) // 2  # conv with padding k//2, stride 2: ceil(n / 2)


def _validate(arch: ArchSpec) -> None:
    c, h, w = arch.input_shape
    if min(c, h, w) < 1:
        raise SpaceError(
            f"input_shape {tuple(arch.input_shape)} has a dimension below 1",
            "give the dataset's (channels, height, width), each at least 1",
        )
    if not arch.input_scale > 0:
        raise SpaceError(
            f"input_scale {arch.input_scale} is not positive", "use a scale in (0, 1], e.g. 0.5"
        )
    if arch.num_classes < 1:
        raise SpaceError(f"num_classes {arch.num_classes} is below 1", "use the dataset's classes")
    if not arch.blocks:
        raise SpaceError("the architecture has no blocks", "give at least one conv block")
    if arch.head_pool not in HEAD_POOLS:
        raise SpaceError(f"unknown head_pool {arch.head_pool!r}", f"use one of {HEAD_POOLS}")
    if arch.head_units < 0:
        raise SpaceError(f"head_units {arch.head_units} is negative", "use 0 for no hidden layer")
    for i, b in enumerate(arch.blocks):
        if b.kind not in BLOCK_KINDS:
            raise SpaceError(f"block {i}: unknown kind {b.kind!r}", f"use one of {BLOCK_KINDS}")
        if b.downsample not in DOWNSAMPLES:
            raise SpaceError(
                f"block {i}: unknown downsample {b.downsample!r}", f"use one of {DOWNSAMPLES}"
            )
        if b.channels < 1:
            raise SpaceError(f"block {i}: channels {b.channels} is below 1", "use 1..128")
        if b.kernel < 1 or b.kernel % 2 == 0:
            raise SpaceError(
                f"block {i}: kernel {b.kernel} is not a positive odd number",
                "use an odd kernel (1, 3, 5, 7) so 'same' padding keeps the map centred",
            )


def is_one_d(arch: ArchSpec) -> bool:
    """Whether ``arch`` gets 1-D operators: its model input (after input scaling) is 1 high."""
    return arch.model_input_shape[1] == 1


def layer_shapes(arch: ArchSpec) -> list[Layer]:
    """The float model's layers in forward order, on ``arch.model_input_shape``.

    Raises SpaceError for nonsense (no blocks, channels < 1, even kernel, ...) and for a block
    whose downsampling would take the feature map below 1x1 (a 1-D model: below length 1).
    """
    _validate(arch)
    one_d = is_one_d(arch)
    layers: list[Layer] = []
    shape: Shape = arch.model_input_shape
    for i, b in enumerate(arch.blocks):
        ci, h, w = shape
        stride = 2 if b.downsample == "stride" else 1
        if stride == 2:
            ho, wo = (h if one_d else _stride_out(h)), _stride_out(w)
        else:
            ho, wo = h, w
        if b.kind == "conv":
            out = (b.channels, ho, wo)
            layers.append(Layer("conv", i, shape, out, b.kernel, stride, 1, True, one_d))
        else:
            mid = (ci, ho, wo)
            layers.append(Layer("dwconv", i, shape, mid, b.kernel, stride, ci, True, one_d))
            out = (b.channels, ho, wo)
            layers.append(Layer("conv", i, mid, out, 1, 1, 1, True, one_d))
        if b.downsample == "pool":
            if one_d and wo < 2:
                raise SpaceError(
                    f"block {i} ({b.kind}, pool) would max-pool a length-{wo} sequence below "
                    "length 1",
                    _HINT_DOWNSAMPLE,
                )
            if not one_d and (ho < 2 or wo < 2):
                raise SpaceError(
                    f"block {i} ({b.kind}, pool) would max-pool a {ho}x{wo} map below 1x1",
                    _HINT_DOWNSAMPLE,
                )
            pooled = (b.channels, ho if one_d else ho // 2, wo // 2)
            layers.append(Layer("maxpool", i, out, pooled, 2, 2, one_d=one_d))
            out = pooled
        shape = out
    c, h, w = shape
    if arch.head_pool == "gap":
        layers.append(Layer("gap", -1, shape, (c, 1, 1)))
        features = c
    else:
        features = c * h * w
        layers.append(Layer("flatten", -1, shape, (features, 1, 1)))
    if arch.head_units:
        hidden = (arch.head_units, 1, 1)
        layers.append(Layer("dense", -1, (features, 1, 1), hidden, relu=True))
        features = arch.head_units
    layers.append(Layer("dense", -1, (features, 1, 1), (arch.num_classes, 1, 1)))
    return layers
