"""The C target of a trained trial: generate the interpreter-free C model from the shipped int8
``.tflite``, prove it equals TFLM on every evaluation image (host build), and measure it as
Cortex-M4 firmware (``worker.firmware``: flash it adds to an image, static RAM + peak stack,
instructions per inference, on a few samples in the emulator, checked against the host build).

The accuracy of the C model is TFLM's by construction: a trial whose C outputs differ from
TFLM's on any image fails with the first differing image and output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsearch.codegen import CProgram, ModelError, generate
from sparsearch.errors import TrialError
from sparsearch.worker.c_host import HostModel
from sparsearch.worker.c_project import c_project_zip
from sparsearch.worker.firmware import measure_firmware

#: Samples run in the emulator (instructions and stack are the largest over them; the host
#: build already checked every image).
EMULATED_SAMPLES = 2
#: Test images the ``c_project`` demo classifies.
DEMO_IMAGES = 8


@dataclass(frozen=True)
class CTarget:
    program: CProgram
    flash_bytes: int
    ram_bytes: int  # static + peak stack
    static_ram_bytes: int
    stack_bytes: int
    instructions: int
    classify_instructions: int | None
    empty_image_flash_bytes: int
    images: int  # evaluation images checked bit-exact against TFLM
    compiler: str
    seconds: float
    #: The ``c_project`` artifact (sources, Cortex-M4 demo, README with these numbers).
    project: bytes = b""

    def metadata(self) -> dict[str, Any]:
        """The ``deployment["c"]`` block of a trial."""
        info = {k: v for k, v in self.program.info.items() if k != "preprocess"}
        return {
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "static_ram_bytes": self.static_ram_bytes,
            "stack_bytes": self.stack_bytes,
            "instructions": self.instructions,
            "classify_instructions": self.classify_instructions,
            "empty_image_flash_bytes": self.empty_image_flash_bytes,
            "bit_exact_images": self.images,
            "compiler": self.compiler,
            "cpu": "cortex-m4",
            "seconds": round(self.seconds, 3),
            **info,
        }


def _first_difference(got: np.ndarray, want: np.ndarray) -> tuple[int, int]:
    i, j = np.argwhere(got != want)[0]
    return int(i), int(j)


def measure_c(
    tflite: bytes,
    inputs: dict[str, np.ndarray],
    tflm_outputs: dict[str, np.ndarray],
    raw: np.ndarray | None,
    *,
    labels: np.ndarray | None = None,
    source_hwc: tuple[int, int, int] | None,
    pixel_scale: float | None,
    title: str = "",
    class_names: Sequence[str] = (),
) -> CTarget:
    """Generate, check and measure the C model of ``tflite``. ``inputs``: the int8 evaluation
    sets TFLM ran (``tflm_outputs``: its outputs); ``raw``: raw source samples of the first
    set (what ``classify`` takes), checked to quantize to that set's inputs; ``labels``: that
    set's labels (the demo project prints them). Raises TrialError
    with the reason when the model cannot be generated, built, or differs from TFLM."""
    start = time.perf_counter()
    try:
        program = generate(
            tflite,
            source_hwc=source_hwc,
            pixel_scale=pixel_scale,
            title=title,
            class_names=class_names,
        )
    except ModelError as e:
        raise TrialError(f"C target: {e.message}", e.hint) from e
    images = 0
    with HostModel(program) as host:
        for name, x in inputs.items():
            got = host.invoke(x.reshape(len(x), -1))
            want = tflm_outputs[name].reshape(len(x), -1)
            if not np.array_equal(got, want):
                i, j = _first_difference(got, want)
                raise TrialError(
                    f"C target: the generated model differs from TFLM on {name} image {i}: "
                    f"output {j} is {int(got[i, j])}, TFLM gives {int(want[i, j])}",
                    "this is a bug in sparsearch's C generator; use --target tflm meanwhile",
                )
            images += len(x)
        first = next(iter(inputs.values()))
        if raw is not None and len(raw):
            pre = host.preprocess(raw.reshape(len(raw), -1))
            if not np.array_equal(pre, first.reshape(len(first), -1)[: len(raw)]):
                i, j = _first_difference(pre, first.reshape(len(first), -1)[: len(raw)])
                raise TrialError(
                    f"C target: classify's preprocessing differs from the host's on image {i} "
                    f"(input byte {j})",
                    "this is a bug in sparsearch's C generator; use --target tflm meanwhile",
                )
        n = min(EMULATED_SAMPLES, len(first))
        samples = first.reshape(len(first), -1)[:n]
        raw_samples = raw.reshape(len(raw), -1)[:n] if raw is not None and len(raw) else None
        if raw_samples is None and program.classify_dtype == "int8":
            raw_samples = samples
        fw = measure_firmware(program, samples, raw_samples)
        host_out = host.invoke(samples)
        demo = raw_samples if raw is None or not len(raw) else raw.reshape(len(raw), -1)
        demo = (demo if demo is not None else samples)[:DEMO_IMAGES]
        demo_classes, _ = host.classify(demo)
        if not np.array_equal(fw.outputs, host_out):
            i, j = _first_difference(fw.outputs, host_out)
            raise TrialError(
                f"C target: the Cortex-M4 build differs from the host build on sample {i}, "
                f"output {j}: {int(fw.outputs[i, j])} vs {int(host_out[i, j])}",
                "this is a bug in sparsearch's C generator or the toolchain; use --target tflm",
            )
    measured = {
        "flash_bytes": fw.flash_bytes,
        "ram_bytes": fw.ram_bytes,
        "static_ram_bytes": fw.static_ram_bytes,
        "stack_bytes": fw.stack_bytes,
        "instructions": fw.instructions,
        "compiler": fw.compiler,
        "cpu": fw.cpu,
    }
    project = c_project_zip(
        program,
        images=demo,
        labels=None if labels is None else np.asarray(labels)[: len(demo)],
        host_predictions=demo_classes,
        measured=measured,
        title=title,
    )
    return CTarget(
        program=program,
        project=project,
        flash_bytes=fw.flash_bytes,
        ram_bytes=fw.ram_bytes,
        static_ram_bytes=fw.static_ram_bytes,
        stack_bytes=fw.stack_bytes,
        instructions=fw.instructions,
        classify_instructions=fw.classify_instructions,
        empty_image_flash_bytes=fw.empty_image_flash_bytes,
        images=images,
        compiler=fw.compiler,
        seconds=time.perf_counter() - start,
    )
