"""Loading: a file's format from its zip members, torch.export / TorchScript loading (TorchScript
through ``TS2EPConverter``), the reference outputs and the check that the rebuilt model matches."""

from __future__ import annotations

import io
import math
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
from torch.utils import _pytree as pytree

from sparsearch.errors import PruningError
from sparsearch.pruning.lift.common import SAVE_HINT, SUPPORTED_HINT, _shape
from sparsearch.pruning.lift.graph import lift_exported

ATOL = 1e-5


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
