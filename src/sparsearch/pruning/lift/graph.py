"""The FX graph walk: an ``ExportedProgram``'s graph, node by node through the op table, into a
``torch.fx.GraphModule`` whose modules are named after the original module paths."""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import fx, nn
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from sparsearch.errors import PruningError
from sparsearch.pruning.lift.common import SUPPORTED_HINT, _module_origin, _unsupported
from sparsearch.pruning.lift.ops import _HANDLERS, _Tuple


def lift_exported(ep: ExportedProgram) -> fx.GraphModule:
    """A ``GraphModule`` (eval mode) computing what ``ep`` computes, with real ``nn.Conv2d``,
    ``nn.BatchNorm2d``, ``nn.Linear``, activation and pooling modules in place of the program's
    ATen calls. ``meta["training_batch_norm"]`` says whether ``ep`` normalized with batch
    statistics (a training-mode export); the modules then keep the file's running statistics."""
    return _Lifter(ep).run()


# A value computed from sizes and literals alone (``x.size(0) * 8``): only reshapes take one, and
# they read the shapes from node metadata instead. A tensor op that meets one is unsupported.
_SIZE = object()
_STATE_SUFFIXES = ("weight", "bias", "running_mean", "running_var")


class _Lifter:
    def __init__(self, ep: ExportedProgram) -> None:
        self.ep = ep
        self.graph = fx.Graph()
        self.env: dict[fx.Node, Any] = {}
        self.modules: dict[str, nn.Module] = {}
        self.names = _Namer()
        self.shared: dict[tuple[str, str], str] = {}
        self.training_bn = False
        self.fqns: dict[str, str] = {}

    def run(self) -> fx.GraphModule:
        outputs = self._user_outputs()
        needed = _ancestors(outputs)
        for node in self.ep.graph.nodes:
            if node in needed:
                self.env[node] = self._lift(node)
        results = [self._tensor(n, "output") for n in outputs]
        self.graph.output(results[0] if len(results) == 1 else tuple(results))
        root = nn.Module()  # a module root keeps the modules in graph order (a dict sorts)
        for name, module in self.modules.items():
            *parents, leaf = name.split(".")
            owner = root
            for part in parents:
                if not hasattr(owner, part):
                    owner.add_module(part, nn.Module())
                owner = owner.get_submodule(part)
            owner.add_module(leaf, module)
        gm = fx.GraphModule(root, self.graph, class_name="LiftedModel")
        gm.meta["training_batch_norm"] = self.training_bn
        return gm.eval()

    def _user_outputs(self) -> list[fx.Node]:
        output = next(n for n in self.ep.graph.nodes if n.op == "output")
        specs = self.ep.graph_signature.output_specs
        values = list(output.args[0])  # a flat tuple: buffer updates, then the user's outputs
        user = [v for s, v in zip(specs, values, strict=False) if s.kind == OutputKind.USER_OUTPUT]
        if not user or not all(isinstance(v, fx.Node) for v in user):
            raise PruningError("the model returns no tensor", hint=SUPPORTED_HINT)
        return user

    def _lift(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return self._placeholder(node)
        if node.op != "call_function":
            raise _unsupported(node, f"a {node.op} node")
        scalar = isinstance(
            node.meta.get("val"), int | float | bool | torch.SymInt | torch.SymFloat
        )
        if scalar or all(self.env.get(n) is _SIZE for n in node.all_input_nodes):
            return _SIZE  # x.size(0), arithmetic on it (traced: 0-d tensors): reshape arguments
        handler = _HANDLERS.get(node.target)
        if handler is None:
            raise _unsupported(node)
        return handler(self, node, _bind(node))

    def _placeholder(self, node: fx.Node) -> Any:
        spec = next(s for s in self.ep.graph_signature.input_specs if s.arg.name == node.name)
        if spec.kind == InputKind.USER_INPUT:
            if any(n.op == "placeholder" for n in self.graph.nodes):
                raise PruningError(
                    "the model takes more than one input", hint="it must take one (N, C, H, W)"
                )
            return self.graph.placeholder("x")
        fqn = spec.target or node.name
        self.fqns[node.name] = fqn
        value = self.ep.state_dict.get(fqn, self.ep.constants.get(fqn))
        if not isinstance(value, torch.Tensor):
            raise _unsupported(node, f"a {spec.kind.name.lower()} input")
        return value.detach()

    # -- values

    def _tensor(self, value: Any, role: str, node: fx.Node | None = None) -> fx.Node:
        """The lifted graph node of a data tensor argument."""
        lifted = self.env.get(value) if isinstance(value, fx.Node) else None
        if isinstance(lifted, fx.Node):
            return lifted
        if isinstance(lifted, _Tuple):
            raise _unsupported(value, f"the tuple result of {lifted.op}")
        raise _unsupported(node or value, f"a constant or non-tensor {role}")

    def _const(self, value: Any, node: fx.Node, role: str) -> torch.Tensor | None:
        """The tensor of a parameter/buffer argument (``None`` if absent)."""
        if value is None:
            return None
        lifted = self.env.get(value) if isinstance(value, fx.Node) else None
        if isinstance(lifted, torch.Tensor):
            return lifted
        raise _unsupported(node, f"a computed (not stored) {role}")

    # -- emitting

    def module(
        self, node: fx.Node, module: nn.Module, args: tuple[Any, ...], weight: Any = None
    ) -> fx.Node:
        """A ``call_module`` node running ``module``; one module per stored ``weight`` (an
        argument of ``node``), so a layer applied twice stays one layer."""
        key = self.fqns.get(weight.name) if isinstance(weight, fx.Node) else None
        shared = (type(module).__name__, key or "")
        if key is not None and shared in self.shared:
            name = self.shared[shared]
        else:
            name = self.names.claim(self._module_path(node))
            self.modules[name] = module.eval()
            if key is not None:
                self.shared[shared] = name
        return self.graph.call_module(name, args)

    def function(self, target: Callable[..., Any], *args: Any, **kwargs: Any) -> fx.Node:
        return self.graph.call_function(target, args, kwargs)

    def _module_path(self, node: fx.Node) -> str:
        for arg in node.args:
            fqn = self.fqns.get(arg.name) if isinstance(arg, fx.Node) else None
            if fqn and "." in fqn and fqn.rsplit(".", 1)[1] in _STATE_SUFFIXES:
                return fqn.rsplit(".", 1)[0]
        path, kind = _module_origin(node)
        if path and kind.startswith("torch.nn.modules."):
            return path
        return re.sub(r"_(?=_|$)", "", node.name)  # relu__1 (TorchScript's relu_) -> relu_1


class _Namer:
    """Unique dotted module paths, each segment a valid module name that shadows nothing."""

    _RESERVED = set(dir(fx.GraphModule)) | set(keyword.kwlist) | {"graph", "code", "meta"}

    def __init__(self) -> None:
        self.leaves: set[str] = set()
        self.containers: set[str] = set()

    def claim(self, path: str) -> str:
        parts = [re.sub(r"\W", "_", p) or "_" for p in path.split(".")]
        parts = [p + "_" if p in self._RESERVED else p for p in parts]
        base = ".".join(parts)
        name, i = base, 0
        while self._taken(name):
            i += 1
            name = f"{base}_{i}"
        self.leaves.add(name)
        segments = name.split(".")
        self.containers.update(".".join(segments[:k]) for k in range(1, len(segments)))
        return name

    def _taken(self, name: str) -> bool:
        segments = name.split(".")
        prefixes = {".".join(segments[:k]) for k in range(1, len(segments))}
        return name in self.leaves or name in self.containers or bool(prefixes & self.leaves)


def _bind(node: fx.Node) -> dict[str, Any]:
    """The node's arguments by schema name, defaults filled in."""
    schema = getattr(node.target, "_schema", None)
    if schema is None:  # a Python function (operator.getitem, operator.add)
        return {f"arg{i}": a for i, a in enumerate(node.args)} | dict(node.kwargs)
    bound: dict[str, Any] = {}
    positional = list(node.args)
    for arg in schema.arguments:
        if positional and not arg.kwarg_only:
            bound[arg.name] = positional.pop(0)
        elif arg.name in node.kwargs:
            bound[arg.name] = node.kwargs[arg.name]
        elif arg.has_default_value():
            bound[arg.name] = arg.default_value
    return bound


def _ancestors(outputs: list[fx.Node]) -> set[fx.Node]:
    seen: set[fx.Node] = set()
    stack = list(outputs)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(node.all_input_nodes)
    return seen
