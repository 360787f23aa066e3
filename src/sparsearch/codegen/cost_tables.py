"""The fitted tables of ``cost`` for GNU Arm Embedded GCC 12.2.1, ``-mcpu=cortex-m4 -mthumb -Os``
(``worker.firmware.CFLAGS``) and the harness of ``worker/firmware_files``.

Printed by ``benchmarks/c_estimator_accuracy.py --refit`` (paste its output here after a change
of the generated C, the compiler, its flags or the harness); ``n`` is the number of functions
an entry was fitted on, ``mean`` their mean relative error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Fn:
    """A compiled function: ``st_size`` in bytes, its section's alignment in the object file,
    its static frame in bytes (``-fstack-usage``)."""

    size: int
    align: int
    frame: int


#: Kernels and ``requantize``: one fixed function each (``noipa``). avgpool, copy4d and
#: requant come from tests/codegen/data/edge only (the search space never uses them).
GENERIC: dict[str, Fn] = {
    "requantize": Fn(128, 4, 12),  # n=254
    "avgpool": Fn(258, 2, 80),  # n=5
    "conv": Fn(308, 2, 96),  # n=198
    "copy4d": Fn(168, 2, 64),  # n=2
    "dwconv": Fn(272, 2, 72),  # n=223
    "fc": Fn(152, 2, 48),  # n=254
    "maxpool": Fn(222, 2, 64),  # n=140
    "reduce": Fn(90, 2, 40),  # n=124
    "requant": Fn(68, 2, 40),  # n=2
}
#: ``preprocess`` by ``cost.preprocess_class`` (``None``: fallback).
PREPROCESS: dict[tuple[Any, ...] | None, Fn] = {
    ("area", 1, False, False): Fn(188, 4, 64),  # n=35
    ("area", 1, True, False): Fn(188, 4, 64),  # n=84
    ("area", 2, False, False): Fn(212, 4, 80),  # n=17
    ("area", 3, False, False): Fn(212, 4, 72),  # n=16
    ("area", 3, True, False): Fn(212, 4, 72),  # n=43
    ("copy",): Fn(20, 2, 0),  # n=59
    None: Fn(212, 4, 80),
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
    (3, False): Fn(52, 4, 8),  # n=14
    (3, True): Fn(52, 4, 8),  # n=10
    None: Fn(48, 4, 16),  # n=230
}


@dataclass(frozen=True)
class InvokeModel:
    """``model_invoke``: bytes = base + per call (load the struct's address, pass two
    pointers, branch) + per distinct arena pointer passed (least squares). Frame: 8 bytes
    (``push {r3, lr}`` or ``{r4, lr}``) unless two pointers passed to several calls are alive
    at once (two or three callee-saved registers: 16)."""

    base: float = 9.86
    per_call: float = 14.34
    per_pointer: float = 2.72
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

#: kernel -> {``cost.loops`` feature: instructions per iteration}.
INSTRUCTIONS: dict[str, dict[str, float]] = {
    "avgpool": {
        "fy": 10.96,
        "outputs": 32.07,
        "pixels": 32.70,
        "rows": 30.30,
        "taps": 12.01,
    },  # n=5
    "conv": {  # n=190, mean 0.0 %, worst 0.4 %
        "calls": 19.09,
        "rows": 13.92,
        "ky_outside": 11.52,
        "pixels": 15.02,
        "outputs": 32.07,
        "ky_inside": 23.93,
        "kx_outside": 14.40,
        "taps": 23.02,
        "macs": 13.00,
    },
    "copy4d": {"outputs": 70.25, "rows": 12.73},  # n=2
    "dwconv": {  # n=216, mean 0.1 %, worst 0.9 %
        "calls": 14.47,
        "rows": 13.22,
        "ky_outside": 11.42,
        "pixels": 14.02,
        "outputs": 32.01,
        "ky_inside": 19.01,
        "kx_outside": 11.36,
        "macs": 22.99,
    },
    "fc": {"calls": 21.00, "outputs": 34.00, "macs": 9.00},  # n=246, exact
    "maxpool": {  # n=135, exact
        "calls": 10.00,
        "rows": 24.00,
        "pixels": 24.00,
        "outputs": 25.00,
        "fy": 11.00,
        "taps": 14.00,
    },
    "reduce": {"calls": 12.00, "outputs": 20.00, "taps": 6.00},  # n=119, exact
    "requant": {"calls": 12.00, "outputs": 14.00},  # n=2
}
#: ``preprocess`` by kind ("copy" | "area") -> {``preprocess_loops`` feature: instructions}.
PREPROCESS_INSTRUCTIONS: dict[str, dict[str, float]] = {
    "area": {"outputs": 22.73, "window_rows": 17.36, "pixels": 3.92},  # n=187, mean 3.8 %
    "copy": {"calls": 4.00, "bytes": 4.00},  # n=59, exact
}
REQUANTIZE_INSTRUCTIONS = 42.51  # per call (mean: its rounding branches vary by a few)
INVOKE_INSTRUCTIONS = {"base": 2.99, "calls": 4.29}  # invoke's own (least squares)
CLASSIFY_INSTRUCTIONS = {"base": -4.91, "outputs": 8.62}  # classify's argmax (least squares)
