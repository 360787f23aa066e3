"""What a generated C model costs as Cortex-M4 firmware, without a compiler: flash, static RAM,
peak stack and the instructions of one ``invoke`` and one ``classify``, from the layers.

``worker.firmware.measure_firmware`` measures these (model image minus empty image, on the
emulator); ``c_cost`` predicts them for ONE toolchain: GNU Arm Embedded GCC 12.2.1
(``arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205``, Debian's gcc-arm-none-eabi) with
``-mcpu=cortex-m4 -mthumb -Os -std=c99 -ffunction-sections -fdata-sections``, linked with
``--gc-sections`` and newlib-nano (``worker.firmware.CFLAGS`` / ``LDFLAGS``) against
``worker/firmware_files``. Another compiler, flag or harness changes the tables: refit them.

What the compiler does with the generated C, and how the model follows it:

- Kernels are ``static NOINLINE``, but ``noinline`` does not stop GCC's interprocedural
  constant propagation (IPA-CP). A kernel called by ONE layer becomes ``kernel.constprop.0``,
  specialized for that layer: its parameter struct is folded into the code and leaves flash (so
  do 1-element arrays indexed by a constant), loops of one trip vanish. Its size and frame
  depend on the layer: ``SPECIALIZED`` holds the median size and the most common frame of each
  *class* of layer (``kernel_class``: which extents exceed 1; the nearest fitted class for one
  not seen), fitted on compiled models. This is the approximate part of flash and stack:
  ``__attribute__((noinline, noclone))`` in the generator would make every kernel a fixed
  function, at +175 B (+5.6 %) of flash on average (benchmark's 56 exports; up to +21 %).
- A kernel called by several layers is generic (``GENERIC``), or, when all its calls pass the
  same input or output pointer, a clone without that argument (``SHARED``): fixed sizes and
  frames. ``preprocess`` has one call (``PREPROCESS``, by kind); ``requantize`` is never cloned.
- Flash replays the link: the model object's functions (generic ones in source order, the
  clones in reverse source order, then the API), each at its section's alignment; the harness's
  strings and API table; the model's read-only objects in reverse definition order (parameter
  structs from the last layer down, each layer's arrays, the preprocessing tables; identical
  tables merged by -fipa-icf), each at its alignment; the end rounded to 4; minus the empty
  image. ``model_invoke`` grows with its calls (``INVOKE``, least squares).
- Static RAM is the plan's arena as emitted: ``int32_t arena[max(1, ceil(bytes / 4))]``.
- Stack: the emulator's peak (deepest word written) is the sum of the static frames on the
  deepest path (the measured frames gave it exactly on every model checked): ``classify``'s
  frame + the deeper of ``preprocess`` and
  ``invoke``; ``invoke``'s frame + a kernel's (+ ``requantize``'s where the kernel calls it),
  except for the last call, a tail call made after ``invoke`` has popped its frame.
- Instructions: the loop iterations of each kernel counted exactly (``loops``: outputs, window
  rows and taps inside and outside the input, multiply-accumulates, ...) times per-kernel
  coefficients fitted by non-negative least squares (least relative error) on per-function
  instruction counts (``INSTRUCTIONS``; generic kernels apart from specialized ones, grouped by
  ``instruction_group``), ``requantize`` per call. Data-dependent branches (rounding, clamping)
  and GCC's register allocation in specialized kernels make it approximate.

Accuracy (``c_cost(model_of(layer_shapes(arch)))`` against the measured firmware of the
exported file, benchmarks/c_estimator_accuracy.py): on 24 judged candidates of the default
space, flash within 0.9 % (mean 0.3 %), RAM exact on all, instructions within 23 % (mean 3 %;
3 of 24 beyond 10 %, all specialized window convolutions). On the 32 fitted: flash 0.6 %, RAM
exact on 31 (8 B off once), instructions 8 %. The estimate equals ``c_cost`` of the exported
file's own layers on all 56.

Refit (after a change of the generated C, the compiler, its flags or the harness)::

    .venv/bin/python benchmarks/c_estimator_accuracy.py --refit

measures the fitted set, synthetic programs (``--synthetic`` per shape) and the committed test
models (the only users of avgpool, copy4d and requant), reads each image's symbol table (``st_size``
of every function and object, pyelftools), the object file's section alignments and
``-fstack-usage`` frames, counts instructions per function on the emulator, and prints every
table below as Python to paste here (the generic avgpool, copy4d, reduce and requant entries,
never called twice in those models, come from compiling them with ``noclone``). Results:
benchmarks/results/estimator_accuracy.json (key ``"c"``) and its markdown.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsearch.codegen import planner
from sparsearch.codegen.graph import Model
from sparsearch.codegen.ops import REQUIRES, Layer
from sparsearch.codegen.preprocess import Preprocess

__all__ = ["CCost", "c_cost", "classify_of", "loops"]


@dataclass(frozen=True)
class Fn:
    """A compiled function: ``st_size`` in bytes, its section's alignment in the object file,
    its static frame in bytes (``-fstack-usage``)."""

    size: int
    align: int
    frame: int


# -- tables: GCC 12.2.1, -mcpu=cortex-m4 -mthumb -Os (printed by the benchmark's --refit) ---------

#: Kernels called by two or more layers (no pointer common to all calls). avgpool, copy4d,
#: reduce and requant never run twice in the search space's models: their entries are the same
#: functions compiled with ``noclone`` (what a second call leaves), from tests/codegen/data/edge.
GENERIC: dict[str, Fn] = {
    "requantize": Fn(128, 4, 12),
    "conv": Fn(312, 2, 96),
    "dwconv": Fn(272, 2, 72),
    "fc": Fn(152, 2, 48),
    "maxpool": Fn(222, 2, 64),
    "avgpool": Fn(258, 2, 80),
    "copy4d": Fn(168, 2, 64),
    "reduce": Fn(90, 2, 40),
    "requant": Fn(68, 2, 40),
}
#: Kernels called by several layers that all pass the same input ("in"), output ("out") or both
#: pointers ("both"; "both0": both at arena offset 0): GCC's clone without them.
SHARED: dict[tuple[str, str], Fn] = {
    ("conv", "both"): Fn(320, 4, 88),
    ("conv", "both0"): Fn(320, 4, 88),
    ("conv", "in"): Fn(316, 4, 88),
    ("conv", "out"): Fn(320, 4, 96),
    ("dwconv", "both"): Fn(288, 4, 72),
    ("dwconv", "both0"): Fn(284, 4, 72),
    ("dwconv", "in"): Fn(276, 4, 72),
    ("dwconv", "out"): Fn(276, 4, 72),
    ("maxpool", "both"): Fn(220, 4, 56),
    ("maxpool", "both0"): Fn(220, 4, 56),
}
#: Kernels called by one layer, by ``kernel_class`` (median size, most common frame; ``n`` the
#: layers it was fitted on); ``None``: the kernel's fallback for a class not seen when fitting.
SPECIALIZED: dict[str, dict[tuple[bool, ...] | None, Fn]] = {
    "avgpool": {  # tests/codegen/data/edge only
        (True, True, False, True, True, False, False): Fn(76, 4, 16),  # n=1
        (True, True, True, True, True, False, False): Fn(140, 4, 48),  # n=4
        None: Fn(140, 4, 48),
    },
    "conv": {
        (False, False, False, True, False, False, False, True): Fn(76, 4, 24),  # n=1
        (False, False, False, True, False, False, True, False): Fn(100, 4, 48),  # n=1
        (False, False, False, True, False, False, True, True): Fn(104, 4, 40),  # n=2
        (False, False, False, True, False, True, True, False): Fn(108, 4, 48),  # n=1
        (False, False, False, True, False, True, True, True): Fn(120, 4, 48),  # n=1
        (False, False, False, True, True, False, False, True): Fn(128, 4, 48),  # n=1
        (False, False, False, True, True, False, True, True): Fn(136, 4, 48),  # n=3
        (False, False, False, True, True, True, True, False): Fn(168, 4, 56),  # n=2
        (False, False, False, True, True, True, True, True): Fn(164, 4, 56),  # n=23
        (False, False, True, True, True, False, False, False): Fn(124, 4, 48),  # n=1
        (False, False, True, True, True, False, True, True): Fn(136, 4, 48),  # n=1
        (False, False, True, True, True, True, True, True): Fn(156, 4, 56),  # n=2
        (False, True, False, True, False, False, True, True): Fn(128, 4, 48),  # n=1
        (False, True, False, True, True, False, True, True): Fn(176, 4, 56),  # n=4
        (False, True, True, True, True, False, True, True): Fn(176, 4, 64),  # n=2
        (True, True, False, True, False, True, True, False): Fn(200, 4, 56),  # n=4
        (True, True, False, True, False, True, True, True): Fn(204, 4, 64),  # n=1
        (True, True, False, True, True, False, False, True): Fn(132, 4, 48),  # n=1
        (True, True, False, True, True, True, True, False): Fn(268, 4, 72),  # n=11
        (True, True, False, True, True, True, True, True): Fn(292, 4, 88),  # n=7
        (True, True, True, True, True, False, False, True): Fn(188, 4, 56),  # n=1
        (True, True, True, True, True, True, True, False): Fn(244, 4, 72),  # n=2
        (True, True, True, True, True, True, True, True): Fn(292, 4, 88),  # n=4
        None: Fn(168, 4, 56),
    },
    "copy4d": {  # tests/codegen/data/edge only
        (): Fn(152, 4, 48),  # n=2
        None: Fn(152, 4, 48),
    },
    "dwconv": {
        (False, False, False, False, True, False, True): Fn(116, 4, 48),  # n=1
        (False, False, False, False, True, True, True): Fn(140, 4, 56),  # n=8
        (False, False, False, True, False, True, True): Fn(152, 4, 56),  # n=1
        (False, False, True, False, True, False, False): Fn(104, 4, 48),  # n=1
        (False, False, True, False, True, True, True): Fn(136, 4, 56),  # n=1
        (False, False, True, True, False, True, True): Fn(144, 4, 56),  # n=4
        (False, True, False, False, False, False, True): Fn(116, 4, 40),  # n=1
        (False, True, False, False, True, False, True): Fn(148, 4, 48),  # n=9
        (False, True, True, False, True, False, True): Fn(144, 4, 48),  # n=4
        (True, True, False, False, False, True, True): Fn(152, 4, 48),  # n=1
        (True, True, False, False, True, True, True): Fn(224, 4, 64),  # n=13
        (True, True, False, True, False, True, True): Fn(224, 4, 64),  # n=15
        (True, True, False, True, True, True, True): Fn(236, 4, 64),  # n=1
        (True, True, True, False, True, True, True): Fn(216, 4, 72),  # n=8
        (True, True, True, True, False, True, True): Fn(236, 4, 64),  # n=1
        None: Fn(216, 4, 64),
    },
    "fc": {
        (False, True): Fn(108, 4, 48),  # n=6
        (True, True): Fn(124, 4, 48),  # n=76
        None: Fn(124, 4, 48),
    },
    "maxpool": {
        (False, True, False, False, True, False, False): Fn(44, 4, 8),  # n=1
        (False, True, True, False, True, False, False): Fn(52, 4, 16),  # n=23
        (True, True, False, False, False, False, False): Fn(48, 4, 0),  # n=1
        (True, True, False, True, True, False, False): Fn(72, 4, 16),  # n=4
        (True, True, True, False, False, False, False): Fn(56, 4, 0),  # n=9
        (True, True, True, True, True, False, False): Fn(92, 4, 20),  # n=63
        None: Fn(92, 4, 20),
    },
    "reduce": {
        (False, True): Fn(64, 4, 32),  # n=23
        (True, False): Fn(68, 4, 16),  # n=15
        (True, True): Fn(84, 4, 32),  # n=86
        None: Fn(80, 4, 32),
    },
    "requant": {  # tests/codegen/data/edge only
        (True,): Fn(64, 4, 32),  # n=2
        None: Fn(64, 4, 32),
    },
}

#: ``preprocess`` by ``preprocess_class`` (``None``: fallback).
PREPROCESS: dict[tuple[Any, ...] | None, Fn] = {
    ("area", 1, False, False): Fn(196, 4, 64),  # n=35
    ("area", 1, True, False): Fn(196, 4, 64),  # n=84
    ("area", 2, False, False): Fn(212, 4, 72),  # n=17
    ("area", 3, False, False): Fn(216, 4, 72),  # n=16
    ("area", 3, True, False): Fn(216, 4, 72),  # n=43
    ("copy",): Fn(24, 4, 0),  # n=59
    None: Fn(216, 4, 72),
}
#: Parameter structs by kernel: (sizeof, alignment), as the ELF's symbols and the layouts say.
STRUCTS: dict[str, tuple[int, int]] = {
    "conv": (48, 4),
    "dwconv": (48, 4),
    "fc": (32, 4),
    "maxpool": (22, 2),  # pool_t: uint16_t and int8_t fields only
    "avgpool": (22, 2),
    "reduce": (16, 4),
    "requant": (16, 4),
    "copy4d": (44, 4),
}
MODEL_INPUT = Fn(8, 4, 0)
MODEL_OUTPUT = Fn(8, 4, 0)
#: ``model_classify`` by (classes, outputs at arena offset 0) where its argmax is unrolled
#: (few classes); ``None``: the loop.
CLASSIFY: dict[tuple[int, bool] | None, Fn] = {
    (3, False): Fn(48, 4, 8),
    (3, True): Fn(48, 4, 8),
    None: Fn(44, 4, 16),
}


@dataclass(frozen=True)
class InvokeModel:
    """``model_invoke``: bytes = base + per call (a generic kernel's call loads its struct's
    address and passes two pointers; a specialized one is a bare branch) + per distinct arena
    pointer passed (least squares). Frame: 8 bytes (``push {r3, lr}`` or ``{r4, lr}``) unless
    two pointers passed to several calls are alive at once (two or three callee-saved
    registers: 16)."""

    base: float = 7.23
    per_generic_call: float = 13.98
    per_specialized_call: float = 3.88
    per_pointer: float = 3.59
    align: int = 4


INVOKE = InvokeModel()


@dataclass(frozen=True)
class Harness:
    """The firmware around the model (``worker/firmware_files``), from the two images' symbol
    tables: the model object's code follows ``main``, then come the harness's strings and the
    API table, then the model's read-only data; the empty image's flash is subtracted."""

    main_at: int = 0x148  # main's address in both images (vectors, startup, semihosting first)
    main_size: int = 112  # the model image's main ...
    main_size_large_input: int = 116  # ... with INPUT_BYTES > 255 (a 32-bit compare)
    strings: int = 36  # the harness's strings after the model's code (4-byte aligned start)
    api_table: int = 16  # main's table of the four API functions
    empty_flash: int = 400  # the empty image's .text (both images' .data are the same)


HARNESS = Harness()

#: (kernel, "generic" | "specialized") -> {``loops`` feature: instructions per iteration}.
INSTRUCTIONS: dict[tuple[str, str], dict[str, float]] = {
    # n: functions fitted on; mean: their mean relative error
    ("conv", "generic"): {  # n=114, mean 0.0 %
        "calls": 19.38,
        "rows": 13.35,
        "pixels": 15.01,
        "outputs": 34.02,
        "ky_outside": 11.28,
        "ky_inside": 20.98,
        "kx_outside": 11.53,
        "taps": 26.00,
        "macs": 14.00,
    },
    ("conv", "pointwise"): {"ky_inside": 20.13, "macs": 6.88},  # n=33, mean 3.6 %
    ("conv", "pointwise_narrow"): {"rows": 3.10, "macs": 10.31},  # n=5, mean 9.2 %
    ("conv", "window"): {"generic": 0.776},  # n=11, mean 3.5 %
    ("conv", "window_narrow"): {"kx_outside": 44.16, "macs": 10.85},  # n=17, mean 4.7 %
    ("conv", "window_row"): {"generic": 0.528},  # n=6, mean 7.3 %
    ("conv", "window_single"): {"generic": 0.439},  # n=4, mean 26.5 %
    ("dwconv", "generic"): {  # n=151, mean 0.5 %
        "calls": 20.68,
        "rows": 6.81,
        "pixels": 15.40,
        "outputs": 30.89,
        "ky_outside": 11.50,
        "ky_inside": 20.00,
        "kx_outside": 10.93,
        "macs": 23.05,
    },
    ("dwconv", "pointwise"): {"rows": 7.55, "pixels": 15.49, "ky_inside": 13.62},  # n=16, 3.1 %
    ("dwconv", "window"): {  # n=49, mean 5.3 %
        "ky_outside": 17.89,
        "ky_inside": 32.51,
        "kx_outside": 2.84,
        "macs": 9.24,
    },
    ("fc", "generic"): {"calls": 21.00, "outputs": 34.00, "macs": 9.00},  # n=166, mean 0.0 %
    ("fc", "specialized"): {"calls": 18.90, "outputs": 7.61, "macs": 7.21},  # n=80, mean 3.6 %
    ("maxpool", "generic"): {  # n=37, mean 1.3 %
        "calls": 34.72,
        "rows": 8.27,
        "pixels": 24.83,
        "outputs": 23.13,
        "taps": 19.76,
    },
    ("maxpool", "specialized"): {"pixels": 1.36, "taps": 4.27},  # n=98, mean 5.8 %
    ("reduce", "specialized"): {"calls": 1.18, "outputs": 6.00, "taps": 5.95},  # n=119, 10.2 %
    # tests/codegen/data/edge only:
    ("avgpool", "specialized"): {"taps": 5.88},  # n=5, mean 34.9 %
    ("copy4d", "specialized"): {"rows": 10.36, "outputs": 73.69},  # n=2, mean 0.0 %
    ("requant", "specialized"): {"calls": 8.00, "outputs": 11.00},  # n=2, mean 0.0 %
}
#: ``preprocess`` by kind ("copy" | "area") -> {``preprocess_loops`` feature: instructions}.
PREPROCESS_INSTRUCTIONS: dict[str, dict[str, float]] = {
    "area": {"outputs": 23.33, "window_rows": 16.93, "pixels": 4.09},  # n=187, mean 3.9 %
    "copy": {"calls": 4.00, "bytes": 4.00},  # n=59, mean 0.0 %
}
REQUANTIZE_INSTRUCTIONS = 42.51  # per call (mean: its rounding branches vary by a few)
INVOKE_INSTRUCTIONS = {"base": -5.54, "calls": 4.60}  # invoke's own (least squares)
CLASSIFY_INSTRUCTIONS = {"base": -5.97, "outputs": 8.63}  # classify's argmax (least squares)


# -- the estimate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CCost:
    """Predicted cost on the Cortex-M4 (the figures of ``worker.firmware.Firmware``).

    ``breakdown``: ``functions`` (link order: symbol, table key, bytes), flash ``code`` /
    ``rodata`` / ``padding``, the ``stack`` of invoke and classify, instructions by layer."""

    flash_bytes: int
    static_ram_bytes: int
    stack_bytes: int
    ram_bytes: int
    instructions: int
    classify_instructions: int
    breakdown: dict[str, Any] = field(default_factory=dict, compare=False)


def classify_of(
    model: Model,
    *,
    source_hwc: tuple[int, int, int] | None = None,
    pixel_scale: float | None = None,
) -> Preprocess:
    """The ``Preprocess`` that ``generate(..., source_hwc=, pixel_scale=)`` builds for
    ``model``: pixel_scale None for data stored as floats (``classify`` copies the int8 input),
    else the uint8 area path from ``source_hwc``."""
    x = model.tensor(model.inputs[0])
    dims = (1,) * (4 - len(x.shape)) + tuple(x.shape)
    hwc = (int(dims[1]), int(dims[2]), int(dims[3]))
    return Preprocess(
        source_hwc=source_hwc or hwc,
        model_hwc=hwc,
        pixel_scale=pixel_scale,
        input_scale=x.scales[0] if x.scales else 1.0,
        input_zero_point=x.zero_points[0] if x.zero_points else 0,
    )


def _align(n: int, a: int) -> int:
    return -(-n // a) * a


_INT = re.compile(r"-?\d+")


def numbers(lay: Layer) -> list[int]:
    """The integer fields of a layer's parameter struct in declaration order (copy4d's arrays
    flattened; the array pointers, named ``l<op>_<x>`` or ``0``, are left out)."""
    return [int(v) for f in lay.fields if not f.startswith("l") for v in _INT.findall(f)]


def kernel_class(kernel: str, v: Sequence[int]) -> tuple[bool, ...]:
    """What decides how far a single-call kernel shrinks: which extents exceed 1 (a loop of
    one trip vanishes), for pooling also padding and a window clipped at the far edge."""
    if kernel in ("conv", "dwconv"):
        _, _, ic, oh, ow, oc, kh, kw, sh, sw = v[:10]
        shape = (kh > 1, kw > 1, max(sh, sw) > 1, ic > 1, oc > 1, oh > 1, ow > 1)
        # conv: an input-channel loop of 2 trips is unrolled, of 3 or more a loop
        return shape + (ic > 2,) if kernel == "conv" else shape
    if kernel in ("maxpool", "avgpool"):
        ih, iw, c, oh, ow, fh, fw, sh, sw, pt, pl = v[:11]
        clip = (oh - 1) * sh - pt + fh > ih or (ow - 1) * sw - pl + fw > iw
        return (fh > 1, fw > 1, c > 1, oh > 1, ow > 1, pt + pl > 0, clip)
    if kernel in ("fc", "reduce"):  # fc: depth, out_c; reduce: count, channels
        first = 1 if kernel == "fc" else 0
        return (v[first] > 1, v[first + 1] > 1)
    if kernel == "requant":
        return (v[0] > 1,)
    return ()


def preprocess_class(pre: Preprocess) -> tuple[Any, ...]:
    """``preprocess``'s kind: the int8 copy, or the area path by channels, resizing or not,
    and 16-bit window tables (images over 255 pixels wide or high)."""
    if pre.pixel_scale is None:
        return ("copy",)
    (h, w, c), (mh, mw, _) = pre.source_hwc, pre.model_hwc
    return ("area", c, (h, w) != (mh, mw), max(h, w) > 255)


def variant(calls: Sequence[tuple[int, int]]) -> str:
    """How GCC compiles a kernel with these calls ((input, output) arena offsets):
    "specialized" (one call), "generic", or the ``SHARED`` key of the pointers all share."""
    if len(calls) == 1:
        return "specialized"
    ins, outs = {a for a, _ in calls}, {b for _, b in calls}
    if len(ins) == 1 and len(outs) == 1:
        return "both0" if ins == outs == {0} else "both"
    return "in" if len(ins) == 1 else "out" if len(outs) == 1 else "generic"


def lookup(key: tuple[Any, ...]) -> Fn:
    """A function's table entry by ``functions``' key (KeyError: refit)."""
    kind = key[0]
    if kind == "generic":
        return GENERIC[key[1]]
    if kind == "shared":
        return SHARED.get((key[1], key[2])) or GENERIC[key[1]]
    if kind == "specialized":
        return _nearest(SPECIALIZED[key[1]], key[2])
    if kind == "preprocess":
        return PREPROCESS.get(key[1]) or PREPROCESS[None]
    if kind == "classify":
        return CLASSIFY.get(key[1]) or CLASSIFY[None]
    return {"input": MODEL_INPUT, "output": MODEL_OUTPUT}[key[1]]


def _nearest(table: dict[tuple[bool, ...] | None, Fn], cls: tuple[bool, ...]) -> Fn:
    """The class's entry, else the fitted class differing in the fewest features (ties: the
    first in the table), else the kernel's fallback."""
    if cls in table:
        return table[cls]
    known = [k for k in table if k is not None and len(k) == len(cls)]
    if not known:
        return table[None]
    return table[min(known, key=lambda k: sum(a != b for a, b in zip(k, cls, strict=True)))]


