"""From the graph to the layers ``invoke`` runs, with two whole-graph rewrites that save a
buffer and a copy each while keeping TFLM's outputs bit for bit:

- ``PAD -> CONV_2D / DEPTHWISE_CONV_2D (VALID)``: the conv pads itself. A padded byte holds the
  input's zero point, so its product ``w * (zp - zp)`` is 0, which is what skipping the tap
  adds too.
- ``TRANSPOSE -> RESHAPE -> FULLY_CONNECTED`` (a flatten in PyTorch's NCHW order): the dense
  layer reads the NHWC map with its weight columns permuted; its sums have the same terms.
"""

from __future__ import annotations

from typing import Any

from sparsearch.codegen.graph import Model, ModelError, Operator, Tensor
from sparsearch.codegen.ops import HINT, Layer, conv, fully_connected, lower
from sparsearch.codegen.ops.base import int_values


def check_io(model: Model) -> None:
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ModelError(
            f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; the C "
            "target supports one of each",
            HINT,
        )
    for what, i in (("input", model.inputs[0]), ("output", model.outputs[0])):
        t = model.tensor(i)
        if t.dtype != "int8" or len(t.scales) != 1:
            raise ModelError(
                f"the model's {what} (tensor {i}) is {t.dtype}"
                + ("" if t.scales else ", not quantized")
                + "; the C target needs an int8, per-tensor quantized input and output",
                "export the model with int8 input and output (full integer quantization)",
            )
        if t.is_const:
            raise ModelError(f"the model's {what} is a constant tensor", HINT)
    if not model.operators:
        raise ModelError("the model has no operators", HINT)


def _consumers(model: Model) -> dict[int, list[Operator]]:
    users: dict[int, list[Operator]] = {}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0:
                users.setdefault(t, []).append(op)
    return users


def _only_user(model: Model, users: dict[int, list[Operator]], t: int) -> Operator | None:
    """The one operator reading ``t`` (a plain one: a first input, one output), or None."""
    got = users.get(t, [])
    if len(got) != 1 or t in model.outputs:
        return None
    op = got[0]
    return op if _plain(op) else None


def _plain(op: Operator) -> bool:
    """An operator with a first input that is a tensor and exactly one output (the folds look
    only at these; anything else is left to the operator's own checks)."""
    return len(op.outputs) == 1 and len(op.inputs) >= 1 and op.inputs[0] >= 0


def _pad_fold(model: Model, op: Operator, users: dict[int, list[Operator]]) -> Operator | None:
    """The conv that may absorb PAD ``op``, or None."""
    if op.code != "PAD" or len(op.inputs) != 2 or not _plain(op) or op.inputs[1] < 0:
        return None
    nxt = _only_user(model, users, op.outputs[0])
    if nxt is None or nxt.code not in conv.CODES or nxt.inputs[0] != op.outputs[0]:
        return None
    if nxt.options.get("padding") != "VALID":
        return None
    x, y = model.tensor(op.inputs[0]), model.tensor(op.outputs[0])
    pads_t = model.tensor(op.inputs[1])
    if not pads_t.is_const or pads_t.dtype != "int32" or len(x.shape) != 4:
        return None
    pads = int_values(pads_t)
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 6, 7)) or min(pads) < 0:
        return None
    if x.scales != y.scales or x.zero_points != y.zero_points or not _int8_activation(x):
        return None
    return nxt


def _flatten_fold(
    model: Model, op: Operator, users: dict[int, list[Operator]]
) -> tuple[Operator, Operator] | None:
    """(RESHAPE, FULLY_CONNECTED) after TRANSPOSE ``op`` that may read its input directly."""
    if op.code != "TRANSPOSE" or not _plain(op):
        return None
    reshape = _only_user(model, users, op.outputs[0])
    if reshape is None or reshape.code != "RESHAPE" or reshape.inputs[0] != op.outputs[0]:
        return None
    dense = _only_user(model, users, reshape.outputs[0])
    if dense is None or dense.code != "FULLY_CONNECTED" or dense.inputs[0] != reshape.outputs[0]:
        return None
    x, t, r = (model.tensor(i) for i in (op.inputs[0], op.outputs[0], reshape.outputs[0]))
    same = {(v.scales, v.zero_points, v.dtype) for v in (x, t, r)}
    if len(same) != 1 or x.numel != r.numel or not _int8_activation(x):
        return None
    perm = model.tensor(op.inputs[1]) if len(op.inputs) == 2 and op.inputs[1] >= 0 else None
    if perm is None or not perm.is_const or perm.dtype != "int32":
        return None
    if sorted(int_values(perm)) != list(range(len(x.shape))):
        return None
    return reshape, dense


def _int8_activation(t: Tensor) -> bool:
    return (
        t.dtype == "int8"
        and not t.is_const
        and len(t.scales) == 1
        and -128 <= t.zero_points[0] <= 127
    )


def _columns(model: Model, transpose: Operator) -> Any:
    """For each input element (NHWC order), the column of the transposed, flattened input."""
    import numpy as np

    x = model.tensor(transpose.inputs[0])
    perm = [int(p) for p in int_values(model.tensor(transpose.inputs[1]))]
    src = np.arange(x.numel).reshape(x.shape).transpose(perm).ravel()
    return np.argsort(src)


def layers(model: Model) -> list[Layer]:
    """The layers of ``model`` in execution order, rewrites applied."""
    check_io(model)
    users = _consumers(model)
    skip: set[int] = set()
    special: dict[int, Layer] = {}
    for op in model.operators:
        if op.index in skip:
            continue
        target = _pad_fold(model, op, users)
        if target is not None:
            pads = int_values(model.tensor(op.inputs[1]))
            try:
                special[target.index] = conv.lower(
                    target,
                    model,
                    pads=((pads[2], pads[3]), (pads[4], pads[5])),
                    source=op.inputs[0],
                )
            except ModelError:
                pass  # not foldable after all: run the PAD as it is
            else:
                skip.add(op.index)
                continue
        folded = _flatten_fold(model, op, users)
        if folded is not None:
            reshape, dense = folded
            special[dense.index] = fully_connected.lower(
                dense, model, source=op.inputs[0], columns=_columns(model, op)
            )
            skip.update((op.index, reshape.index))
    out = []
    for op in model.operators:
        if op.index in skip:
            continue
        out.append(special.get(op.index) or lower(op, model))
    return out
