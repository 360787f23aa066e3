"""``run_trial(spec, data) -> TrialResult``: build, train, prune, fine-tune, evaluate, export the
int8 model, measure it on TFLite Micro, serialise.

Pure and Ray-free: no database, no optimizer; everything in and out is plain data, so the same
function runs in a test, in a Ray worker on this machine, or on a remote node.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sparsearch.datasets import Dataset
from sparsearch.errors import DatasetError
from sparsearch.pruning import get_method
from sparsearch.space.builder import build_model
from sparsearch.space.spec import TrialSpec, effective_arch
from sparsearch.worker.deploy import deploy
from sparsearch.worker.export import onnx_bytes, state_dict_bytes
from sparsearch.worker.train import evaluate, set_determinism, train_epochs


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
    deployment: dict[str, Any] | None = None
    worker_pid: int = 0
    worker_host: str = ""
    #: The Ray node id of the task that ran it (set by ``worker.remote``; "" outside Ray).
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


def run_trial(spec: TrialSpec, data: Dataset, *, threads: int = 1) -> TrialResult:
    """Run one trial end to end. Deterministic: same spec and seed, same weights and metrics.

    A final training (``spec.final``) trains on train + validation and scores on the whole
    test split: its ``accuracy`` and ``int8_accuracy`` are test accuracies too."""
    start = time.perf_counter()
    t = spec.train
    set_determinism(t.seed, threads)
    if spec.final:
        data = final_split(data)
    x_train, x_val, x_test = prepare_inputs(spec, data)
    model = build_model(spec.arch)
    train_epochs(
        model, x_train, data.y_train, epochs=t.epochs, lr=t.lr, batch_size=t.batch_size, seed=t.seed
    )
    zero_fraction = 0.0
    if spec.pruning.active:
        method = get_method(spec.pruning.method)
        example = torch.from_numpy(x_train[:1])
        report = method.prune(model, spec.pruning.level, example)
        train_epochs(
            model,
            x_train,
            data.y_train,
            epochs=t.finetune_epochs,
            lr=t.lr / 3,
            batch_size=t.batch_size,
            seed=t.seed + 1,
        )
        method.finalize(model)
        zero_fraction = report.zero_fraction
    model.eval()
    accuracy = evaluate(model, x_val, data.y_val)
    # a final training's validation split is the test split
    test_accuracy = accuracy if spec.final else evaluate(model, x_test, data.y_test)
    arch = effective_arch(spec.arch, spec.pruning)
    effective = {"arch": arch.to_dict(), "pruning": spec.pruning.to_dict()}
    artifacts = {"state_dict": state_dict_bytes(model)}
    if spec.export_onnx:
        artifacts["onnx"] = onnx_bytes(model, spec.arch.model_input_shape)
    train_seconds = time.perf_counter() - start
    measured: dict[str, Any] = {}
    if spec.deploy:
        # A final model has no validation split of its own: the whole test split, once.
        val = None if spec.final else x_val
        shipped = deploy(model, arch, data, x_train, val, x_test, title=spec.label)
        artifacts["tflite"], artifacts["c_source"] = shipped.tflite, shipped.c_source
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
        **measured,
    )