def plan_of(model: Model, layers: Sequence[Layer]) -> planner.Plan:
    """The plan ``emit`` makes."""
    from sparsearch.codegen.emit import steps

    x, y = model.inputs[0], model.outputs[0]
    used = {t for lay in layers for t in (*lay.inputs, lay.output)} | {x, y}
    return planner.plan(steps(layers), {t: model.tensor(t).nbytes for t in used}, x, y)


def functions(
    layers: Sequence[Layer], plan: planner.Plan, out_bytes: int, out_at: int, pre: Preprocess
) -> tuple[list[tuple[str, tuple[Any, ...]]], dict[str, str]]:
    """The model object's functions in link order as (symbol, table key), and each kernel's
    variant. ``model_invoke`` is left out (``INVOKE``)."""
    calls: dict[str, list[tuple[int, int]]] = {}
    first: dict[str, Layer] = {}
    for lay in layers:
        if lay.kernel is not None:
            calls.setdefault(lay.kernel, []).append(
                (plan.offsets[lay.inputs[0]], plan.offsets[lay.output])
            )
            first.setdefault(lay.kernel, lay)
    variants = {k: variant(c) for k, c in calls.items()}
    requant = any("requantize" in REQUIRES.get(k, ()) for k in calls)
    out: list[tuple[str, tuple[Any, ...]]] = [("requantize", ("generic", "requantize"))] * requant
    out += [(k, ("generic", k)) for k in sorted(calls) if variants[k] == "generic"]
    clones = [("preprocess.constprop.0", ("preprocess", preprocess_class(pre)))]
    for k in sorted(calls, reverse=True):
        if variants[k] == "specialized":
            cls = kernel_class(k, numbers(first[k]))
            clones.append((f"{k}.constprop.0", ("specialized", k, cls)))
        elif variants[k] != "generic":
            clones.append((f"{k}.constprop.0", ("shared", k, variants[k])))
    out += clones
    argmax = (out_bytes, out_at == 0) if out_bytes < 4 else None
    out += [
        ("model_input", ("api", "input")),
        ("model_output", ("api", "output")),
        ("model_classify", ("classify", argmax)),
    ]
    return out, variants


