"""The int8 TFLite graph a model becomes, and TFLM's greedy arena planner.

``lower`` mirrors what the litert-torch int8 export produces for our sequential CNNs (checked
against the measured table in DESIGN.md): BatchNorm folded into conv biases, ReLU fused, an
explicit PAD before a stride-2 conv whose PyTorch padding differs from TFLite's SAME padding, a
TRANSPOSE before the flatten (torch flattens NCHW), MEAN for global average pooling. A 1-D
model (one-row input) lowers to the same operators with 1 x k windows: CONV_2D and
DEPTHWISE_CONV_2D of 1 x k filters, MAX_POOL_2D 1 x 2, PAD along the width only.
``plan_greedy`` reimplements tflite-micro's GreedyMemoryPlanner, so activation_bytes is the
arena head the runtime will really ask for, not the max(input + output) lower bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sparsearch.space._shapes import Layer

ARENA_ALIGNMENT = 16  # TFLM's MicroArenaBufferAlignment(); buffer sizes are rounded up to it


@dataclass(frozen=True)
class Tensor:
    """A tensor of the flatbuffer. ``channels``: per-channel quantization entries it carries."""

    nbytes: int
    const: bool
    channels: int = 0


@dataclass(frozen=True)
class Op:
    """An operator. ``channels``: output channels with a per-channel requantization multiplier."""

    code: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    channels: int = 0
    scratch: tuple[int, ...] = ()  # bytes of kernel scratch buffers requested in Prepare


@dataclass
class Graph:
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    input: int = 0
    output: int = 0

    def add(self, nbytes: int, const: bool = False, channels: int = 0) -> int:
        self.tensors.append(Tensor(nbytes, const, channels))
        return len(self.tensors) - 1

    def op(
        self,
        code: str,
        inputs: Sequence[int],
        n_out: int,
        channels: int = 0,
        scratch: tuple[int, ...] = (),
    ) -> int:
        out = self.add(n_out)
        self.ops.append(Op(code, tuple(inputs), (out,), channels, scratch))
        return out


def _numel(shape: tuple[int, int, int]) -> int:
    c, h, w = shape
    return c * h * w


def _needs_pad(layer: Layer) -> bool:
    # PyTorch pads k//2 on both sides; TFLite SAME pads the extra row at the bottom only. They
    # agree for stride 1 and for stride 2 on odd sizes; otherwise the converter emits PAD + VALID.
    # A 1-D layer (1 x k, stride 1 x 2) is padded and strided along the width only.
    _, h, w = layer.in_shape
    if layer.one_d:
        return layer.stride == 2 and layer.kernel > 1 and w % 2 == 0
    return layer.stride == 2 and layer.kernel > 1 and (h % 2 == 0 or w % 2 == 0)


def lower(layers: Sequence[Layer], channels_last_input: bool = True) -> Graph:
    """The int8 TFLite graph of ``layers``. ``channels_last_input=False`` models an export
    without ``to_channel_last_io``: an NCHW input followed by a TRANSPOSE."""
    g = Graph()
    x = g.input = g.add(_numel(layers[0].in_shape))
    if not channels_last_input:
        x = g.op("TRANSPOSE", [x, g.add(16, const=True)], _numel(layers[0].in_shape))
    for layer in layers:
        n_out = _numel(layer.out_shape)
        co = layer.out_shape[0]
        if layer.kind in ("conv", "dwconv"):
            if _needs_pad(layer):
                c, h, w = layer.in_shape
                ph, pw = layer.padding_hw
                x = g.op("PAD", [x, g.add(32, const=True)], c * (h + 2 * ph) * (w + 2 * pw))
            weights = g.add(layer.weights, const=True, channels=co)
            bias = g.add(4 * co, const=True, channels=co)
            code = "DEPTHWISE_CONV_2D" if layer.kind == "dwconv" else "CONV_2D"
            x = g.op(code, [x, weights, bias], n_out, channels=co)
        elif layer.kind == "maxpool":  # 2x2, or 1x2 on a 1-D layer: n_out says which
            x = g.op("MAX_POOL_2D", [x], n_out)
        elif layer.kind == "gap":
            # reduce.cc Prepare: int32 accumulators per output, plus input-iterator and
            # resolved-axis scratch (4 B per input dim / per axis).
            scratch = (4 * co, 4 * 4, 4 * 2)
            x = g.op("MEAN", [x, g.add(8, const=True)], n_out, scratch=scratch)
        elif layer.kind == "flatten":
            c, h, w = layer.in_shape
            if c > 1 and h * w > 1:  # NHWC and NCHW orders differ only then
                x = g.op("TRANSPOSE", [x, g.add(16, const=True)], n_out)
            x = g.op("RESHAPE", [x, g.add(8, const=True)], n_out)
        else:  # dense
            weights = g.add(layer.weights, const=True, channels=co)
            bias = g.add(4 * co, const=True, channels=co)
            x = g.op("FULLY_CONNECTED", [x, weights, bias], n_out, channels=co)
    g.output = x
    return g


def _align(n: int) -> int:
    return -(-n // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def arena_buffers(g: Graph) -> list[tuple[int, int, int]]:
    """Planned buffers as (aligned size, first op, last op), in TFLM's order: tensors by index,
    then scratch buffers. The model input is alive from op 0, the output until the last op."""
    first: dict[int, int] = {g.input: 0}
    last: dict[int, int] = {g.input: 0}
    scratch: list[tuple[int, int, int]] = []
    for i, op in enumerate(g.ops):
        for t in op.outputs:
            first.setdefault(t, i)
            last[t] = max(last.get(t, i), i)
        for t in op.inputs:
            if not g.tensors[t].const:
                last[t] = max(last.get(t, i), i)
        scratch.extend((_align(n), i, i) for n in op.scratch)
    last[g.output] = len(g.ops) - 1
    tensors = [
        (_align(t.nbytes), first[i], last[i])
        for i, t in enumerate(g.tensors)
        if not t.const and i in first
    ]
    return tensors + scratch


def plan_greedy(buffers: Sequence[tuple[int, int, int]]) -> list[int]:
    """Offsets for (size, first, last) buffers as TFLM's GreedyMemoryPlanner places them:
    largest first (stable for ties), each at the lowest gap that no buffer alive at the same
    time occupies."""
    order = sorted(range(len(buffers)), key=lambda i: -buffers[i][0])  # sorted() is stable
    offsets = [0] * len(buffers)
    placed: list[int] = []  # kept in offset order, like the planner's linked list
    for i in order:
        size, first, last = buffers[i]
        candidate = 0
        for j in placed:
            size_j, first_j, last_j = buffers[j]
            if first_j > last or last_j < first:
                continue  # not alive at the same time
            if offsets[j] - candidate >= size:
                break
            candidate = max(candidate, offsets[j] + size_j)
        offsets[i] = candidate
        placed.append(i)
        placed.sort(key=lambda j: offsets[j])
    return offsets


def arena_head(buffers: Sequence[tuple[int, int, int]]) -> int:
    """Bytes the greedy plan needs: the end of the highest buffer."""
    offsets = plan_greedy(buffers)
    return max((o + b[0] for o, b in zip(offsets, buffers, strict=True)), default=0)


def live_peak(buffers: Sequence[tuple[int, int, int]]) -> int:
    """The lower bound of any plan: the most bytes alive at one op."""
    if not buffers:
        return 0
    end = max(b[2] for b in buffers)
    return max(sum(s for s, f, la in buffers if f <= t <= la) for t in range(end + 1))
