"""From a trained float model to what ships, measured: the stripped int8 ``.tflite``, its C
source, and the numbers TFLite Micro reports for it (flash = file size, RAM = arena, int8
accuracy over validation and test images run through the interpreter).

Pure and Ray-free like ``run_trial``, which calls :func:`deploy` for every trained trial (and
``finalize`` for a retrained one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from sparsearch.datasets import Dataset
from sparsearch.datasets.checks import stratified_split
from sparsearch.space.spec import ArchSpec
from sparsearch.vocabulary import DEPLOYMENT_METRICS
from sparsearch.worker import tflite
from sparsearch.worker.c_source import c_source_zip, resolver_method
from sparsearch.worker.tflm import run_tflm

#: At most this many validation images (a fixed stratified sample) give ``int8_accuracy``, the
#: search objective; as many test images give ``int8_test_accuracy``.
INT8_EVAL_SAMPLES = 2000


@dataclass(frozen=True)
class Deployment:
    """The shipped model of a trial and what TFLM measured of it."""

    tflite: bytes  # stripped
    c_source: bytes  # zip of model_data.h / model_data.cc
    flash_bytes: int  # len(tflite)
    ram_bytes: int  # arena total
    activation_bytes: int  # arena head
    int8_accuracy: float
    int8_test_accuracy: float
    export_seconds: float
    #: What firmware needs (input/output quantization, preprocessing, classes, operators,
    #: arena, versions): the trial's ``deployment`` JSON, also in the C header.
    metadata: dict[str, Any]

    def measurements(self) -> dict[str, Any]:
        """The measured trial metrics, keyed as a trial stores them."""
        return {k: getattr(self, k) for k in DEPLOYMENT_METRICS}


def eval_sample(x: np.ndarray, y: np.ndarray, n: int = INT8_EVAL_SAMPLES) -> tuple[Any, Any]:
    """All of (x, y) if it has at most ``n`` images, else a fixed stratified sample of ``n``."""
    if len(y) <= n:
        return x, y
    xs, _, ys, _ = stratified_split(x, y, train_size=n, seed=0, what="int8 evaluation sample")
    return xs, ys


def preprocessing(data: Dataset, arch: ArchSpec) -> dict[str, Any]:
    """How a raw image of the data set becomes the model's float input."""
    c, h, w = data.input_shape
    _, mh, mw = arch.model_input_shape
    scale = data.pixel_scale
    steps = []
    if (mh, mw) != (h, w):
        steps.append(f"resize {h}x{w} -> {mh}x{mw} by area averaging")
    if scale is None:
        steps.append("float pixels as stored")
    else:
        steps.append(f"pixel * {scale:.6g} -> [0, 1]")
    steps.append("quantize with the input scale and zero point (NHWC int8)")
    return {
        "source_shape_hwc": [h, w, c],
        "resize": "area" if (mh, mw) != (h, w) else "none",
        "pixel_scale": scale,
        "description": "; ".join(steps),
    }


def deploy(
    model: nn.Module,
    arch: ArchSpec,
    data: Dataset,
    x_train: np.ndarray,
    x_val: np.ndarray | None,
    x_test: np.ndarray,
    *,
    title: str = "",
) -> Deployment:
    """Export ``model`` (trained on ``x_*``, already at its input resolution) to int8, strip
    it, measure it on TFLM and score it on validation and test images (a fixed sample of at
    most INT8_EVAL_SAMPLES of each). ``x_val=None`` (a final model): no validation images,
    the whole test split, and ``int8_accuracy`` is the test accuracy. Raises TrialError when
    the model cannot be converted or run."""
    start = time.perf_counter()
    raw = tflite.export_int8(model, tflite.calibration_sample(x_train))
    shipped = tflite.strip(raw)
    scale, zero_point = tflite.input_quantization(shipped)
    sets = {}
    if x_val is not None:
        xv, yv = eval_sample(x_val, data.y_val)
        sets["val"] = tflite.quantize_nhwc(xv, scale, zero_point)
        xt, yt = eval_sample(x_test, data.y_test)
    else:
        xt, yt = x_test, data.y_test
    sets["test"] = tflite.quantize_nhwc(xt, scale, zero_point)
    run = run_tflm(shipped, sets)
    test_accuracy = float((run.predictions("test") == yt).mean()) if len(yt) else 0.0
    val_accuracy = test_accuracy
    if x_val is not None:
        val_accuracy = float((run.predictions("val") == yv).mean()) if len(yv) else 0.0
    ops = tflite.operators(shipped)
    _, hin, win, cin = run.input["shape"]
    metadata = {
        "title": title,
        "input": {**run.input, "shape_hwc": [hin, win, cin]},
        "output": run.output,
        "preprocessing": preprocessing(data, arch),
        "num_classes": data.num_classes,
        "class_names": list(data.class_names),
        "operators": ops,
        "op_resolver": [f"{resolver_method(op)}()" for op in ops],
        "arena": {"total": run.arena_total, "head": run.arena_head, "tail": run.arena_tail},
        "flash_bytes": len(shipped),
        "unstripped_bytes": len(raw),
        "converter": tflite.converter_version(),
        "runtime": run.version,
        "int8_eval_images": {"val": int(len(yv)) if x_val is not None else 0, "test": len(yt)},
    }
    return Deployment(
        tflite=shipped,
        c_source=c_source_zip(shipped, metadata),
        flash_bytes=len(shipped),
        ram_bytes=run.arena_total,
        activation_bytes=run.arena_head,
        int8_accuracy=val_accuracy,
        int8_test_accuracy=test_accuracy,
        export_seconds=time.perf_counter() - start,
        metadata=metadata,
    )