def rodata(
    layers: Sequence[Layer], variants: dict[str, str], pre: Preprocess
) -> list[tuple[str, int, int]]:
    """(name, bytes, alignment) of the model's read-only objects in link order (the reverse of
    their definition order: preprocessing tables, each layer's arrays, the structs)."""
    objs: list[tuple[str, int, int]] = []
    if pre.pixel_scale is not None:
        rows, cols = pre._rows_cols()
        unit = 2 if max(pre.source_hwc[:2]) > 255 else 1  # uint16_t or uint8_t windows
        seen: list[list[int]] = []
        for name, vals in (
            ("pre_row0", [a for a, _ in rows]),
            ("pre_row1", [b for _, b in rows]),
            ("pre_col0", [a for a, _ in cols]),
            ("pre_col1", [b for _, b in cols]),
        ):
            if vals not in seen:  # identical tables are one object (-fipa-icf)
                seen.append(vals)
                objs.append((name, unit * len(vals), unit))
        objs.append(("pre_mult", 8 * len(pre.multipliers()), 8))  # uint64_t
    names: set[str] = set()
    for lay in layers:
        folded = lay.kernel is not None and variants[lay.kernel] == "specialized"
        for c in lay.consts:
            if c.name in names or (folded and len(c.values) == 1):  # read at a constant index
                continue
            names.add(c.name)
            objs.append((c.name, c.nbytes, 1 if c.ctype == "int8_t" else 4))
    for lay in layers:
        if lay.kernel is not None and variants[lay.kernel] != "specialized":
            objs.append((f"L{lay.op.index}", *STRUCTS[lay.kernel]))
    return objs[::-1]


