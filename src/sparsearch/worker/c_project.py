"""The ``c_project`` artifact: the interpreter-free C model as a firmware engineer takes it away.

One folder, ``P_project/`` (``P`` the program's prefix), zipped:

- ``P.h`` / ``P.c``: the generated model, unchanged: the only files a firmware project needs;
- ``main.c``: a demo that runs ``P_classify`` on a few embedded test images, prints
  ``i pred host label`` per image through semihosting and returns how many predictions differ
  from the host build's (embedded when the project was made);
- ``startup.c``, ``semihost.c``/``.h``, ``mps2-an386.ld``: the startup code, semihosting and
  linker script the firmware measurement builds with (``firmware_files/``, QEMU's mps2-an386
  board, a Cortex-M4);
- ``Makefile``: ``make`` builds ``P.elf`` with arm-none-eabi-gcc and the measurement's flags,
  ``make run`` runs it on qemu-system-arm;
- ``README.md``: the files, how to use the model, its API and measured cost, the demo.

The zip is reproducible: the same inputs give the same bytes (fixed timestamps and modes,
sorted entries).
"""

from __future__ import annotations

import io
import shlex
import zipfile
from string import Template
from typing import Any

import numpy as np

from sparsearch.codegen.program import CProgram
from sparsearch.worker import firmware

#: Most test images main.c embeds (each costs classify_bytes of flash and a line of output).
MAX_IMAGES = 16
PROJECT_MAIN = "project_main.c.tmpl"
#: Seconds ``make run`` gives QEMU before it stops the demo.
RUN_TIMEOUT_S = 60
#: Debian packages the demo needs.
PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "make")
_DATE = (2020, 1, 1, 0, 0, 0)
_SUPPORT_FILES = (*firmware.STARTUP_SOURCES, "semihost.h", firmware.LINKER_SCRIPT)


def _ints(name: str, values: Any, n: int, low: int, high: int) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one per image), not {a.shape}")
    if n and not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be integers, not {a.dtype}")
    if n and (a.min() < low or a.max() > high):
        raise ValueError(f"{name} must lie in [{low}, {high}]")
    return a.astype(np.int64)


def _images(program: CProgram, images: Any) -> np.ndarray:
    a = np.asarray(images)
    dtype = np.dtype(program.classify_dtype)
    if a.ndim < 2 or int(np.prod(a.shape[1:])) != program.classify_bytes:
        raise ValueError(
            f"images must have shape (N, {program.classify_bytes}) (one {program.classify_dtype} "
            f"sample per row, as {program.prefix}_classify takes it), not {a.shape}"
        )
    if not 1 <= len(a) <= MAX_IMAGES:
        raise ValueError(f"pass 1 to {MAX_IMAGES} images, not {len(a)}")
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"images must be {program.classify_dtype}, not {a.dtype}")
    info = np.iinfo(dtype)
    if a.min() < info.min or a.max() > info.max:
        raise ValueError(f"images must be {program.classify_dtype}: values outside its range")
    return a.reshape(len(a), -1).astype(dtype)


def _comment(text: str) -> str:
    """``text`` safe inside a C block comment, on one line."""
    return " ".join(text.replace("*/", "* /").split())


def _classify_doc(program: CProgram) -> tuple[str, str]:
    """(what ``P_classify`` takes, in one phrase for main.c; the README's paragraph)."""
    p, n = program.prefix, program.classify_bytes
    pre = program.info.get("preprocess")
    inp = program.info.get("input", {})
    hwc = "x".join(str(d) for d in inp.get("shape_hwc", ())) or "?"
    scale, zero = inp.get("scale"), inp.get("zero_point")
    if program.classify_dtype == "int8":
        formula = (
            f"q = clamp(round(x / {scale:.9g}) + ({zero}), -128, 127)"
            if scale is not None and zero is not None
            else "see the header"
        )
        return (
            f"int8 model inputs ({hwc}, NHWC), already quantized",
            f"`{p}_classify(const int8_t *input)` takes the int8 model input itself: {n} bytes, "
            f"{hwc} (H x W x C, NHWC order), each value quantized from the float sample `x` "
            f"as `{formula}` (the data set stores floats, so quantizing is the caller's). It "
            "copies the input into the model, runs it and returns the class index (the argmax "
            "of the outputs).",
        )
    if pre is not None and pre.pixel_scale is not None:
        sh, sw, sc = pre.source_hwc
        mh, mw, _ = pre.model_hwc
        resize = f", area-resizes them to {mh}x{mw}" if (sh, sw) != (mh, mw) else ""
        return (
            f"raw {sh}x{sw}x{sc} uint8 pixels (HWC, row-major)",
            f"`{p}_classify(const uint8_t *pixels)` takes the raw {sh}x{sw}x{sc} image as the "
            f"data set stores it: {n} uint8 pixels, HWC order, row by row (channels "
            f"interleaved), unscaled. Inside, in integer arithmetic, it scales them by "
            f"{pre.pixel_scale:.9g} to [0, 1]{resize} and quantizes them (scale "
            f"{pre.input_scale:.9g}, zero point {pre.input_zero_point}) exactly as the trained "
            "model's evaluation did, runs the model and returns the class index (the argmax of "
            "the outputs).",
        )
    return (
        f"raw uint8 samples of {n} bytes",
        f"`{p}_classify(const uint8_t *pixels)` takes the raw 8-bit image ({n} bytes, see "
        f"`{program.header}` for its shape and scaling) and returns the class index.",
    )


