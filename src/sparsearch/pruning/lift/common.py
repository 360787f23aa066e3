"""What the loader, the graph walk and the op table share: the hints of their errors and the
error for an operation sparsearch cannot rebuild."""

from __future__ import annotations

from typing import Any

from torch import fx

from sparsearch.errors import PruningError

SUPPORTED_HINT = (
    "sparsearch prune handles plain CNNs: Conv2d, BatchNorm2d, Linear, ReLU, pooling, "
    "flatten and residual adds"
)
SAVE_HINT = (
    "save the model with torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2') "
    "or torch.jit.save(torch.jit.script(model), 'model.pt')"
)


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _module_origin(node: fx.Node) -> tuple[str, str]:
    """The innermost module the node was traced in: its path and qualified class name."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    if not isinstance(kind, str):
        kind = f"{kind.__module__}.{kind.__qualname__}"
    return str(path), kind


def _unsupported(node: fx.Node, what: str | None = None) -> PruningError:
    op = what or f"operation {_op_name(node.target)}"
    path, kind = _module_origin(node)
    origin = f" in module '{path}' ({kind.rsplit('.', 1)[-1]})" if path else ""
    return PruningError(f"unsupported {op} at node '{node.name}'{origin}", hint=SUPPORTED_HINT)


def _op_name(target: Any) -> str:
    return str(target) if hasattr(target, "_schema") else getattr(target, "__name__", str(target))