def invoke_terms(
    layers: Sequence[Layer], plan: planner.Plan, variants: dict[str, str]
) -> dict[str, int]:
    """What ``model_invoke``'s code depends on: generic and specialized calls, the distinct arena
    pointers it passes, and how many of those passed to several calls are alive at once (GCC
    keeps them in callee-saved registers)."""
    uses: dict[int, list[int]] = {}  # pointer -> indices of the calls that pass it
    calls = generic = 0
    for lay in layers:
        if lay.kernel is None:
            continue
        v = variants[lay.kernel]
        if v != "specialized":
            generic += 1
            if v in ("generic", "out"):  # "in" and "both" clones have the input built in
                uses.setdefault(plan.offsets[lay.inputs[0]], []).append(calls)
            if v in ("generic", "in"):
                uses.setdefault(plan.offsets[lay.output], []).append(calls)
        calls += 1
    spans = [(min(u), max(u)) for u in uses.values() if len(u) > 1]
    return {
        "generic": generic,
        "specialized": calls - generic,
        "pointers": len(uses),
        "kept": max((sum(a <= t <= b for a, b in spans) for t in range(calls)), default=0),
    }


def invoke_fn(layers: Sequence[Layer], plan: planner.Plan, variants: dict[str, str]) -> Fn:
    """``model_invoke``'s size and frame (``INVOKE``)."""
    t, i = invoke_terms(layers, plan, variants), INVOKE
    size = i.base + i.per_generic_call * t["generic"] + i.per_specialized_call * t["specialized"]
    size += i.per_pointer * t["pointers"]
    return Fn(_align(round(size), 2), i.align, 16 if t["kept"] >= 2 else 8)


