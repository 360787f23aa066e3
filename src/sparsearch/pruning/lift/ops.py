"""The op table: each ATen op the lifting understands and what it becomes in the rebuilt graph
(a fresh ``nn.Module`` with the weights copied, or a pass-through ``call_function``)."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import fx, nn
from torch.export import ExportedProgram

from sparsearch.pruning.lift.common import _op_name, _shape, _unsupported

aten = torch.ops.aten


class _Lifting(Protocol):
    """What a handler may use of the graph walk (``graph._Lifter``)."""

    ep: ExportedProgram
    env: dict[fx.Node, Any]
    fqns: dict[str, str]
    training_bn: bool

    def _tensor(self, value: Any, role: str, node: fx.Node | None = None) -> fx.Node: ...

    def _const(self, value: Any, node: fx.Node, role: str) -> torch.Tensor | None: ...

    def module(
        self, node: fx.Node, module: nn.Module, args: tuple[Any, ...], weight: Any = None
    ) -> fx.Node: ...

    def function(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> fx.Node: ...


class _Tuple:
    """A multi-output op's results: the kept output first, ``None`` for dropped ones."""

    def __init__(self, op: str, items: list[fx.Node | None]) -> None:
        self.op = op
        self.items = items


_Handler = Callable[[_Lifting, fx.Node, dict[str, Any]], Any]
_HANDLERS: dict[Any, _Handler] = {}


def _handles(*ops: Any) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for op in ops:
            _HANDLERS[op] = fn
        return fn

    return register


def _ints(value: Any, n: int = 2) -> tuple[int, ...]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    return tuple(int(v) for v in (items * n if len(items) == 1 else items))


def _rank(node: fx.Node) -> int | None:
    val = node.meta.get("val")
    return val.dim() if isinstance(val, torch.Tensor) else None


def _same_size(a: Any, b: Any) -> bool:
    return str(a) == str(b)  # ints or symbolic sizes ("s6"), compared without guards


@_handles(
    aten.conv2d.default, aten.conv2d.padding, aten.convolution.default,
    aten._convolution_mode.default,
)  # fmt: skip
def _conv(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    x = lift._tensor(a["input"], "input", node)
    weight = lift._const(a["weight"], node, "convolution weight")
    bias = lift._const(a["bias"], node, "convolution bias")
    if a.get("transposed") or weight is None or weight.dim() != 4:
        raise _unsupported(node, f"operation {_op_name(node.target)} (only 2-D convolutions)")
    groups = int(a["groups"])
    padding = a["padding"] if isinstance(a["padding"], str) else _ints(a["padding"])
    conv = nn.Conv2d(
        weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]),
        stride=_ints(a["stride"]), padding=padding, dilation=_ints(a["dilation"]),
        groups=groups, bias=bias is not None,
    )  # fmt: skip
    _copy(conv, weight=weight, bias=bias)
    return lift.module(node, conv, (x,), weight=a["weight"])


_BN_TUPLES = {
    aten._native_batch_norm_legit_no_training.default: False,
    aten._native_batch_norm_legit.default: None,
    aten._native_batch_norm_legit.no_stats: None,
    aten._native_batch_norm_legit_functional.default: None,
    aten.native_batch_norm.default: None,
    aten._batch_norm_with_update.default: True,
    aten._batch_norm_no_update.default: False,
}


@_handles(aten.batch_norm.default, *_BN_TUPLES)
def _batch_norm(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> Any:
    x = lift._tensor(a["input"], "input", node)
    weight = lift._const(a["weight"], node, "batch-norm weight")
    bias = lift._const(a["bias"], node, "batch-norm bias")
    mean = lift._const(a.get("running_mean"), node, "batch-norm running mean")
    var = lift._const(a.get("running_var"), node, "batch-norm running variance")
    fixed = _BN_TUPLES.get(node.target)
    training = bool(a["training"]) if fixed is None else fixed
    val = a["input"].meta.get("val")
    kind = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}.get(_rank(a["input"]) or 0)
    if kind is None:
        raise _unsupported(node, "batch norm of a tensor that is not (N, C[, L]) or (N, C, H, W)")
    bn = kind(
        int(val.shape[1]), eps=float(a["eps"]), momentum=float(a["momentum"]),
        affine=weight is not None, track_running_stats=mean is not None,
    )  # fmt: skip
    _copy(bn, weight=weight, bias=bias, running_mean=mean, running_var=var)
    if mean is not None:  # not an argument of the op, but momentum=None averages by it
        prefix = lift.fqns.get(a["running_mean"].name, "").removesuffix("running_mean")
        _copy(bn, num_batches_tracked=lift.ep.state_dict.get(prefix + "num_batches_tracked"))
    lift.training_bn |= training
    stored = a["weight"] if weight is not None else a.get("running_mean")
    out = lift.module(node, bn, (x,), weight=stored)
    if node.target is aten.batch_norm.default:
        return out
    return _Tuple(_op_name(node.target), [out] + [None] * 4)


