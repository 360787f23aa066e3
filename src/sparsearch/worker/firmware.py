"""Measure a generated C model (``codegen.CProgram``) as Cortex-M firmware.

``measure_firmware`` builds two images with arm-none-eabi-gcc from the same startup code and
linker script (``firmware_files/``, QEMU's mps2-an386 board, a Cortex-M4):

- the EMPTY image: startup, semihosting and a ``main`` that does not use the model;
- the MODEL image: the same plus the model's sources and a ``main`` that references the four
  API functions (so the linker keeps them) and runs the model once under QEMU.

What the model costs is the difference: its code, weights, tables and any libgcc helpers it
pulls in (flash), its static buffers (RAM). The model image then runs in-process on unicorn
(``_emulate``): each input through ``P_invoke()`` and each raw sample through ``P_classify``,
counting instructions and the peak stack. Emulation costs a Python call per basic block, so
callers emulate a handful of samples and measure accuracy on a host build of the same C.

``run_in_qemu`` runs an image on QEMU's model of the board, semihosting on: the same ELF runs
there unchanged (tests check that both give the same outputs).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

import numpy as np
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile

from sparsearch.errors import ConfigError, ToolchainError, TrialError
from sparsearch.worker._emulate import CPU_MODELS, Emulator

if TYPE_CHECKING:  # only the type: the generator's package need not load to measure its output
    from sparsearch.codegen.program import CProgram

#: The compiler, when neither the caller nor the environment names one.
DEFAULT_GCC = "arm-none-eabi-gcc"
GCC_ENV = "SPARSEARCH_ARM_GCC"
_GCC_HINT = (
    "install the Debian package gcc-arm-none-eabi (and libnewlib-arm-none-eabi), "
    f"set {GCC_ENV} to its path, or use --target tflm"
)
_BUILD_HINT = (
    "the generated C does not build for Cortex-M: report it with the model, or use --target tflm"
)

#: Compiler flags of both images (and of the c_project's Makefile). Size-optimized as firmware
#: usually is; unused functions and data dropped per section; no C runtime startup files
#: (startup.c is the startup). The libraries are gcc's defaults, libgcc and newlib-nano's libc:
#: the linker takes only the members the program calls (memcpy, say), none otherwise.
CFLAGS = (
    "-mthumb",
    "-Os",
    "-std=c99",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-ffunction-sections",
    "-fdata-sections",
)
LDFLAGS = ("-nostartfiles", "--specs=nano.specs", "-Wl,--gc-sections")
LINKER_SCRIPT = "mps2-an386.ld"
#: Files of firmware_files/ that both images compile.
STARTUP_SOURCES = ("startup.c", "semihost.c")
EMPTY_MAIN = "empty_main.c"
MODEL_MAIN = "model_main.c.tmpl"
#: qemu-system-arm's options for an image (then ``-kernel X.elf``): the mps2-an386 board, no
#: display, monitor or UART; semihosting on, its output on the host's stdout.
QEMU_ARGS = (
    *("-machine", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "null"),
    *("-semihosting-config", "enable=on,target=native"),
)
#: Seconds one compile-and-link may take.
BUILD_TIMEOUT_S = 120
#: Per-call limits of the emulation: a runaway program fails the trial instead of hanging it.
MAX_INSTRUCTIONS = 2_000_000_000
CALL_TIMEOUT_S = 60.0

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, eq=False)
class Firmware:
    """What one model costs as Cortex-M firmware, and what it computed.

    ``instructions`` count what the core issues, including instructions an IT block skips (the
    Cortex-M4 spends a cycle on each): a cycle-count proxy without wait states or pipeline
    stalls. Stack is the deepest word written below the caller's stack pointer.
    """

    #: Flash the model adds to the empty image: code, weights, tables, libgcc/libc helpers.
    flash_bytes: int
    #: The model's static RAM (.data + .bss beyond the empty image's): its activation buffer.
    static_ram_bytes: int
    #: Peak stack of one P_invoke() or one P_classify(raw) call, whichever is deeper.
    stack_bytes: int
    #: static_ram_bytes + stack_bytes.
    ram_bytes: int
    #: Most instructions one P_invoke() executed over the inputs.
    instructions: int
    #: Most instructions one P_classify(raw) executed (None without raw samples).
    classify_instructions: int | None
    #: P_output() after each invoke, (N, output_bytes) int8.
    outputs: np.ndarray
    #: P_classify(raw) per raw sample, (M,) int (None without raw samples).
    classes: np.ndarray | None
    #: Flash and RAM (.data + .bss) of the empty image: startup and semihosting.
    empty_image_flash_bytes: int
    empty_image_ram_bytes: int
    #: Allocated sections of the model image, name -> bytes.
    sections: dict[str, int]
    #: Wall time of both builds, and of build + emulation.
    build_seconds: float
    seconds: float
    #: First line of ``gcc --version``.
    compiler: str
    cpu: str
    #: The model image (``workdir/model.elf``), when the caller gave a workdir to keep.
    elf: Path | None = field(default=None)


def find_arm_gcc(gcc: str | None = None) -> str:
    """The Arm compiler's path: ``gcc``, else env SPARSEARCH_ARM_GCC, else arm-none-eabi-gcc
    on PATH. Raises TrialError at once when it does not exist (before any work is done)."""
    name = gcc or os.environ.get(GCC_ENV) or DEFAULT_GCC
    path = shutil.which(name)
    if path is None:
        raise ToolchainError(f"the Arm compiler {name!r} was not found", hint=_GCC_HINT)
    return path


@functools.lru_cache(maxsize=8)
def compiler_version(gcc: str) -> str:
    """First line of ``gcc --version`` (``arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 ...``)."""
    try:
        done = subprocess.run(
            [gcc, "--version"], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise TrialError(f"the Arm compiler {gcc!r} does not run: {e}", hint=_GCC_HINT) from None
    return done.stdout.splitlines()[0].strip() if done.stdout else gcc


def template_dir() -> Path:
    """firmware_files/: startup, semihosting, linker script and the two mains."""
    return Path(str(resources.files("sparsearch.worker") / "firmware_files"))


def qemu_input_pattern(input_bytes: int) -> np.ndarray:
    """The input the model image's ``main`` runs under QEMU: byte i is (int8_t)(37 * i + 11)."""
    return ((np.arange(input_bytes) * 37 + 11) % 256).astype(np.uint8).view(np.int8)