def project_main(
    program: CProgram,
    images: np.ndarray,
    host: np.ndarray,
    labels: np.ndarray,
    title: str = "",
) -> str:
    """main.c of the project (firmware_files/project_main.c.tmpl)."""
    width = 16 if program.classify_bytes > 16 else program.classify_bytes
    rows = []
    for n, image in enumerate(images):
        values = [str(int(v)) for v in image]
        lines = [", ".join(values[i : i + width]) for i in range(0, len(values), width)]
        rows.append(f"    {{ /* image {n} */\n        " + ",\n        ".join(lines) + "\n    },")
    text = (firmware.template_dir() / PROJECT_MAIN).read_text()
    return Template(text).substitute(
        title_line=f": {_comment(title)}" if title.strip() else "",
        header=program.header,
        prefix=program.prefix,
        PREFIX=program.prefix.upper(),
        count=len(images),
        raw_type="int8_t" if program.classify_dtype == "int8" else "uint8_t",
        image_doc=_classify_doc(program)[0],
        images="\n".join(rows),
        host=", ".join(str(int(v)) for v in host),
        labels=", ".join(str(int(v)) for v in labels),
    )


def makefile(program: CProgram) -> str:
    """The project's Makefile: the firmware measurement's compiler flags, linker script and
    QEMU options (``firmware.CFLAGS``/``LDFLAGS``/``QEMU_ARGS``)."""
    p = program.prefix
    sources = [*firmware.STARTUP_SOURCES, "main.c", program.source]
    cflags = list(firmware.CFLAGS)
    return "\n".join(
        [
            f"# {p}_project: build the demo as Cortex-M4 firmware and run it on QEMU.",
            "#",
            f"#   make        build {p}.elf and print its section sizes",
            f"#   make run    build, then run {p}.elf on qemu-system-arm's mps2-an386 board;",
            "#               fails (make: *** ... Error N) when N predictions differ from the",
            "#               host build's",
            "#   make clean  remove what make built",
            "#",
            "# Another compiler: make CC=/path/to/arm-none-eabi-gcc (arm-none-eabi-size is taken",
            "# from the same place). CC from the environment is ignored: it is usually the",
            "# host's compiler.",
            "",
            "ifeq ($(filter command line override,$(origin CC)),)",
            "CC = arm-none-eabi-gcc",
            "endif",
            "SIZE ?= $(patsubst %gcc,%size,$(CC))",
            "QEMU ?= qemu-system-arm",
            "CPU ?= cortex-m4",
            "",
            f"CFLAGS = -mcpu=$(CPU) {shlex.join(cflags)}",
            f"LDFLAGS = {shlex.join(firmware.LDFLAGS)} -T{firmware.LINKER_SCRIPT} -Wl,-Map={p}.map",
            "LDLIBS = -lgcc",
            f"QEMU_ARGS = {shlex.join(firmware.QEMU_ARGS)}",
            "",
            f"SOURCES = {' '.join(sources)}",
            f"HEADERS = {program.header} semihost.h",
            f"ELF = {p}.elf",
            "",
            ".PHONY: all run clean",
            "",
            "all: $(ELF)",
            "\t$(SIZE) $(ELF)",
            "",
            f"$(ELF): $(SOURCES) $(HEADERS) {firmware.LINKER_SCRIPT} Makefile",
            "\t$(CC) $(CFLAGS) -I. $(SOURCES) $(LDFLAGS) $(LDLIBS) -o $@",
            "",
            "# QEMU's exit status is main's return value: the number of images whose class",
            "# differs from the host build's (250: the program faulted; 124: it ran past",
            f"# {RUN_TIMEOUT_S} s).",
            "run: $(ELF)",
            f"\ttimeout {RUN_TIMEOUT_S} $(QEMU) $(QEMU_ARGS) -kernel $(ELF)",
            "",
            "clean:",
            f"\trm -f $(ELF) {p}.map",
            "",
        ]
    )


