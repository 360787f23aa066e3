"""Load a user's TorchScript or ``torch.export`` CNN as an ordinary ``nn.Module`` that
Torch-Pruning can prune.

Torch-Pruning's dependency graph works on real ``nn.Conv2d`` / ``nn.BatchNorm2d`` /
``nn.Linear`` modules: it hooks them, follows the autograd graph between them and edits their
weights in place. Neither a ``ScriptModule`` nor an ``ExportedProgram`` (whose graph calls
``aten.conv2d`` on lifted parameters) offers that, so this module rebuilds the network:

- :func:`load_model_file` tells the two formats apart by their zip members (a ``torch.export``
  archive has ``archive_format``, a TorchScript archive ``constants.pkl`` and ``code/``), not by
  the suffix, loads on the CPU, checks that the model runs on the example inputs, lifts it and
  insists that the rebuilt model's outputs equal the file's (``atol=1e-5``).
- TorchScript goes through ``torch._export.converter.TS2EPConverter`` (torch 2.13, the version
  sparsearch pins) into an ``ExportedProgram`` first. It converts scripted *and* traced models,
  custom ``forward``s with residual adds included, and yields the same ATen graph as
  ``torch.export``, so one lifting path serves both formats. Rebuilding from a ScriptModule's
  submodules was the alternative; it only covers ``nn.Sequential`` chains and a traced
  module keeps no strides or paddings, so it was not kept.
- :func:`lift_exported` walks the program's graph and emits a ``torch.fx.GraphModule``: Conv2d,
  BatchNorm (every eval- and training-mode variant export and its decompositions produce),
  Linear (``aten.linear``, or ``addmm`` / ``mm`` of a transposed weight), ReLU / ReLU6 /
  Hardtanh and pooling nodes become ``call_module`` nodes on fresh modules with the weights
  copied; flatten, batch-preserving reshapes, adds and channel concatenations stay
  ``call_function`` nodes, so Torch-Pruning sees a residual add and couples the channels it
  joins. Any other operation is a :class:`PruningError` naming it. Only what the user's outputs
  depend on is lifted (a training-mode program's buffer updates are dropped).

Modules are named after the original module paths (the weight's name minus ``.weight``, else
the node's ``nn_module_stack``, else the node's name), so ``features.0`` stays ``features.0``
and the state-dict keys match the original model's. A batch size baked into a static export
does not carry over: reshapes that keep the batch become ``flatten(x, 1)``.
"""

from __future__ import annotations

import io
import keyword
import math
import operator
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from sparsearch.errors import PruningError

SUPPORTED_HINT = (
    "sparsearch prune handles plain CNNs: Conv2d, BatchNorm2d, Linear, ReLU, pooling, "
    "flatten and residual adds"
)
SAVE_HINT = (
    "save the model with torch.export.save(torch.export.export(model.eval(), (x,)), 'model.pt2') "
    "or torch.jit.save(torch.jit.script(model), 'model.pt')"
)
ATOL = 1e-5

aten = torch.ops.aten


# --- loading ----------------------------------------------------------------------------------


def load_model_file(path: str | Path, example_inputs: torch.Tensor) -> nn.Module:
    """The model in ``path`` (TorchScript or ``torch.export``) as a prunable ``nn.Module`` in eval
    mode, verified to give the file's outputs on ``example_inputs`` (N, C, H, W)."""
    path = Path(path)
    if detect_format(path) == "export":
        ep = _load(path, "torch.export", torch.export.load)
        reference = _exported_reference(ep, example_inputs, path)
    else:
        script = _load(path, "TorchScript", lambda f: torch.jit.load(f, map_location="cpu"))
        reference = _run_checked(script, example_inputs, path, _shape(example_inputs.shape))
        ep = _script_to_exported(script, example_inputs, path)
    lifted = lift_exported(ep)
    _verify(lifted, reference, path)
    return lifted.eval()


def detect_format(path: Path) -> str:
    """``"export"`` or ``"torchscript"``, from the zip members of ``path``."""
    if not path.is_file():
        raise PruningError(
            f"model file not found: {path}",
            hint="give the path of a TorchScript (torch.jit.save) or torch.export "
            "(torch.export.save) file",
        )
    members = _zip_members(path)
    if "archive_format" in members:
        return "export"
    if "constants.pkl" in members or any(m.startswith("code/") for m in members):
        return "torchscript"
    kind = "a torch.save pickle (a whole module or a state_dict)" if "data.pkl" in members else ""
    raise PruningError(
        f"not a TorchScript or torch.export file: {path}" + (f" ({kind})" if kind else ""),
        hint=SAVE_HINT,
    )