def c_cost(model: Model, layers: Sequence[Layer], *, classify: Preprocess) -> CCost:
    """Flash, RAM, stack and instructions of the program ``generate`` writes for ``model``
    (``layers``: ``passes.layers(model)``), as ``measure_firmware`` reports them.
    ``classify``: its preprocessing (``classify_of``). KeyError names a function or kernel the
    tables do not hold (refit)."""
    plan = plan_of(model, layers)
    x, y = model.tensor(model.inputs[0]), model.tensor(model.outputs[0])
    fns, variants = functions(layers, plan, y.nbytes, plan.offsets[y.index], classify)
    text = [(name, lookup(key)) for name, key in fns]
    text.insert(len(text) - 1, ("model_invoke", invoke_fn(layers, plan, variants)))
    found = dict(text)

    h = HARNESS
    at = h.main_at + (h.main_size_large_input if x.nbytes > 255 else h.main_size)
    code = data = 0
    for _, fn in text:
        at = _align(at, fn.align) + fn.size
        code += fn.size
    at = _align(at + h.strings, 4) + h.api_table
    for _, size, align in rodata(layers, variants, classify):
        at = _align(at, align) + size
        data += size
    flash = _align(at, 4) - h.empty_flash

    static = 4 * max(1, math.ceil(plan.arena_bytes / 4))
    kernel_fn = {
        key[1]: found[name] for name, key in fns if key[0] in ("generic", "shared", "specialized")
    }

    def depth(k: str) -> int:
        calls_requantize = "requantize" in REQUIRES.get(k, ())
        return kernel_fn[k].frame + (GENERIC["requantize"].frame if calls_requantize else 0)

    order = [lay.kernel for lay in layers if lay.kernel is not None]
    inv = found["model_invoke"]
    invoke_stack = max([inv.frame + depth(k) for k in order[:-1]] + [depth(order[-1])])
    pre_fn, cls_fn = found["preprocess.constprop.0"], found["model_classify"]
    classify_stack = cls_fn.frame + max(pre_fn.frame, invoke_stack)
    stack = max(invoke_stack, classify_stack)

    by_layer = [layer_instructions(lay, variants[lay.kernel]) for lay in layers if lay.kernel]
    own = INVOKE_INSTRUCTIONS["base"] + INVOKE_INSTRUCTIONS["calls"] * len(by_layer)
    invoke_n = own + sum(by_layer)
    classify_n = (
        invoke_n
        + preprocess_instructions(classify)
        + CLASSIFY_INSTRUCTIONS["base"]
        + CLASSIFY_INSTRUCTIONS["outputs"] * y.nbytes
    )
    return CCost(
        flash_bytes=flash,
        static_ram_bytes=static,
        stack_bytes=stack,
        ram_bytes=static + stack,
        instructions=round(invoke_n),
        classify_instructions=round(classify_n),
        breakdown={
            "functions": [(name, key, found[name].size) for name, key in fns],
            "invoke_bytes": inv.size,
            "flash": {"code": code, "rodata": data, "padding": flash - code - data},
            "stack": {"invoke": invoke_stack, "classify": classify_stack},
            "instructions_by_layer": [round(n) for n in by_layer],
        },
    )