@_handles(aten.linear.default)
def _linear(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    x = lift._tensor(a["input"], "input", node)
    weight = lift._const(a["weight"], node, "linear weight")
    bias = lift._const(a["bias"], node, "linear bias")
    return _emit_linear(lift, node, x, (weight, a["weight"]), bias)


@_handles(aten.addmm.default, aten.mm.default)
def _matmul(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
        raise _unsupported(node, "addmm with a scale (beta or alpha other than 1)")
    x = lift._tensor(a.get("mat1", a.get("self")), "input", node)
    transposed = lift._const(a["mat2"], node, "linear weight")
    bias = lift._const(a["self"], node, "linear bias") if "mat1" in a else None
    if transposed is None or transposed.dim() != 2 or (bias is not None and bias.dim() != 1):
        raise _unsupported(node, f"operation {_op_name(node.target)} (not a linear layer)")
    return _emit_linear(lift, node, x, (transposed.t(), a["mat2"]), bias)


def _emit_linear(
    lift: _Lifting,
    node: fx.Node,
    x: fx.Node,
    stored: tuple[torch.Tensor | None, fx.Node],
    bias: torch.Tensor | None,
) -> fx.Node:
    """``stored``: the (out, in) weight and the argument it came from."""
    weight = stored[0]
    if weight is None or weight.dim() != 2:
        raise _unsupported(node, f"operation {_op_name(node.target)} (not a linear layer)")
    linear = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    _copy(linear, weight=weight, bias=bias)
    return lift.module(node, linear, (x,), weight=stored[1])


@_handles(aten.permute.default, aten.t.default, aten.transpose.int, aten.numpy_T.default)
def _fold_transpose(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> torch.Tensor:
    """A transposed stored weight (``addmm``'s operand) is computed here, once."""
    tensor = lift._const(a["self"], node, "transposed tensor")
    source = a["self"]
    if source.name in lift.fqns:  # the Linear is named after the weight, not its transpose
        lift.fqns[node.name] = lift.fqns[source.name]
    return node.target(tensor, *[v for k, v in a.items() if k != "self"])


def _hardtanh(a: dict[str, Any]) -> nn.Module:
    low, high = float(a["min_val"]), float(a["max_val"])
    return nn.ReLU6() if (low, high) == (0.0, 6.0) else nn.Hardtanh(low, high)


def _max_pool(a: dict[str, Any]) -> nn.Module:
    kernel = _ints(a["kernel_size"])
    return nn.MaxPool2d(
        kernel, stride=_ints(a["stride"]) if a["stride"] else kernel,
        padding=_ints(a["padding"]), dilation=_ints(a["dilation"]), ceil_mode=bool(a["ceil_mode"]),
    )  # fmt: skip


def _avg_pool(a: dict[str, Any]) -> nn.Module:
    kernel = _ints(a["kernel_size"])
    return nn.AvgPool2d(
        kernel, stride=_ints(a["stride"]) if a["stride"] else kernel,
        padding=_ints(a["padding"]), ceil_mode=bool(a["ceil_mode"]),
        count_include_pad=bool(a["count_include_pad"]), divisor_override=a["divisor_override"],
    )  # fmt: skip


# Weightless layers: op -> (its module, given the op's arguments; outputs it has, if a tuple).
_LAYERS: dict[Any, tuple[Callable[[dict[str, Any]], nn.Module], int]] = {
    aten.relu.default: (lambda a: nn.ReLU(), 0),
    aten.relu_.default: (lambda a: nn.ReLU(), 0),
    aten.relu6.default: (lambda a: nn.ReLU6(), 0),
    aten.hardtanh.default: (_hardtanh, 0),
    aten.hardtanh_.default: (_hardtanh, 0),
    aten.max_pool2d.default: (_max_pool, 0),
    aten.max_pool2d_with_indices.default: (_max_pool, 2),
    aten.avg_pool2d.default: (_avg_pool, 0),
    aten.adaptive_avg_pool2d.default: (lambda a: nn.AdaptiveAvgPool2d(_ints(a["output_size"])), 0),
    aten._adaptive_avg_pool2d.default: (lambda a: nn.AdaptiveAvgPool2d(_ints(a["output_size"])), 0),
    aten.adaptive_max_pool2d.default: (lambda a: nn.AdaptiveMaxPool2d(_ints(a["output_size"])), 2),
}


@_handles(*_LAYERS)
def _layer(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> Any:
    make, outputs = _LAYERS[node.target]
    out = lift.module(node, make(a), (_data_in_place(lift, node, a["self"]),))
    return _Tuple(_op_name(node.target), [out] + [None] * (outputs - 1)) if outputs else out


@_handles(aten.mean.dim)
def _mean(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    """A mean over H and W is global average pooling (``x.mean((2, 3))``)."""
    x = lift._tensor(a["self"], "input", node)
    dims = {int(d) % 4 for d in a["dim"] or []}
    if _rank(a["self"]) != 4 or dims != {2, 3} or a.get("dtype") is not None:
        raise _unsupported(node, f"mean over dims {list(a['dim'] or [])} (only over H and W)")
    pooled = lift.module(node, nn.AdaptiveAvgPool2d(1), (x,))
    return pooled if a["keepdim"] else lift.function(torch.flatten, pooled, 1)


@_handles(aten.flatten.using_ints)
def _flatten(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    x = lift._tensor(a["self"], "input", node)
    return lift.function(torch.flatten, x, int(a["start_dim"]), int(a["end_dim"]))


@_handles(
    aten.view.default, aten.reshape.default, aten._unsafe_view.default,
    aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
)  # fmt: skip
def _reshape(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    """Only reshapes to (N, features) that keep the batch: they become ``flatten(x, 1)``, which
    holds for any batch size and whatever channels pruning leaves."""
    source = a["self"]
    x = lift._tensor(source, "input", node)
    before, after = source.meta.get("val"), node.meta.get("val")
    if not isinstance(before, torch.Tensor) or not isinstance(after, torch.Tensor):
        raise _unsupported(node, f"reshape {_op_name(node.target)} without shape information")
    if list(map(str, before.shape)) == list(map(str, after.shape)):
        return x
    if after.dim() == 2 and before.dim() >= 2 and _same_size(before.shape[0], after.shape[0]):
        return lift.function(torch.flatten, x, 1)
    raise _unsupported(
        node, f"reshape from {_shape(before.shape)} to {_shape(after.shape)} (only flattening)"
    )


@_handles(aten.add.Tensor, aten.add_.Tensor, operator.add, operator.iadd)
def _add(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    """Two activations added (a residual connection) stay an add, so Torch-Pruning prunes the
    two branches' channels together; adding a plain number is kept too."""
    left, right = (a["self"], a["other"]) if "self" in a else (a["arg0"], a["arg1"])
    if not isinstance(left, fx.Node):
        left, right = right, left  # 1 + x
    x = _data_in_place(lift, node, left)
    other = lift._tensor(right, "addend", node) if isinstance(right, fx.Node) else right
    alpha = a.get("alpha", 1)
    if alpha != 1:
        return lift.function(torch.add, x, other, alpha=alpha)
    return lift.function(operator.add, x, other)


@_handles(aten.cat.default)
def _cat(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    parts = [lift._tensor(t, "concatenated tensor", node) for t in a["tensors"]]
    rank = _rank(node)
    if rank is None or int(a["dim"]) % rank != 1:
        raise _unsupported(node, "concatenation other than along channels (dim 1)")
    return lift.function(torch.cat, parts, 1)


@_handles(
    aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
    aten.dropout.default,
)  # fmt: skip
def _identity(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    if a.get("train"):
        raise _unsupported(node, "training-mode dropout (export the model in eval mode)")
    return lift._tensor(a.get("self", a.get("input")), "input", node)


@_handles(operator.getitem)
def _getitem(lift: _Lifting, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    result = lift.env.get(a["arg0"])
    index = a["arg1"]
    if not isinstance(result, _Tuple) or not isinstance(index, int):
        raise _unsupported(node, "indexing")
    item = result.items[index] if index < len(result.items) else None
    if item is None:
        raise _unsupported(node, f"output {index} of {result.op}")
    return item


def _data_in_place(lift: _Lifting, node: fx.Node, value: Any) -> fx.Node:
    """The data input of a possibly in-place op (``relu_``, ``add_``): kept as a plain op only
    when nothing else reads the tensor it overwrites."""
    schema = getattr(node.target, "_schema", None)
    in_place = node.target is operator.iadd or (schema is not None and schema.name.endswith("_"))
    if in_place and isinstance(value, fx.Node) and len(value.users) > 1:
        raise _unsupported(node, f"in-place {_op_name(node.target)} of a tensor used elsewhere")
    return lift._tensor(value, "input", node)


def _copy(module: nn.Module, **tensors: torch.Tensor | None) -> None:
    with torch.no_grad():
        for name, value in tensors.items():
            target = getattr(module, name)
            if value is not None and target is not None:
                target.copy_(value.detach().to(target.dtype).reshape(target.shape))
