"""Pruning one trained model on its own (``sparsearch prune``, ``benchmarks/pruning.py``).

``prune_model`` measures the model, finds the pruning level that meets the target, runs the
method's schedule (fine-tuning on the data set's training split), and measures again. Every
figure of the before/after documents is what the product means by it:

- ``accuracy``: float top-1 on the test split; ``int8_accuracy``: the int8 model on TFLite
  Micro, same images (the deployed model);
- ``params``: parameters (unstructured pruning keeps them: see ``zero_fraction`` and
  ``nonzero_params``, what a ``params`` target counts for those methods);
- ``flash_bytes``: the stripped int8 ``.tflite``; ``ram_bytes``: TFLM's arena for it (both
  measured, as for a search trial); ``nnz_flash_bytes``: the sparse accounting (non-zero int8
  weights + 1-bit-per-weight bitmap + int32 biases), the only flash unstructured pruning cuts;
- ``macs``: multiply-accumulates of every conv and dense layer for one image.

Targets: a ``ratio`` is the level itself; ``flash_bytes`` / ``ram_bytes`` / ``macs`` are met by
bisection over the level on copies of the model (no training: the schedules remove at least
what the level says, so the pruned-and-trained model is as small), each probe measured the way
the target is (flash and RAM: estimated for sparsearch's own architectures, exported and run on
TFLM otherwise). Unstructured methods meet a flash target under the sparse accounting and
refuse RAM and MAC targets (zeros change neither).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from sparsearch.datasets import Dataset
from sparsearch.errors import PruningError
from sparsearch.pruning import MAX_LEVEL, method_for
from sparsearch.pruning.base import PruneReport
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.schedule import Schedule
from sparsearch.pruning.stats import count_params, weight_layers, zero_fraction
from sparsearch.space.estimate import estimate
from sparsearch.space.spec import ArchSpec, PruningSpec, TrainSpec
from sparsearch.vocabulary import PRUNING_METHODS
from sparsearch.worker import tflite
from sparsearch.worker.deploy import deploy
from sparsearch.worker.tflm import run_tflm
from sparsearch.worker.train import evaluate
from sparsearch.worker.trial import arch_of, prune_context, resize_inputs

#: What a target may name, and its unit.
TARGET_QUANTITIES: dict[str, str] = {
    "ratio": "fraction",
    "params": "parameters",
    "flash_bytes": "B",
    "ram_bytes": "B",
    "macs": "MACs",
}
#: Bisection steps over the level (resolution 0.95 / 2**7, under 1 %).
BISECTION_STEPS = 7


@dataclass(frozen=True)
class PruneTarget:
    quantity: str
    value: float

    def __post_init__(self) -> None:
        if self.quantity not in TARGET_QUANTITIES:
            raise PruningError(
                f"unknown target {self.quantity!r}", f"use one of {', '.join(TARGET_QUANTITIES)}"
            )
        if self.quantity == "ratio":
            if not 0.0 <= self.value < 1.0:
                raise PruningError(
                    f"ratio {self.value!r} is outside [0, 1)", "e.g. --ratio 0.5 removes half"
                )
        elif not self.value > 0:
            raise PruningError(f"target {self.quantity} {self.value!r} is not positive")

    def to_dict(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "value": self.value}


@dataclass
class PruneOutcome:
    """A finished standalone pruning: before/after measurements, the level used, the report."""

    method: str
    options: dict[str, Any]
    schedule: str
    target: PruneTarget
    level: float
    before: dict[str, Any]
    after: dict[str, Any]
    report: PruneReport
    model: nn.Module
    arch: ArchSpec | None
    wall_seconds: float
    tflite: bytes = b""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "options": self.options,
            "schedule": self.schedule,
            "target": self.target.to_dict(),
            "level": round(self.level, 4),
            "before": self.before,
            "after": self.after,
            "wall_seconds": round(self.wall_seconds, 2),
            "notes": self.notes,
        }


def model_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one input image."""
    total = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        per_out = module.weight[0].numel()  # one output value's weights
        total += per_out * (output[0].numel())

    hooks = [m.register_forward_hook(count) for _, m in weight_layers(model)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        model.train(was)
        for h in hooks:
            h.remove()
    return int(total)


def nnz_flash_bytes(model: nn.Module) -> int:
    """The sparse flash accounting of ``model``: non-zero int8 weights + bitmap + int32 biases
    (BatchNorm folds into one bias per output channel)."""
    weights = nonzero = biases = 0
    with torch.no_grad():
        for _, m in weight_layers(model):
            weights += m.weight.numel()
            nonzero += int((m.weight != 0).sum())
            biases += m.weight.shape[0]
    return nonzero + -(-weights // 8) + 4 * biases


def nonzero_params(model: nn.Module) -> int:
    """Parameters that are not exactly zero."""
    with torch.no_grad():
        return sum(int((p != 0).sum()) for p in model.parameters())


def size_costs(model: nn.Module, x_train: np.ndarray, arch: ArchSpec | None) -> dict[str, int]:
    """Flash and RAM of ``model``: the estimator's for a sparsearch architecture (exact on
    flash to under 1 %, on the arena to the byte), else exported and run on TFLM."""
    if arch is not None:
        est = estimate(arch_of(model, arch)).to_dict()
        return {"flash_bytes": int(est["flash_bytes"]), "ram_bytes": int(est["ram_bytes"])}
    shipped = tflite.strip(tflite.export_int8(model, tflite.calibration_sample(x_train, 32)))
    return {"flash_bytes": len(shipped), "ram_bytes": run_tflm(shipped).arena_total}


def measure(
    model: nn.Module,
    data: Dataset,
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
    arch: ArchSpec | None,
    *,
    title: str = "",
) -> tuple[dict[str, Any], bytes]:
    """The before/after document of ``model`` (see the module docstring) and its int8 file."""
    x_train, x_val, x_test = inputs
    model.eval()
    shape_arch = arch_of(model, arch) if arch is not None else _input_arch(data, x_test)
    shipped = deploy(model, shape_arch, data, x_train, x_val, x_test, title=title)
    doc = {
        "accuracy": round(evaluate(model, x_test, data.y_test), 4),
        "int8_accuracy": round(shipped.int8_test_accuracy, 4),
        "params": count_params(model),
        "flash_bytes": shipped.flash_bytes,
        "ram_bytes": shipped.ram_bytes,
        "macs": model_macs(model, torch.from_numpy(x_test[:1])),
        "nnz_flash_bytes": nnz_flash_bytes(model),
        "nonzero_params": nonzero_params(model),
        "zero_fraction": round(zero_fraction(model), 4),
    }
    return doc, shipped.tflite


def _input_arch(data: Dataset, x: np.ndarray) -> ArchSpec:
    """A shape-only architecture for a user's model (deployment metadata needs the input)."""
    c, h, w = (int(v) for v in x.shape[1:])
    return ArchSpec(input_shape=(c, h, w), num_classes=data.num_classes, blocks=())


def level_for_target(
    pruning: PruningSpec,
    model: nn.Module,
    target: PruneTarget,
    context: PruneContext,
    cost: Callable[[nn.Module], float],
) -> float:
    """The smallest level (to 1 %) whose pruned copy of ``model`` has ``cost`` at most the
    target; PruningError naming the closest reachable value when even the deepest cannot."""
    if target.quantity == "ratio":
        return target.value
    unstructured = not PRUNING_METHODS[pruning.method].structured
    if unstructured and target.quantity not in ("flash_bytes", "params"):
        raise PruningError(
            f"{pruning.method} zeroes single weights: it cannot change {target.quantity}",
            "use a structured method (filter_norm, relevance, complexity, sparsity_induction) "
            "or --target-flash (sparse accounting) / --ratio",
        )
    probe_context = replace(context, train=None)

    def probe(level: float) -> float | None:
        """The cost at ``level``; None where the method cannot prune that deep (complexity
        stops once every layer is down to one filter)."""
        trial = copy.deepcopy(model)
        method = method_for(replace(pruning, level=level))
        try:
            method.prune(trial, level, context=probe_context)
        except PruningError:
            return None
        method.finalize(trial)
        return cost(trial)

    unit = TARGET_QUANTITIES[target.quantity]
    closest = probe(0.0)
    if closest is not None and closest <= target.value:
        return 0.0
    deepest = probe(MAX_LEVEL)
    if deepest is not None and deepest > target.value:
        raise PruningError(
            f"{pruning.method} cannot reach {target.quantity} <= {target.value:g} {unit}: "
            f"pruned as far as it goes ({MAX_LEVEL:.0%}) the model still needs {deepest:g} {unit}",
            "raise the target, or start from a smaller model",
        )
    lo, hi = 0.0, MAX_LEVEL
    met = None if deepest is None else MAX_LEVEL
    for _ in range(BISECTION_STEPS):
        mid = (lo + hi) / 2
        value = probe(mid)
        if value is None or value <= target.value:  # None: too deep, the answer is below
            hi = mid
            met = mid if value is not None else met
        else:
            lo, closest = mid, value
    if met is None:
        raise PruningError(
            f"{pruning.method} cannot reach {target.quantity} <= {target.value:g} {unit}: "
            f"pruned as far as it goes (level {lo:.2f}) the model still needs {closest:g} {unit}",
            "raise the target, or start from a smaller model",
        )
    return round(met, 4)


def prepare(
    data: Dataset, model_input_hw: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The data set's splits at the model's input resolution."""
    return tuple(resize_inputs(x, model_input_hw) for x in (data.x_train, data.x_val, data.x_test))  # type: ignore[return-value]


def prune_model(
    model: nn.Module,
    data: Dataset,
    pruning: PruningSpec,
    target: PruneTarget,
    *,
    arch: ArchSpec | None = None,
    train: TrainSpec = TrainSpec(),
    progress: Callable[[str], None] | None = None,
    measure_before: bool = True,
) -> PruneOutcome:
    """Prune a trained ``model`` (a sparsearch model when ``arch`` is given) to ``target``
    with the method, knobs and schedule of ``pruning`` (its level is ignored: the target sets
    it), fine-tuning on ``data``'s training split as ``train`` says; returns before/after."""
    say = progress or (lambda phase: None)
    start = time.perf_counter()
    info = PRUNING_METHODS.get(pruning.method)
    if info is None:
        method_for(pruning)  # the unknown-method error
    assert info is not None
    torch.manual_seed(train.seed)
    hw = tuple(arch.model_input_shape[1:]) if arch is not None else tuple(data.input_shape[1:])
    inputs = prepare(data, hw)  # type: ignore[arg-type]
    x_train = inputs[0]
    check_runs(model, x_train)
    schedule = Schedule.of(pruning)
    say("measure before")
    before, _ = measure(model, data, inputs, arch) if measure_before else ({}, b"")
    context = prune_context(x_train, data.y_train, train)
    say("find the level")
    cost = _cost_function(target, x_train, arch, info.structured)
    level = level_for_target(pruning, model, target, context, cost)
    say(f"prune ({schedule.kind}, level {level:.2f})")
    report = schedule.run(
        method_for(replace(pruning, level=level)), model, level, context, progress=say
    )
    say("measure after")
    after, shipped = measure(model, data, inputs, arch)
    outcome = PruneOutcome(
        method=pruning.method,
        options=dict(pruning.options),
        schedule=schedule.kind,
        target=target,
        level=level,
        before=before,
        after=after,
        report=report,
        model=model,
        arch=arch_of(model, arch) if arch is not None else None,
        wall_seconds=time.perf_counter() - start,
        tflite=shipped,
    )
    _check_met(outcome, info.structured)
    return outcome


def _cost_function(
    target: PruneTarget, x_train: np.ndarray, arch: ArchSpec | None, structured: bool
) -> Callable[[nn.Module], float]:
    example = torch.from_numpy(x_train[:1])
    if target.quantity == "macs":
        return lambda m: float(model_macs(m, example))
    if target.quantity == "params":  # unstructured methods: the non-zero ones
        return lambda m: float(count_params(m) if structured else nonzero_params(m))
    if target.quantity == "flash_bytes" and not structured:
        return lambda m: float(nnz_flash_bytes(m))
    key = target.quantity
    return lambda m: float(size_costs(m, x_train, arch)[key])


def _check_met(outcome: PruneOutcome, structured: bool) -> None:
    target = outcome.target
    if target.quantity == "ratio":
        return
    key = target.quantity
    if key == "flash_bytes" and not structured:
        key = "nnz_flash_bytes"
    if key == "params" and not structured:
        key = "nonzero_params"
    value = outcome.after[key]
    if value > target.value:
        outcome.notes.append(
            f"target not met as measured: {key} {value} > {target.value:g} (the level was "
            "found on estimates; a lower target leaves room)"
        )


def check_runs(model: nn.Module, x: np.ndarray) -> None:
    """PruningError when ``model`` does not take the data set's images."""
    try:
        with torch.no_grad():
            out = model.eval()(torch.from_numpy(x[:2]))
    except Exception as e:  # any shape error from any layer
        raise PruningError(
            f"the model does not run on the data set's images of shape {tuple(x.shape[1:])}: {e}",
            "pass the data set the model was trained on (--dataset)",
        ) from None
    if out.ndim != 2:
        raise PruningError(
            f"the model's output has shape {tuple(out.shape)}, not (N, classes)",
            "sparsearch prune handles classifiers",
        )