def model_main(program: CProgram) -> str:
    """The model image's ``main.c`` (firmware_files/model_main.c.tmpl for this prefix)."""
    text = (template_dir() / MODEL_MAIN).read_text()
    return Template(text).substitute(
        header=program.header,
        prefix=program.prefix,
        PREFIX=program.prefix.upper(),
        raw_type="int8_t" if program.classify_dtype == "int8" else "uint8_t",
    )


def write_sources(program: CProgram, directory: Path) -> None:
    """Lay out both images' sources in ``directory``: the startup files, the linker script,
    ``empty_main.c``, ``main.c`` (the model's) and the program's files under ``model/``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (*STARTUP_SOURCES, "semihost.h", LINKER_SCRIPT, EMPTY_MAIN):
        shutil.copyfile(template_dir() / name, directory / name)
    (directory / "main.c").write_text(model_main(program))
    model = directory / "model"
    model.mkdir(exist_ok=True)
    for name, text in program.files.items():
        if Path(name).name != name:
            raise ValueError(f"program file names must be plain names, not {name!r}")
        (model / name).write_text(text)


def _compile_command(gcc: str, cpu: str, sources: list[str], out: str) -> list[str]:
    return [
        gcc,
        f"-mcpu={cpu}",
        *CFLAGS,
        "-I.",
        "-Imodel",
        *sources,
        *LDFLAGS,
        f"-T{LINKER_SCRIPT}",
        f"-Wl,-Map={Path(out).with_suffix('.map')}",
        "-lgcc",
        "-o",
        out,
    ]


def _first_errors(stderr: str, limit: int = 12) -> str:
    """The compiler's first error lines (the rest is usually consequences)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if "error" in line or "undefined reference" in line]
    start = max(0, errors[0] - 2) if errors else 0
    return "\n".join(lines[start : start + limit])


