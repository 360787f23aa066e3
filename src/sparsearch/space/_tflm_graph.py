"""The int8 TFLite graph a model becomes, and TFLM's greedy arena planner.

``lower`` mirrors, tensor for tensor, what the litert-torch int8 export produces for our
sequential CNNs (checked on the 72 stripped flatbuffers of benchmarks/estimator_accuracy.py):

- BatchNorm folded into an int32 bias per output channel, ReLU fused;
- a conv whose input has one channel (the first conv on a grey or 1-D input, the pointwise conv
  after a one-channel depthwise) is emitted as DEPTHWISE_CONV_2D (depth multiplier = outputs);
- an explicit PAD before a stride-2 conv whose PyTorch padding differs from TFLite's SAME
  padding (even sizes), after which the conv is VALID; 1 x 1 convs are VALID, others SAME. PADs
  with equal paddings share one paddings tensor;
- global average pooling is MEAN (or SUM on a 1 x 1 map); a one-channel MEAN keeps its dims and
  is followed by a RESHAPE;
- flatten is TRANSPOSE (torch flattens NCHW) + RESHAPE, RESHAPE alone for one channel, nothing
  for a 1 x 1 map (FULLY_CONNECTED reads the 4-D tensor, keep_num_dims false).

A 1-D model (one-row input) lowers to the same operators with 1 x k windows: CONV_2D and
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
    """A tensor of the flatbuffer.

    ``channels``: quantization entries (scale + zero point) it carries: 1 for an activation,
    the output channels for weights and biases, 0 for the int32 operands (paddings, axes,
    shapes) that have none. ``qdim``: quantized along a dimension other than 0 (depthwise
    weights of more than one channel, dimension 3)."""

    nbytes: int
    const: bool
    channels: int = 1
    rank: int = 4
    qdim: bool = False


@dataclass(frozen=True)
class Op:
    """An operator. ``channels``: output channels with a per-channel requantization multiplier;
    ``options``: its builtin options table (kind first, then the fields that change its size)."""

    code: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    channels: int = 0
    scratch: tuple[int, ...] = ()  # bytes of kernel scratch buffers requested in Prepare
    options: tuple = ()


@dataclass
class Graph:
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    input: int = 0
    output: int = 0
    shared: dict[tuple, int] = field(default_factory=dict)

    def add(
        self,
        nbytes: int,
        const: bool = False,
        channels: int = 1,
        rank: int = 4,
        qdim: bool = False,
    ) -> int:
        self.tensors.append(Tensor(nbytes, const, channels, rank, qdim))
        return len(self.tensors) - 1

    def operand(self, nbytes: int, rank: int, key: tuple | None = None) -> int:
        """An int32 constant operand (paddings, axes, shape, permutation); ``key``: equal
        operands are one tensor (the converter shares equal PAD paddings)."""
        if key is not None and key in self.shared:
            return self.shared[key]
        t = self.add(nbytes, const=True, channels=0, rank=rank)
        if key is not None:
            self.shared[key] = t
        return t

    def op(
        self,
        code: str,
        inputs: Sequence[int],
        n_out: int,
        channels: int = 0,
        scratch: tuple[int, ...] = (),
        options: tuple = (),
        rank: int = 4,
    ) -> int:
        out = self.add(n_out, rank=rank)
        self.ops.append(Op(code, tuple(inputs), (out,), channels, scratch, options))
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
    rank = 4
    if not channels_last_input:
        x = g.op("TRANSPOSE", [x, g.operand(16, 1)], _numel(layers[0].in_shape))
    for layer in layers:
        n_out = _numel(layer.out_shape)
        c, h, w = layer.in_shape
        co = layer.out_shape[0]
        if layer.kind in ("conv", "dwconv"):
            valid = layer.kernel == 1
            if _needs_pad(layer):
                ph, pw = layer.padding_hw
                paddings = g.operand(32, 2, key=("paddings", ph, pw))
                x = g.op("PAD", [x, paddings], c * (h + 2 * ph) * (w + 2 * pw), options=("pad",))
                valid = True
            depthwise = layer.kind == "dwconv" or c == 1
            weights = g.add(layer.weights, const=True, channels=co, qdim=depthwise and co > 1)
            bias = g.add(4 * co, const=True, channels=co, rank=1)
            code = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
            opts = ("dw" if depthwise else "conv", valid)
            x = g.op(code, [x, weights, bias], n_out, channels=co, options=opts)
            rank = 4
        elif layer.kind == "maxpool":  # 2x2, or 1x2 on a 1-D layer: n_out says which
            x = g.op("MAX_POOL_2D", [x], n_out, options=("pool",))
        elif layer.kind == "gap":
            # reduce.cc Prepare: int32 accumulators per output, plus input-iterator and
            # resolved-axis scratch (4 B per input dim / per axis).
            scratch = (4 * co, 4 * 4, 4 * 2)
            code = "SUM" if h * w == 1 else "MEAN"
            keep = c == 1
            axis = g.operand(8, 1)
            rank = 4 if keep else 2
            x = g.op(code, [x, axis], n_out, scratch=scratch, options=("reduce", keep), rank=rank)
            if keep:
                x = g.op("RESHAPE", [x, g.operand(8, 1)], n_out, rank=2)
                rank = 2
        elif layer.kind == "flatten":
            if h * w > 1:
                if c > 1:  # NHWC and NCHW orders differ only then
                    x = g.op("TRANSPOSE", [x, g.operand(16, 1)], n_out)
                x = g.op("RESHAPE", [x, g.operand(8, 1)], n_out, rank=2)
                rank = 2
        else:  # dense
            weights = g.add(layer.weights, const=True, channels=co, rank=2)
            bias = g.add(4 * co, const=True, channels=co, rank=1)
            opts = ("fc", layer.relu, rank == 2)
            x = g.op("FULLY_CONNECTED", [x, weights, bias], n_out, co, options=opts, rank=2)
            rank = 2
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
    largest first, each at the lowest gap that no buffer alive at the same time occupies.

    Ties in size go in reverse order of addition: the planner fills its sort array from the
    tail and bubble-sorts it (stable), so the last buffer added of a size comes first."""
    order = sorted(range(len(buffers)), key=lambda i: (-buffers[i][0], -i))
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