def _measured_section(program: CProgram, measured: dict[str, Any] | None) -> list[str]:
    keys = ("flash_bytes", "ram_bytes", "static_ram_bytes", "stack_bytes", "instructions")
    if not measured or any(measured.get(k) is None for k in keys):
        return [
            "Not measured: this model was not built and run as Cortex-M4 firmware when the",
            "project was made. `make` prints the section sizes of the demo image (startup,",
            "semihosting and main.c included).",
        ]
    m = {k: int(measured[k]) for k in keys}
    cpu = measured.get("cpu") or "cortex-m4"
    compiler = measured.get("compiler") or "arm-none-eabi-gcc"
    lines = [
        f"Measured on a {cpu} build (`{compiler}`, `-Os`, the flags of the Makefile):",
        "",
        "| | bytes / count |",
        "|---|---:|",
        f"| Flash: code, weights, tables (and the libgcc helpers it needs) | {m['flash_bytes']} |",
        f"| RAM: static (the activation buffer) + peak stack | {m['ram_bytes']} |",
        f"| RAM: static | {m['static_ram_bytes']} |",
        f"| RAM: peak stack of one call | {m['stack_bytes']} |",
        f"| Instructions per `{program.prefix}_invoke()` | {m['instructions']} |",
    ]
    if measured.get("classify_instructions") is not None:
        lines.append(
            f"| Instructions per `{program.prefix}_classify()` (preprocessing included) | "
            f"{int(measured['classify_instructions'])} |"
        )
    lines += [
        "",
        "Flash and static RAM are what the model adds to a firmware image that does not hold",
        "it (an image with the same startup code); the stack is the deepest the model's calls",
        "went below the caller's stack pointer. Instructions are counted on an emulated core,",
        "those skipped in IT blocks included: a cycle estimate without flash wait states or",
        "pipeline stalls.",
    ]
    return lines


def readme(
    program: CProgram,
    n_images: int,
    has_labels: bool,
    measured: dict[str, Any] | None,
    title: str = "",
) -> str:
    p, up = program.prefix, program.prefix.upper()
    inp = program.info.get("input", {})
    out = program.info.get("output", {})
    hwc = "x".join(str(d) for d in inp.get("shape_hwc", ())) or "?"
    _, classify_doc = _classify_doc(program)
    classes = out.get("classes", program.output_bytes)
    in_q = (
        f"`q = round(x / {inp['scale']:.9g}) + ({inp['zero_point']})`"
        if "scale" in inp and "zero_point" in inp
        else "see the header"
    )
    out_q = (
        f"`x = (q - ({out['zero_point']})) * {out['scale']:.9g}`"
        if "scale" in out and "zero_point" in out
        else "see the header"
    )
    label_note = "" if has_labels else " (none given: -1)"
    lines = [
        f"# {p}_project" + (f": {' '.join(title.split())}" if title.strip() else ""),
        "",
        "An int8 neural network as plain C, generated by sparsearch from the trial's int8",
        "`.tflite`, with a demo that runs it as Cortex-M4 firmware on QEMU. Its outputs equal",
        "TensorFlow Lite Micro's reference kernels bit for bit; no interpreter, no heap, no",
        "floating point at run time.",
        "",
        "## What is here",
        "",
        "| File | What |",
        "|---|---|",
        f"| `{program.header}`, `{program.source}` | the model: all your firmware needs |",
        f"| `main.c` | the demo: {n_images} test image(s), `{p}_classify` on each, one line "
        "per image, the count of disagreements with the host build as exit status |",
        "| `startup.c` | vector table and reset handler of the demo (no CMSIS) |",
        f"| `{firmware.LINKER_SCRIPT}` | linker script of QEMU's mps2-an386 board (Cortex-M4, "
        "4 MiB flash, 4 MiB RAM, 16 KiB stack) |",
        "| `semihost.c`, `semihost.h` | text output and exit through semihosting (QEMU or a "
        "debugger; not for production firmware) |",
        "| `Makefile` | `make`, `make run`, `make clean` |",
        "",
        "Only the two model files belong in your firmware; the rest is the demo.",
        "",
        "## Using the model in your firmware",
        "",
        f"Copy `{program.header}` and `{program.source}` into your project and compile "
        f"`{program.source}`",
        "with the rest of it. Nothing else is needed:",
        "",
        "- no other files, no library, no interpreter, no operator registration;",
        f"- no heap: every activation lives in one static buffer of `{up}_ARENA_BYTES` "
        f"({program.arena_bytes}) bytes (`.bss`), weights and tables are `const` (flash);",
        "- no libc beyond what gcc itself emits (it may call `memcpy`/`memset` and libgcc "
        "helpers); only `<stdint.h>` and `<stddef.h>` are included;",
        "- no floating point at run time;",
        f"- C99; `{program.source}` also compiles as C++, and `{program.header}` declares the API "
        '`extern "C"`.',
        "",
        "The model keeps its state in that static buffer: call it from one thread at a time.",
        "",
        "## API",
        "",
        "```c",
        f'#include "{program.header}"',
        "",
        f"int8_t *{p}_input(void);        /* where to write the int8 input ({up}_INPUT_BYTES) */",
        f"void {p}_invoke(void);          /* run the network (overwrites the input) */",
        f"const int8_t *{p}_output(void); /* the {up}_OUTPUT_BYTES int8 outputs of the last "
        "invoke */",
        f"int {p}_classify(const {'int8_t' if program.classify_dtype == 'int8' else 'uint8_t'} "
        "*raw); /* a raw sample -> class index */",
        "```",
        "",
        classify_doc,
        "",
        f"The lower-level path: write the int8 input, {hwc} in NHWC order "
        f"({program.input_bytes} bytes, {in_q} of the float input `x`) to `{p}_input()`, call "
        f"`{p}_invoke()`, read the {classes} int8 outputs (logits, {out_q}) from `{p}_output()`:",
        "",
        "```c",
        f"memcpy({p}_input(), my_input, {up}_INPUT_BYTES);",
        f"{p}_invoke();",
        f"const int8_t *logits = {p}_output();",
        "```",
        "",
        f"`{program.header}` repeats all of this, with the macros `{up}_INPUT_HEIGHT`, "
        f"`{up}_INPUT_WIDTH`, `{up}_INPUT_CHANNELS`, `{up}_CLASSIFY_BYTES` and the zero points.",
        "",
        "## Cost",
        "",
        *_measured_section(program, measured),
        "",
        "## The demo",
        "",
        "Needs the Arm GNU toolchain with newlib and QEMU; on Debian or Ubuntu:",
        "",
        "```sh",
        f"sudo apt-get install {' '.join(PACKAGES)}",
        "make run",
        "```",
        "",
        f"`make` builds `{p}.elf` with `arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -Os` (warnings "
        "are errors) and prints its section sizes; `make run` runs it on QEMU's mps2-an386 "
        f"board (at most {RUN_TIMEOUT_S} s). It prints one line per image,",
        "",
        "```",
        "i pred host label",
        "```",
        "",
        f"where `pred` is the firmware's class, `host` the class the host build of the same "
        f"sources gave when this project was made, `label` the data set's label{label_note}. "
        "Lines starting with `#` are comments. The program's exit status is the number of "
        "images where `pred != host`: `make run` succeeds when the firmware agrees with the host "
        "build on every image and fails otherwise (make reports `Error N`, N images differ; "
        "`Error 250` means the program faulted, `Error 124` that it did not finish).",
        "",
        f"The demo holds {n_images} test image(s), chosen when the project was made (at most "
        f"{MAX_IMAGES}): each costs "
        f"{program.classify_bytes} bytes of flash and an inference. To try your own samples, "
        "replace the arrays in `main.c`.",
        "",
    ]
    return "\n".join(lines)