# -- instructions ---------------------------------------------------------------------------------


def _split(out: int, stride: int, pad: int, taps: int, dil: int, size: int) -> tuple[int, int, int]:
    """(before, inside, after): pairs (output index, tap) whose input index falls before the
    input, inside it, or past its end."""
    before = inside = after = 0
    for o in range(out):
        for t in range(taps):
            i = o * stride - pad + t * dil
            if i < 0:
                before += 1
            elif i < size:
                inside += 1
            else:
                after += 1
    return before, inside, after


def loops(lay: Layer) -> dict[str, int]:
    """Loop iterations (and calls) of one run of the layer's kernel, by loop and path: the
    features ``INSTRUCTIONS`` weighs. KeyError for a kernel without a model."""
    k, v = lay.kernel, numbers(lay)
    if k in ("conv", "dwconv"):
        ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, dh, dw, pt, pl = v[:14]
        if k == "dwconv":
            oc *= ic  # the struct holds the depth multiplier
        rb, ri, ra = _split(oh, sh, pt, kh, dh, ih)  # (oy, ky)
        cb, ci, ca = _split(ow, sw, pl, kw, dw, iw)  # (ox, kx)
        taps = oc * ri * ci
        return {
            "calls": 1,
            "rows": oh,
            "pixels": oh * ow,
            "outputs": oh * ow * oc,
            "ky_outside": ow * oc * (rb + ra),
            "ky_inside": ow * oc * ri,
            "kx_outside": oc * ri * (cb + ca),
            "taps": taps,
            "macs": taps * (ic if k == "conv" else 1),
        }
    if k == "fc":
        _, depth, oc = v[:3]
        return {"calls": 1, "outputs": oc, "macs": depth * oc}
    if k in ("maxpool", "avgpool"):
        ih, iw, c, oh, ow, fh, fw, sh, sw, pt, pl = v[:11]
        _, ri, _ = _split(oh, sh, pt, fh, 1, ih)
        _, ci, _ = _split(ow, sw, pl, fw, 1, iw)
        return {
            "calls": 1,
            "rows": oh,
            "pixels": oh * ow,
            "outputs": oh * ow * c,
            "fy": c * ow * ri,
            "taps": c * ri * ci,
        }
    if k == "reduce":
        count, c = v[:2]
        return {"calls": 1, "outputs": c, "taps": count * c}
    if k == "requant":
        return {"calls": 1, "outputs": v[0]}
    if k == "copy4d":
        d = v[:4]
        return {"calls": 1, "rows": d[0] * d[1] * d[2], "outputs": d[0] * d[1] * d[2] * d[3]}
    raise KeyError(f"no instruction model for kernel {k!r}")