def _zip_members(path: Path) -> set[str]:
    """Member names below the archive's top folder (both formats nest everything in one)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise PruningError(f"not a TorchScript or torch.export file: {path}", hint=SAVE_HINT) from e
    return {name.split("/", 1)[1] for name in names if "/" in name}


def _load(path: Path, kind: str, loader: Callable[[Any], Any]) -> Any:
    try:
        with _quiet():  # torch.export.load wants a buffer or a ".pt2" name: give it a buffer
            return loader(io.BytesIO(path.read_bytes()))
    except Exception as e:  # a damaged archive raises whatever its reader meets
        raise PruningError(
            f"cannot load {kind} file {path}: {_first_line(e)}", hint=SAVE_HINT
        ) from e


def _script_to_exported(script: Any, x: torch.Tensor, path: Path) -> ExportedProgram:
    from torch._export.converter import TS2EPConverter

    try:
        with _quiet():
            return TS2EPConverter(script, (x,)).convert()
    except Exception as e:
        raise PruningError(
            f"cannot convert the TorchScript model {path} to a torch.export program: "
            f"{_first_line(e)}",
            hint="export it with torch.export.save(torch.export.export(model.eval(), (x,)), "
            "'model.pt2') instead",
        ) from e


def _exported_reference(ep: ExportedProgram, x: torch.Tensor, path: Path) -> _Reference:
    """The program's outputs on ``x``, or on ``x`` cut/repeated to the batch size a static
    export was made with (the lifted model takes any batch size)."""
    if len(ep.graph_signature.user_inputs) != 1:
        raise PruningError(
            f"the model in {path} takes {len(ep.graph_signature.user_inputs)} inputs",
            hint="sparsearch prune needs a model of one (N, C, H, W) input",
        )
    shape = _exported_input_shape(ep)
    if shape is None:
        return _run_checked(ep.module(), x, path, _shape(x.shape))
    given = f"{_shape(x.shape)} (it was exported for inputs of shape {_shape(shape)})"
    if len(shape) == x.dim() and isinstance(shape[0], int):
        x = _fit_batch(x, shape[0])
    return _run_checked(ep.module(), x, path, given)


def _exported_input_shape(ep: ExportedProgram) -> tuple[Any, ...] | None:
    user = set(ep.graph_signature.user_inputs)
    for node in ep.graph.nodes:
        if node.op == "placeholder" and node.name in user:
            val = node.meta.get("val")
            return tuple(val.shape) if isinstance(val, torch.Tensor) else None
    return None


def _fit_batch(x: torch.Tensor, batch: int) -> torch.Tensor:
    if x.shape[0] == batch or x.shape[0] == 0:
        return x
    return x.repeat(math.ceil(batch / x.shape[0]), *([1] * (x.dim() - 1)))[:batch]


@dataclass(frozen=True)
class _Reference:
    inputs: torch.Tensor
    outputs: list[torch.Tensor]


def _run_checked(model: Any, x: torch.Tensor, path: Path, given: str) -> _Reference:
    """The model's outputs on ``x``; ``given`` describes the input the user's data makes."""
    try:
        outputs = _run_pure(model, x)
    except Exception as e:
        raise PruningError(
            f"the model in {path} fails on an input of shape {given}: {_first_line(e)}",
            hint="the model must take (N, C, H, W) inputs of the data set it is pruned on",
        ) from e
    return _Reference(x, outputs)


def _run_pure(model: Any, x: torch.Tensor) -> list[torch.Tensor]:
    """The model's output tensors, leaving its buffers (training-mode BN statistics) as found."""
    saved = [(b, b.detach().clone()) for _, b in model.named_buffers()]
    try:
        with torch.no_grad(), _quiet():
            leaves = pytree.tree_leaves(model(x))
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)
    return [t for t in leaves if isinstance(t, torch.Tensor)]


def _verify(lifted: fx.GraphModule, reference: _Reference, path: Path) -> None:
    """Raise unless ``lifted`` reproduces the file's outputs (in the file's BN mode)."""
    lifted.train(bool(lifted.meta.get("training_batch_norm")))
    outputs = _run_pure(lifted, reference.inputs)
    lifted.eval()
    same = len(outputs) == len(reference.outputs) and all(
        a.shape == b.shape and torch.allclose(a, b, atol=ATOL)
        for a, b in zip(outputs, reference.outputs, strict=False)
    )
    if not same:
        worst = max(
            ((a - b).abs().max().item() for a, b in zip(outputs, reference.outputs, strict=False)
             if a.shape == b.shape),
            default=math.inf,
        )  # fmt: skip
        raise PruningError(
            f"the rebuilt model's outputs differ from those of {path} "
            f"(largest difference {worst:.3g}, allowed {ATOL:g})",
            hint="the model uses an operation sparsearch rebuilds wrongly; " + SUPPORTED_HINT,
        )


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch's deprecation and specialization warnings around its loaders."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _shape(shape: Any) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# --- lifting ----------------------------------------------------------------------------------


def lift_exported(ep: ExportedProgram) -> fx.GraphModule:
    """A ``GraphModule`` (eval mode) computing what ``ep`` computes, with real ``nn.Conv2d``,
    ``nn.BatchNorm2d``, ``nn.Linear``, activation and pooling modules in place of the program's
    ATen calls. ``meta["training_batch_norm"]`` says whether ``ep`` normalized with batch
    statistics (a training-mode export); the modules then keep the file's running statistics."""
    return _Lifter(ep).run()


