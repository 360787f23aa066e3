"""``run_trial(spec, data) -> TrialResult``: build, train, prune, fine-tune, evaluate, export the
int8 model, measure it on TFLite Micro, serialise.

Pure and Ray-free: no database, no optimizer; everything in and out is plain data, so the same
function runs in a test, in a Ray worker on this machine, or on a remote node.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparsearch.datasets import Dataset
from sparsearch.errors import DatasetError
from sparsearch.pruning import method_for
from sparsearch.pruning.context import PruneContext
from sparsearch.pruning.schedule import Schedule
from sparsearch.space.builder import build_model
from sparsearch.space.pruned import effective_arch
from sparsearch.space.spec import ArchSpec, TrainSpec, TrialSpec
from sparsearch.vocabulary import PRUNING_METHODS
from sparsearch.worker.curve import Curve, Reporter, StopTraining
from sparsearch.worker.deploy import deploy
from sparsearch.worker.export import onnx_bytes, state_dict_bytes
from sparsearch.worker.firmware import find_arm_gcc
from sparsearch.worker.train import evaluate, set_determinism, train_epochs, trainer


@dataclass(frozen=True)
class TrialResult:
    """What one trained trial produced: float and int8 (TFLM) validation/test accuracy, the
    measured deployment cost, the model's effective spec (post-pruning architecture to rebuild
    it) and artifact bytes keyed by kind."""

    accuracy: float
    test_accuracy: float
    train_seconds: float
    param_count: int
    zero_fraction: float
    effective_spec: dict[str, Any]
    artifacts: dict[str, bytes] = field(default_factory=dict)
    #: Measured on the shipped model (``worker.deploy``): stripped .tflite size, TFLM arena
    #: total and head, int8 accuracy on TFLM; None when the spec asked for no deployment.
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    activation_bytes: int | None = None
    int8_accuracy: float | None = None
    int8_test_accuracy: float | None = None
    export_seconds: float | None = None
    #: Both targets' measured numbers (``vocabulary.TARGET_METRICS``): the TFLM model file and
    #: arena, the C target's firmware; C numbers are None with ``c_error`` saying why.
    tflm_flash_bytes: int | None = None
    tflm_ram_bytes: int | None = None
    c_flash_bytes: int | None = None
    c_ram_bytes: int | None = None
    c_stack_bytes: int | None = None
    instructions: int | None = None
    c_error: str | None = None
    deployment: dict[str, Any] | None = None
    worker_pid: int = 0
    worker_host: str = ""
    #: The Ray node id of the task that ran it (set by ``worker.remote``; "" outside Ray).
    worker_node: str = ""
    #: The learning curve (``worker.curve``): {"epoch", "accuracy", "seconds", "phase"} per
    #: epoch of training and of a pruning method's fine-tuning.
    curve: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class TrialStopped:
    """A trial its reporter stopped (early stopping): the curve so far and what it cost. No
    model is kept, exported or measured."""

    curve: list[dict[str, Any]]
    #: Epochs trained (fine-tuning epochs included), as the curve's last point says.
    epochs: float
    train_seconds: float
    worker_pid: int = 0
    worker_host: str = ""
    worker_node: str = ""


def resize_inputs(x: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """Resize (N, C, H, W) images to ``shape_hw`` by area averaging (the input-scale dimension
    of the search). Returns ``x`` itself when the size already matches."""
    if x.ndim != 4:
        raise DatasetError(f"resize_inputs expects (N, C, H, W), got shape {x.shape}")
    h, w = (int(v) for v in shape_hw)
    if h < 1 or w < 1:
        raise DatasetError(f"cannot resize images to {shape_hw}", hint="use a size of at least 1x1")
    if x.shape[2:] == (h, w):
        return x
    out = np.empty((x.shape[0], x.shape[1], h, w), dtype=np.float32)
    step = 8192  # bounds peak memory on 60k-image datasets
    with torch.no_grad():
        for start in range(0, x.shape[0], step):
            chunk = torch.from_numpy(np.asarray(x[start : start + step], dtype=np.float32))
            out[start : start + step] = F.interpolate(chunk, size=(h, w), mode="area").numpy()
    return out


def prepare_inputs(spec: TrialSpec, data: Dataset) -> tuple[Any, Any, Any]:
    """The data set's train/val/test inputs at the model's (scaled) input resolution."""
    _, h, w = spec.arch.model_input_shape
    return tuple(resize_inputs(x, (h, w)) for x in (data.x_train, data.x_val, data.x_test))


def final_split(data: Dataset) -> Dataset:
    """The data of a final training: train on the whole training split (train + validation),
    score on the test split (which takes the validation split's place)."""
    return replace(
        data,
        x_train=np.concatenate([data.x_train, data.x_val]),
        y_train=np.concatenate([data.y_train, data.y_val]),
        x_val=data.x_test,
        y_val=data.y_test,
    )


#: Training images a method that needs a data sample sees (relevance's statistics).
SAMPLE_SIZE = 512


def prune_context(
    x_train: np.ndarray,
    y_train: np.ndarray,
    t: TrainSpec,
    on_epoch: Callable[[nn.Module, float], None] | None = None,
) -> PruneContext:
    """What a pruning method of this trial may use: one input batch, a seeded sample of the
    training images, and a trainer whose default budget is the fine-tuning epochs (lr / 3);
    ``on_epoch``: the trainer's per-epoch hook (the trial's curve)."""
    rng = np.random.default_rng(t.seed)
    pick = np.sort(rng.choice(len(x_train), size=min(SAMPLE_SIZE, len(x_train)), replace=False))
    return PruneContext(
        example_inputs=torch.from_numpy(x_train[:1]),
        sample=torch.from_numpy(x_train[pick]),
        train=trainer(
            x_train,
            y_train,
            epochs=t.finetune_epochs,
            lr=t.lr / 3,
            batch_size=t.batch_size,
            seed=t.seed,
            on_epoch=on_epoch,
        ),
        seed=t.seed,
        train_size=len(x_train),
        scratch_epochs=t.epochs,
        scratch_lr=t.lr,
        finetune_epochs=t.finetune_epochs,
    )


def arch_of(model: nn.Module, arch: ArchSpec) -> ArchSpec:
    """``arch`` with the widths ``model`` has now (after pruning): the architecture its
    state_dict loads into. Reads the builder's layout (``space.builder``): each block's last
    conv, the hidden dense layer."""
    blocks = []
    for block, spec_block in zip(model.features, arch.blocks, strict=True):  # type: ignore[union-attr, arg-type]
        convs = [m for m in block if isinstance(m, nn.Conv2d)]
        blocks.append(replace(spec_block, channels=convs[-1].out_channels))
    linears = [m for m in model.head if isinstance(m, nn.Linear)]  # type: ignore[union-attr]
    units = linears[0].out_features if arch.head_units and len(linears) > 1 else 0
    return replace(arch, blocks=tuple(blocks), head_units=units)


def run_trial(
    spec: TrialSpec, data: Dataset, *, threads: int = 1, report: Reporter | None = None
) -> TrialResult | TrialStopped:
    """Run one trial end to end. Deterministic: same spec and seed, same weights and metrics.

    A final training (``spec.final``) trains on train + validation and scores on the whole
    test split: its ``accuracy`` and ``int8_accuracy`` are test accuracies too. ``report``
    sees each curve point as it is made; when it returns True the trial ends there as
    ``TrialStopped``."""
    start = time.perf_counter()
    if spec.deploy and spec.target == "c":
        find_arm_gcc()  # ToolchainError now, not after training
    t = spec.train
    set_determinism(t.seed, threads)
    if spec.final:
        data = final_split(data)
    x_train, x_val, x_test = prepare_inputs(spec, data)
    pruning = spec.pruning
    before = _acts_before_training(pruning)
    # A method that acts before training shapes the architecture itself (train_once).
    model = build_model(effective_arch(spec.arch, pruning) if before else spec.arch)
    curve = Curve.of(x_val, data.y_val, start, report)
    try:
        return _train_and_deploy(spec, data, model, curve, start, (x_train, x_val, x_test))
    except StopTraining:
        return TrialStopped(
            curve=curve.points,
            epochs=curve.epochs,
            train_seconds=time.perf_counter() - start,
            worker_pid=os.getpid(),
            worker_host=socket.gethostname(),
        )


def _acts_before_training(pruning: Any) -> bool:
    """Whether the trial's pruning method shapes the architecture before training."""
    return pruning.active and PRUNING_METHODS[pruning.method].stage == "before_training"


def _train_and_deploy(
    spec: TrialSpec,
    data: Dataset,
    model: nn.Module,
    curve: Curve,
    start: float,
    inputs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> TrialResult:
    """``run_trial`` after the set-up: train, prune, score, deploy."""
    x_train, x_val, x_test = inputs
    t, pruning = spec.train, spec.pruning
    before = _acts_before_training(pruning)
    train_epochs(
        model,
        x_train,
        data.y_train,
        epochs=t.epochs,
        lr=t.lr,
        batch_size=t.batch_size,
        seed=t.seed,
        after_epoch=partial(curve.record, model, phase="train"),
    )
    zero_fraction = 0.0
    if pruning.active and not before:
        context = prune_context(x_train, data.y_train, t, on_epoch=curve.hook("prune"))
        report = Schedule.of(pruning).run(method_for(pruning), model, pruning.level, context)
        zero_fraction = report.zero_fraction
    model.eval()
    accuracy = evaluate(model, x_val, data.y_val)
    # a final training's validation split is the test split
    test_accuracy = accuracy if spec.final else evaluate(model, x_test, data.y_test)
    arch = arch_of(model, spec.arch)
    effective = {"arch": arch.to_dict(), "pruning": pruning.to_dict()}
    artifacts = {"state_dict": state_dict_bytes(model)}
    if spec.export_onnx:
        artifacts["onnx"] = onnx_bytes(model, spec.arch.model_input_shape)
    train_seconds = time.perf_counter() - start
    measured: dict[str, Any] = {}
    if spec.deploy:
        # A final model has no validation split of its own: the whole test split, once.
        val = None if spec.final else x_val
        shipped = deploy(
            model,
            arch,
            data,
            x_train,
            val,
            x_test,
            title=spec.label,
            target=spec.target,
        )
        artifacts.update(shipped.artifacts())
        measured = {**shipped.measurements(), "deployment": shipped.metadata}
    return TrialResult(
        accuracy=accuracy,
        test_accuracy=test_accuracy,
        train_seconds=train_seconds,
        param_count=sum(p.numel() for p in model.parameters()),
        zero_fraction=zero_fraction,
        effective_spec=effective,
        artifacts=artifacts,
        worker_pid=os.getpid(),
        worker_host=socket.gethostname(),
        curve=curve.points,
        **measured,
    )