#: Kernels that call ``requantize`` once per output.
_REQUANTIZING = ("conv", "dwconv", "fc", "reduce", "requant")


def instruction_group(kernel: str, variant: str, v: Sequence[int]) -> str:
    """Which coefficients time a kernel: "generic" for the shared loop nest; a specialized conv
    or depthwise conv by its window ("pointwise": the window loops vanish, or "window"), a conv
    also by its input-channel loop ("_narrow": at most 2 trips, unrolled) and, with a wider
    one, by its shape ("_row": one row high; "_single": one output channel or pixel)."""
    if variant != "specialized":
        return "generic"
    if kernel not in ("conv", "dwconv"):
        return "specialized"
    ih, _, ic, _, _, oc, kh, kw = v[:8]
    if kh * kw == 1:
        return "pointwise" + ("_narrow" if kernel == "conv" and ic <= 2 else "")
    if kernel == "dwconv":
        return "window"
    if ic <= 2:
        return "window_narrow"
    if oc == 1 or v[3] * v[4] == 1:  # one output channel or one output pixel
        return "window_single"
    return "window_row" if ih == 1 else "window"


#: Groups timed as a fraction (``"generic"``) of the generic kernel's model: GCC specializes
#: their outer loops but keeps (and spills in) the channel loop, a steady share of the generic
#: cost (0.72-0.86 in the fitted "window" group) that no linear model of the loops matched.
RATIO_GROUPS = ("window", "window_row", "window_single")


