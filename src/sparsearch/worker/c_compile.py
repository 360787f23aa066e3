"""``sparsearch compile``: any int8 ``.tflite`` within the C target's operators -> the
interpreter-free C project, checked bit-exact against TFLite Micro and measured as Cortex-M4
firmware. A standalone tool for every TFLM user who wants the interpreter out of the firmware.

The file is read by the C generator's own bounds-checked reader first, so a malformed or
hostile flatbuffer is a ``ModelError`` before TFLM sees it; TFLM then runs in a child process
(``worker.tflm``), so a model it chokes on costs that process only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sparsearch.codegen import CProgram, ModelError, generate
from sparsearch.errors import ConfigError, TrialError
from sparsearch.worker.c_host import HostModel
from sparsearch.worker.c_project import c_project_zip
from sparsearch.worker.firmware import measure_firmware
from sparsearch.worker.tflm import run_tflm

#: Random inputs every compile checks (uniform int8, seeded).
RANDOM_INPUTS = 200
#: Images embedded in the project's demo main.c.
DEMO_IMAGES = 8


@dataclass(frozen=True)
class CompileReport:
    program: CProgram
    project: bytes  # the c_project zip
    bit_exact: bool
    images: int
    #: (set, image, output, C value, TFLM value) of the first difference, when not bit-exact
    first_difference: tuple[str, int, int, int, int] | None
    tflm: dict[str, int]
    c: dict[str, Any]
    c_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "bit_exact": self.bit_exact,
            "images": self.images,
            "tflm": self.tflm,
            "c": self.c,
        }
        if self.first_difference is not None:
            name, i, j, got, want = self.first_difference
            doc["first_difference"] = {
                "set": name,
                "image": i,
                "output": j,
                "c": got,
                "tflm": want,
            }
        if self.c_error:
            doc["c_error"] = self.c_error
        return doc


def load_samples(data: Any, program: CProgram) -> np.ndarray:
    """The int8 model inputs of a user's ``.npz`` (its ``x`` array, else its only array)."""
    names = list(data.files)
    if not names:
        raise ConfigError("the samples file holds no arrays", "save int8 inputs as x=...")
    key = "x" if "x" in names else names[0]
    if key != "x" and len(names) > 1:
        raise ConfigError(
            f"the samples file holds {len(names)} arrays ({', '.join(names[:5])}) and no 'x'",
            "save the int8 model inputs under the name x",
        )
    x = data[key]
    if x.dtype != np.int8:
        raise ConfigError(
            f"samples are {x.dtype}; the model takes int8 inputs",
            "quantize them first: q = round(x / scale) + zero_point (the model's input "
            "quantization), as int8",
        )
    if x.ndim < 1 or len(x) == 0 or x[0].size != program.input_bytes:
        raise ConfigError(
            f"samples of shape {list(x.shape)} do not fit the model's input of "
            f"{program.input_bytes} bytes ({program.info['input']['shape_hwc']} HWC)",
            "pass an (N, H, W, C) int8 array",
        )
    return np.ascontiguousarray(x.reshape(len(x), -1))


def compile_tflite(
    tflite: bytes,
    *,
    samples: np.ndarray | None = None,
    prefix: str = "model",
    seed: int = 0,
    firmware: bool = True,
    progress: Any = None,
) -> CompileReport:
    """Generate, check and measure. ``samples``: extra int8 inputs (N, input bytes) to check
    besides the random ones. ``firmware=False``: no ARM build (C numbers None). ``progress``:
    called with a short description of each step. Raises ModelError (the model cannot be read
    or is outside the C target), TrialError (TFLM or a build failed)."""
    say = progress or (lambda _what: None)
    say("reading and generating C")
    program = generate(tflite, prefix=prefix)  # ModelError: before TFLM touches the file
    h, w, c = program.info["input"]["shape_hwc"]
    rng = np.random.default_rng(seed)
    sets = {"random": rng.integers(-128, 128, (RANDOM_INPUTS, program.input_bytes), np.int8)}
    if samples is not None and len(samples):
        sets["samples"] = np.ascontiguousarray(samples, dtype=np.int8)
    say("running TensorFlow Lite Micro")
    run = run_tflm(tflite, {k: v.reshape(len(v), h, w, c) for k, v in sets.items()})
    say("building and running the host build")
    first = None
    images = 0
    with HostModel(program) as host:
        for name, x in sets.items():
            got = host.invoke(x)
            want = run.outputs[name].reshape(len(x), -1)
            images += len(x)
            if first is None and not np.array_equal(got, want):
                i, j = (int(v) for v in np.argwhere(got != want)[0])
                first = (name, i, j, int(got[i, j]), int(want[i, j]))
        demo = sets.get("samples", sets["random"])[:DEMO_IMAGES]
        classes, _ = host.classify(demo)
        host_out = host.invoke(demo[:2])
    c_numbers: dict[str, Any] = dict.fromkeys(
        ("flash_bytes", "ram_bytes", "stack_bytes", "instructions"), None
    )
    c_error, measured = None, None
    if firmware:
        say("building and emulating the Cortex-M4 firmware")
        try:
            fw = measure_firmware(program, demo[:2], demo[:2])
        except TrialError as e:
            c_error = e.message
        else:
            if not np.array_equal(fw.outputs, host_out):
                raise TrialError(
                    "the Cortex-M4 build's outputs differ from the host build's",
                    "report this with the model: it is a bug in the generator or toolchain",
                )
            c_numbers = {
                "flash_bytes": fw.flash_bytes,
                "ram_bytes": fw.ram_bytes,
                "stack_bytes": fw.stack_bytes,
                "instructions": fw.instructions,
            }
            measured = {
                **c_numbers,
                "static_ram_bytes": fw.static_ram_bytes,
                "compiler": fw.compiler,
                "cpu": fw.cpu,
            }
    else:
        c_error = "not measured (--no-firmware)"
    say("writing the project")
    project = c_project_zip(
        program, images=demo, labels=None, host_predictions=classes, measured=measured
    )
    return CompileReport(
        program=program,
        project=project,
        bit_exact=first is None,
        images=images,
        first_difference=first,
        tflm={"flash_bytes": len(tflite), "ram_bytes": run.arena_total},
        c={**c_numbers, "arena_bytes": program.arena_bytes},
        c_error=c_error,
    )


__all__ = ["CompileReport", "ModelError", "compile_tflite", "load_samples"]
