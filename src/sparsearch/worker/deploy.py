"""From a trained float model to what ships, measured: the stripped int8 ``.tflite``, its C
source, and the numbers TFLite Micro reports for it (flash = file size, RAM = arena, int8
accuracy over validation and test images run through the interpreter), and the interpreter-free
C model generated from the same file (``worker.c_target``: bit-exact with TFLM on every one of
those images, measured as Cortex-M4 firmware).

The int8 inputs of 8-bit image data sets are made from the raw pixels by the integer
preprocessing the generated ``classify`` runs (``codegen.preprocess``), so both targets are
scored on exactly the bytes the firmware sees; data stored as floats are quantized as before.

Pure and Ray-free like ``run_trial``, which calls :func:`deploy` for every trained trial (and
``finalize`` for a retrained one).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn

from sparsearch.codegen.preprocess import Preprocess
from sparsearch.datasets import Dataset
from sparsearch.datasets.checks import stratified_split
from sparsearch.errors import TrialError
from sparsearch.space.spec import ArchSpec
from sparsearch.vocabulary import DEPLOYMENT_METRICS, TARGET_METRICS
from sparsearch.worker import tflite
from sparsearch.worker.c_source import c_source_zip, resolver_method
from sparsearch.worker.c_target import CTarget, measure_c
from sparsearch.worker.tflm import run_tflm

#: At most this many validation images (a fixed stratified sample) give ``int8_accuracy``, the
#: search objective; as many test images give ``int8_test_accuracy``.
INT8_EVAL_SAMPLES = 2000


@dataclass(frozen=True)
class Deployment:
    """The shipped model of a trial and what TFLM measured of it."""

    tflite: bytes  # stripped
    c_source: bytes  # zip of model_data.h / model_data.cc
    #: The deployment target's numbers (what the job's limits read): under ``tflm`` the
    #: stripped file's size, the arena total and head; under ``c`` the firmware's flash, static
    #: RAM + peak stack, and the static activation buffer.
    flash_bytes: int
    ram_bytes: int
    activation_bytes: int
    int8_accuracy: float
    int8_test_accuracy: float
    export_seconds: float
    #: What firmware needs (input/output quantization, preprocessing, classes, operators,
    #: arena, versions): the trial's ``deployment`` JSON, also in the C header.
    metadata: dict[str, Any]
    #: The C target, or None with ``c_error`` saying why it was not measured.
    tflm_flash_bytes: int = 0  # len(tflite)
    tflm_ram_bytes: int = 0  # arena total
    c: CTarget | None = None
    c_error: str | None = None
    target: str = "tflm"

    @property
    def c_flash_bytes(self) -> int | None:
        return self.c.flash_bytes if self.c else None

    @property
    def c_ram_bytes(self) -> int | None:
        return self.c.ram_bytes if self.c else None

    @property
    def c_stack_bytes(self) -> int | None:
        return self.c.stack_bytes if self.c else None

    @property
    def instructions(self) -> int | None:
        return self.c.instructions if self.c else None

    def artifacts(self) -> dict[str, bytes]:
        """The shipped files by artifact kind (``c_project`` where the C target was built)."""
        files = {"tflite": self.tflite, "c_source": self.c_source}
        if self.c is not None and self.c.project:
            files["c_project"] = self.c.project
        return files

    def measurements(self) -> dict[str, Any]:
        """The measured trial metrics, keyed as a trial stores them."""
        keys = (*DEPLOYMENT_METRICS, *TARGET_METRICS, "c_error")
        return {k: getattr(self, k) for k in keys}


def eval_indices(y: np.ndarray, n: int = INT8_EVAL_SAMPLES) -> np.ndarray:
    """Indices of all of ``y`` if it has at most ``n`` images, else of a fixed stratified
    sample of ``n``."""
    idx = np.arange(len(y))
    if len(y) <= n:
        return idx
    picked, _, _, _ = stratified_split(idx, y, train_size=n, seed=0, what="int8 evaluation sample")
    return np.asarray(picked)


def raw_pixels(x: np.ndarray, pixel_scale: float) -> np.ndarray:
    """The stored 8-bit pixels of float (N, C, H, W) images made as ``pixel * pixel_scale``,
    as (N, H, W, C) uint8: the raw image a camera buffer holds."""
    raw = np.rint(np.asarray(x, dtype=np.float64) / pixel_scale)
    return np.ascontiguousarray(np.clip(raw, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1))


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
    target: str = "tflm",
) -> Deployment:
    """Export ``model`` (trained on ``x_*``, already at its input resolution) to int8, strip
    it, measure it on TFLM and score it on validation and test images (a fixed sample of at
    most INT8_EVAL_SAMPLES of each). ``x_val=None`` (a final model): no validation images,
    the whole test split, and ``int8_accuracy`` is the test accuracy. The C target is
    generated and measured too; when it cannot be (no ARM compiler, an unsupported model), its
    numbers are None and ``c_error`` says why, unless ``target`` is ``c``, which raises.
    ``flash_bytes`` / ``ram_bytes`` / ``activation_bytes`` are ``target``'s numbers. Raises
    TrialError when the model cannot be converted or run."""
    start = time.perf_counter()
    unstripped = tflite.export_int8(model, tflite.calibration_sample(x_train))
    shipped = tflite.strip(unstripped)
    scale, zero_point = tflite.input_quantization(shipped)
    c, h, w = data.input_shape
    _, mh, mw = arch.model_input_shape
    pre = None
    if data.pixel_scale is not None:
        pre = Preprocess((h, w, c), (mh, mw, c), data.pixel_scale, scale, zero_point)
    # (name, model-resolution images, source images, labels) of each evaluation set
    chosen = []
    if x_val is not None:
        iv = eval_indices(data.y_val)
        chosen.append(("val", x_val[iv], data.x_val[iv], data.y_val[iv]))
        it = eval_indices(data.y_test)
        chosen.append(("test", x_test[it], data.x_test[it], data.y_test[it]))
    else:
        chosen.append(("test", x_test, data.x_test, data.y_test))
    sets, labels, raws = {}, {}, {}
    for name, x_model, x_source, y in chosen:
        if pre is not None:
            raws[name] = raw_pixels(x_source, pre.pixel_scale)  # type: ignore[arg-type]
            sets[name] = pre.apply(raws[name])
        else:
            sets[name] = tflite.quantize_nhwc(x_model, scale, zero_point)
        labels[name] = y
    run = run_tflm(shipped, sets)
    yt = labels["test"]
    test_accuracy = float((run.predictions("test") == yt).mean()) if len(yt) else 0.0
    val_accuracy = test_accuracy
    if x_val is not None:
        yv = labels["val"]
        val_accuracy = float((run.predictions("val") == yv).mean()) if len(yv) else 0.0
    c_target, c_error = None, None
    try:
        first = next(iter(sets))
        c_target = measure_c(
            shipped,
            sets,
            run.outputs,
            raws.get(first),
            labels=labels[first],
            source_hwc=(h, w, c) if pre is not None else None,
            pixel_scale=data.pixel_scale,
            title=title,
            class_names=data.class_names,
        )
    except TrialError as e:
        if target == "c":
            raise
        c_error = e.message
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
        "unstripped_bytes": len(unstripped),
        "converter": tflite.converter_version(),
        "runtime": run.version,
        "int8_eval_images": {"val": len(labels.get("val", ())), "test": len(yt)},
        "c": c_target.metadata() if c_target is not None else {"error": c_error},
    }
    if target == "c":
        assert c_target is not None  # measure_c raised otherwise
        numbers = c_target.flash_bytes, c_target.ram_bytes, c_target.program.arena_bytes
    else:
        numbers = len(shipped), run.arena_total, run.arena_head
    metadata["target"] = target
    return Deployment(
        tflite=shipped,
        c_source=c_source_zip(shipped, metadata),
        flash_bytes=numbers[0],
        ram_bytes=numbers[1],
        activation_bytes=numbers[2],
        int8_accuracy=val_accuracy,
        int8_test_accuracy=test_accuracy,
        export_seconds=time.perf_counter() - start,
        metadata=metadata,
        tflm_flash_bytes=len(shipped),
        tflm_ram_bytes=run.arena_total,
        c=c_target,
        c_error=c_error,
        target=target,
    )