def kernel_instructions(kernel: str, group: str, feats: dict[str, int]) -> float:
    """The kernel's own instructions (``requantize`` calls apart)."""
    coef = (  # a kernel the fitted models only ever called once, or only ever shared: the other
        INSTRUCTIONS.get((kernel, group))
        or INSTRUCTIONS.get((kernel, "generic"))
        or INSTRUCTIONS[(kernel, "specialized")]
    )
    if group in RATIO_GROUPS and kernel == "conv":
        return coef["generic"] * kernel_instructions(kernel, "generic", feats)
    return sum(coef.get(f, 0.0) * n for f, n in feats.items())


def layer_instructions(lay: Layer, variant: str) -> float:
    """Instructions of one run of the layer: its kernel (``INSTRUCTIONS`` by
    ``instruction_group``) and its ``requantize`` calls."""
    assert lay.kernel is not None
    group = instruction_group(lay.kernel, variant, numbers(lay))
    feats = loops(lay)
    own = kernel_instructions(lay.kernel, group, feats)
    return own + REQUANTIZE_INSTRUCTIONS * feats["outputs"] * (lay.kernel in _REQUANTIZING)


def preprocess_loops(pre: Preprocess) -> dict[str, int]:
    """Loop iterations of ``preprocess``: the copy's bytes, or the area path's outputs,
    window rows and pixels."""
    if pre.pixel_scale is None:
        return {"calls": 1, "bytes": pre.raw_bytes}
    rows, cols = pre._rows_cols()
    c = pre.model_hwc[2]
    row_px = sum(b - a for a, b in rows)
    col_px = sum(b - a for a, b in cols)
    return {
        "calls": 1,
        "windows": len(rows) * len(cols),
        "outputs": len(rows) * len(cols) * c,
        "window_rows": c * row_px * len(cols),
        "pixels": c * row_px * col_px,
    }


def preprocess_instructions(pre: Preprocess) -> float:
    coef = PREPROCESS_INSTRUCTIONS["copy" if pre.pixel_scale is None else "area"]
    return sum(coef.get(f, 0.0) * n for f, n in preprocess_loops(pre).items())