def build_images(
    program: CProgram, directory: Path, gcc: str, cpu: str = "cortex-m4"
) -> tuple[Path, Path]:
    """Build ``directory/empty.elf`` and ``directory/model.elf`` (in parallel: two compiler
    processes). Raises TrialError with the compiler's first errors when either fails."""
    write_sources(program, directory)
    model_sources = sorted(f"model/{name}" for name in program.files if name.endswith(".c"))
    jobs = {
        "empty": [*STARTUP_SOURCES, EMPTY_MAIN],
        "model": [*STARTUP_SOURCES, "main.c", *model_sources],
    }
    procs = {}
    try:
        for image, sources in jobs.items():
            command = _compile_command(gcc, cpu, sources, f"{image}.elf")
            procs[image] = subprocess.Popen(
                command,
                cwd=directory,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        deadline = time.monotonic() + BUILD_TIMEOUT_S
        for image, proc in procs.items():
            try:
                output, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TrialError(
                    f"building the {image} image took more than {BUILD_TIMEOUT_S} s",
                    hint=_BUILD_HINT,
                ) from None
            if proc.returncode != 0:
                raise TrialError(
                    f"{Path(gcc).name} could not build the {image} image:\n"
                    + _first_errors(output),
                    hint=_BUILD_HINT,
                )
    except OSError as e:
        raise TrialError(f"the Arm compiler {gcc!r} does not run: {e}", hint=_GCC_HINT) from None
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return directory / "empty.elf", directory / "model.elf"


def section_sizes(elf_path: Path) -> dict[str, int]:
    """Bytes of each allocated section (what occupies the device's memory)."""
    with elf_path.open("rb") as f:
        return {
            s.name: int(s["sh_size"])
            for s in ELFFile(f).iter_sections()
            if s["sh_flags"] & SH_FLAGS.SHF_ALLOC and s["sh_size"]
        }


def flash_and_ram(elf_path: Path) -> tuple[int, int]:
    """(flash, static RAM) bytes of an image, by section flags: flash holds every allocated
    section with contents (code, constants, and .data's initial values), RAM every writable
    one (.data and .bss)."""
    flash = ram = 0
    with elf_path.open("rb") as f:
        for s in ELFFile(f).iter_sections():
            flags = s["sh_flags"]
            if not flags & SH_FLAGS.SHF_ALLOC:
                continue
            if s["sh_type"] != "SHT_NOBITS":
                flash += int(s["sh_size"])
            if flags & SH_FLAGS.SHF_WRITE:
                ram += int(s["sh_size"])
    return flash, ram


def _check(program: CProgram, inputs: np.ndarray, raw: np.ndarray | None, cpu: str) -> None:
    if cpu not in CPU_MODELS:
        raise ConfigError(
            f"unknown Cortex-M core {cpu!r}", hint=f"use one of {', '.join(CPU_MODELS)}"
        )
    if not _IDENTIFIER.fullmatch(program.prefix):
        raise ValueError(f"the program's prefix {program.prefix!r} is not a C identifier")
    if inputs.dtype != np.int8 or inputs.ndim < 1 or len(inputs) == 0:
        raise ValueError(
            f"inputs must be a non-empty int8 array, not {inputs.dtype} {inputs.shape}"
        )
    if inputs[0].size != program.input_bytes:
        raise ValueError(f"each input must have {program.input_bytes} bytes, not {inputs[0].size}")
    if raw is not None and (raw.ndim < 1 or len(raw) == 0):
        raise ValueError("raw must hold at least one sample (or be None)")
    if raw is not None and raw[0].size != program.classify_bytes:
        raise ValueError(f"each raw sample must have {program.classify_bytes} bytes")
    if raw is not None and raw.dtype != np.dtype(program.classify_dtype):
        raise ValueError(f"raw samples must be {program.classify_dtype}, not {raw.dtype}")


def measure_firmware(
    program: CProgram,
    inputs: np.ndarray,
    raw: np.ndarray | None = None,
    *,
    gcc: str | None = None,
    cpu: str = "cortex-m4",
    workdir: Path | None = None,
    max_instructions: int = MAX_INSTRUCTIONS,
    call_timeout_s: float = CALL_TIMEOUT_S,
) -> Firmware:
    """Build ``program`` as firmware for ``cpu`` and run it on an emulated core.

    ``inputs`` (N, ...) int8, one input per ``P_invoke()``; ``raw`` (M, ...) samples of
    ``program.classify_dtype`` for ``P_classify``. Each call costs about a Python call per
    basic block: pass a handful of samples. ``workdir`` keeps the sources, both ELFs and their
    link maps there (the sources are re-written); otherwise a temporary directory is used.
    Raises TrialError when the compiler is missing, the build fails, or a call faults, runs
    past ``max_instructions`` or ``call_timeout_s``.
    """
    start = time.perf_counter()
    inputs = np.asarray(inputs)
    raw = None if raw is None else np.asarray(raw)
    _check(program, inputs, raw, cpu)
    compiler = find_arm_gcc(gcc)
    version = compiler_version(compiler)
    keep = contextlib.nullcontext(str(workdir)) if workdir is not None else None
    with keep or tempfile.TemporaryDirectory(prefix="sparsearch-fw-") as where:
        directory = Path(where)
        empty_elf, model_elf = build_images(program, directory, compiler, cpu)
        build_seconds = time.perf_counter() - start
        empty_flash, empty_ram = flash_and_ram(empty_elf)
        model_flash, model_ram = flash_and_ram(model_elf)
        sections = section_sizes(model_elf)
        emulator = Emulator(
            model_elf,
            cpu,
            max_instructions=max_instructions,
            call_timeout_s=call_timeout_s,
            scratch_bytes=program.classify_bytes,
        )
        p = program.prefix
        input_at = emulator.call(f"{p}_input").result & 0xFFFF_FFFF
        outputs = np.empty((len(inputs), program.output_bytes), dtype=np.int8)
        instructions = stack = 0
        for n, sample in enumerate(inputs):
            emulator.write(input_at, np.ascontiguousarray(sample, dtype=np.int8).tobytes())
            call = emulator.call(f"{p}_invoke")
            instructions = max(instructions, call.instructions)
            stack = max(stack, call.stack_bytes)
            output_at = emulator.call(f"{p}_output").result & 0xFFFF_FFFF
            outputs[n] = np.frombuffer(emulator.read(output_at, program.output_bytes), np.int8)
        classes = classify_instructions = None
        if raw is not None:
            classes = np.empty(len(raw), dtype=np.int64)
            classify_instructions = 0
            for n, sample in enumerate(raw):
                # the raw sample sits in free RAM past .bss: the caller's, not the model's
                emulator.write(emulator.scratch, np.ascontiguousarray(sample).tobytes())
                call = emulator.call(f"{p}_classify", emulator.scratch)
                classes[n] = call.result
                classify_instructions = max(classify_instructions, call.instructions)
                stack = max(stack, call.stack_bytes)
    static_ram = model_ram - empty_ram
    return Firmware(
        flash_bytes=model_flash - empty_flash,
        static_ram_bytes=static_ram,
        stack_bytes=stack,
        ram_bytes=static_ram + stack,
        instructions=instructions,
        classify_instructions=classify_instructions,
        outputs=outputs,
        classes=classes,
        empty_image_flash_bytes=empty_flash,
        empty_image_ram_bytes=empty_ram,
        sections=sections,
        build_seconds=build_seconds,
        seconds=time.perf_counter() - start,
        compiler=version,
        cpu=cpu,
        elf=Path(workdir) / "model.elf" if workdir is not None else None,
    )


def run_in_qemu(elf_path: Path, timeout_s: float = 30.0) -> tuple[int, str]:
    """Run a firmware image on QEMU's mps2-an386 board; (exit status, semihosting stdout).

    The image's ``main`` return value is the exit status (startup.c exits through semihosting;
    250 means a fault). Raises TrialError when QEMU is missing or the image runs past
    ``timeout_s``.
    """
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        raise TrialError(
            "qemu-system-arm was not found", hint="install the Debian package qemu-system-arm"
        )
    command = [qemu, *QEMU_ARGS, "-kernel", str(elf_path)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        raise TrialError(
            f"{elf_path.name} did not exit within {timeout_s:g} s on QEMU",
            hint="the program does not terminate (main must return)",
        ) from None
    return done.returncode, done.stdout