def _zip(files: dict[str, str | bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_DATE)  # reproducible bytes
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, whatever builds the zip: the mode below counts
            info.external_attr = 0o100644 << 16
            data = files[name]
            z.writestr(info, data.encode() if isinstance(data, str) else data)
    return buf.getvalue()


def c_project_zip(
    program: CProgram,
    *,
    images: np.ndarray,
    labels: np.ndarray | None,
    host_predictions: np.ndarray,
    measured: dict[str, Any] | None,
    title: str = "",
) -> bytes:
    """The ``c_project`` artifact: a zip of the folder ``P_project/`` (see the module doc).

    ``images``: (N, classify_bytes) samples as ``P_classify`` takes them (``uint8`` pixels, or
    ``int8`` inputs when ``program.classify_dtype`` is int8), 1 <= N <= MAX_IMAGES;
    ``host_predictions``: (N,) the host build's class of each; ``labels``: (N,) or None;
    ``measured``: ``CTarget.metadata()`` (or None: "not measured"). Raises ValueError when a
    shape, dtype or value does not fit the program.
    """
    x = _images(program, images)
    n = len(x)
    host = _ints("host_predictions", host_predictions, n, 0, program.output_bytes - 1)
    has_labels = labels is not None
    label = (
        _ints("labels", labels, n, -1, 2**15 - 1)
        if labels is not None
        else np.full(n, -1, dtype=np.int64)
    )
    folder = f"{program.prefix}_project"
    files: dict[str, str | bytes] = {}
    for name, text in program.files.items():
        if "/" in name or "\\" in name:
            raise ValueError(f"program file names must be plain names, not {name!r}")
        files[name] = text
    for name in _SUPPORT_FILES:
        files[name] = (firmware.template_dir() / name).read_bytes()
    files["main.c"] = project_main(program, x, host, label, title)
    files["Makefile"] = makefile(program)
    files["README.md"] = readme(program, n, has_labels, measured, title)
    return _zip({f"{folder}/{name}": data for name, data in files.items()})