class _Tuple:
    """A multi-output op's results: the kept output first, ``None`` for dropped ones."""

    def __init__(self, op: str, items: list[fx.Node | None]) -> None:
        self.op = op
        self.items = items


# A value computed from sizes and literals alone (``x.size(0) * 8``): only reshapes take one, and
# they read the shapes from node metadata instead. A tensor op that meets one is unsupported.
_SIZE = object()
_STATE_SUFFIXES = ("weight", "bias", "running_mean", "running_var")
_Handler = Callable[["_Lifter", fx.Node, dict[str, Any]], Any]
_HANDLERS: dict[Any, _Handler] = {}


def _handles(*ops: Any) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for op in ops:
            _HANDLERS[op] = fn
        return fn

    return register


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


def _ints(value: Any, n: int = 2) -> tuple[int, ...]:
    items = list(value) if isinstance(value, list | tuple) else [value]
    return tuple(int(v) for v in (items * n if len(items) == 1 else items))


def _rank(node: fx.Node) -> int | None:
    val = node.meta.get("val")
    return val.dim() if isinstance(val, torch.Tensor) else None


def _same_size(a: Any, b: Any) -> bool:
    return str(a) == str(b)  # ints or symbolic sizes ("s6"), compared without guards


# --- operations -------------------------------------------------------------------------------


@_handles(
    aten.conv2d.default, aten.conv2d.padding, aten.convolution.default,
    aten._convolution_mode.default,
)  # fmt: skip
def _conv(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
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
def _batch_norm(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> Any:
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
def _linear(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    x = lift._tensor(a["input"], "input", node)
    weight = lift._const(a["weight"], node, "linear weight")
    bias = lift._const(a["bias"], node, "linear bias")
    return _emit_linear(lift, node, x, (weight, a["weight"]), bias)


@_handles(aten.addmm.default, aten.mm.default)
def _matmul(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    if a.get("beta", 1) != 1 or a.get("alpha", 1) != 1:
        raise _unsupported(node, "addmm with a scale (beta or alpha other than 1)")
    x = lift._tensor(a.get("mat1", a.get("self")), "input", node)
    transposed = lift._const(a["mat2"], node, "linear weight")
    bias = lift._const(a["self"], node, "linear bias") if "mat1" in a else None
    if transposed is None or transposed.dim() != 2 or (bias is not None and bias.dim() != 1):
        raise _unsupported(node, f"operation {_op_name(node.target)} (not a linear layer)")
    return _emit_linear(lift, node, x, (transposed.t(), a["mat2"]), bias)


def _emit_linear(
    lift: _Lifter,
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
def _fold_transpose(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> torch.Tensor:
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
def _layer(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> Any:
    make, outputs = _LAYERS[node.target]
    out = lift.module(node, make(a), (_data_in_place(lift, node, a["self"]),))
    return _Tuple(_op_name(node.target), [out] + [None] * (outputs - 1)) if outputs else out


@_handles(aten.mean.dim)
def _mean(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    """A mean over H and W is global average pooling (``x.mean((2, 3))``)."""
    x = lift._tensor(a["self"], "input", node)
    dims = {int(d) % 4 for d in a["dim"] or []}
    if _rank(a["self"]) != 4 or dims != {2, 3} or a.get("dtype") is not None:
        raise _unsupported(node, f"mean over dims {list(a['dim'] or [])} (only over H and W)")
    pooled = lift.module(node, nn.AdaptiveAvgPool2d(1), (x,))
    return pooled if a["keepdim"] else lift.function(torch.flatten, pooled, 1)


@_handles(aten.flatten.using_ints)
def _flatten(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    x = lift._tensor(a["self"], "input", node)
    return lift.function(torch.flatten, x, int(a["start_dim"]), int(a["end_dim"]))


@_handles(
    aten.view.default, aten.reshape.default, aten._unsafe_view.default,
    aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims,
)  # fmt: skip
def _reshape(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
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
def _add(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
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
def _cat(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    parts = [lift._tensor(t, "concatenated tensor", node) for t in a["tensors"]]
    rank = _rank(node)
    if rank is None or int(a["dim"]) % rank != 1:
        raise _unsupported(node, "concatenation other than along channels (dim 1)")
    return lift.function(torch.cat, parts, 1)


@_handles(
    aten.clone.default, aten.contiguous.default, aten.alias.default, aten.detach.default,
    aten.dropout.default,
)  # fmt: skip
def _identity(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    if a.get("train"):
        raise _unsupported(node, "training-mode dropout (export the model in eval mode)")
    return lift._tensor(a.get("self", a.get("input")), "input", node)


@_handles(operator.getitem)
def _getitem(lift: _Lifter, node: fx.Node, a: dict[str, Any]) -> fx.Node:
    result = lift.env.get(a["arg0"])
    index = a["arg1"]
    if not isinstance(result, _Tuple) or not isinstance(index, int):
        raise _unsupported(node, "indexing")
    item = result.items[index] if index < len(result.items) else None
    if item is None:
        raise _unsupported(node, f"output {index} of {result.op}")
    return item


def _data_in_place(lift: _Lifter, node: fx.Node, value: Any) -> fx.Node:
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
