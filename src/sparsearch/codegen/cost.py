"""What a generated C model costs as Cortex-M4 firmware, without a compiler: flash, static RAM,
peak stack and the instructions of one ``invoke`` and one ``classify``, from the layers.

``worker.firmware.measure_firmware`` measures these (model image minus empty image, on the
emulator); ``c_cost`` predicts them for ONE toolchain: GNU Arm Embedded GCC 12.2.1
(``arm-none-eabi-gcc (15:12.2.rel1-1) 12.2.1 20221205``, Debian's gcc-arm-none-eabi) with
``-mcpu=cortex-m4 -mthumb -Os -std=c99 -ffunction-sections -fdata-sections``, linked with
``--gc-sections`` and newlib-nano (``worker.firmware.CFLAGS`` / ``LDFLAGS``) against
``worker/firmware_files``. Another compiler, flag or harness changes the tables
(``cost_tables``): refit them.

What the compiler does with the generated C, and how the model follows it:

- Kernels are ``static`` and ``__attribute__((noipa))`` (``emit``): GCC neither inlines them
  nor specializes them for one caller (interprocedural constant propagation would fold a
  single caller's parameter struct into the code, and the kernel's size, frame and speed would
  follow the layer's shape in ways no table predicts). So every kernel, ``requantize`` and
  ``preprocess`` is one fixed function: its size and frame come from ``GENERIC`` (kernels) and
  ``PREPROCESS`` (by ``preprocess_class``: its loop bounds are constants of the source).
- Flash replays the link: the model object's functions in source order (``requantize``, the
  kernels by name, ``preprocess``, the API), each at its section's alignment; the harness's
  strings and API table; the model's read-only objects in reverse definition order (parameter
  structs from the last layer down, each layer's arrays, the preprocessing tables; identical
  tables merged by -fipa-icf), each at its alignment; the end rounded to 4; minus the empty
  image. ``model_invoke`` grows with its calls and the arena pointers it passes (``INVOKE``,
  least squares).
- Static RAM is the plan's arena as emitted: ``int32_t arena[max(1, ceil(bytes / 4))]``.
- Stack: the emulator's peak (deepest word written) is the sum of the static frames on the
  deepest path: ``classify``'s frame + the deeper of ``preprocess`` and ``invoke``;
  ``invoke``'s frame + a kernel's (+ ``requantize``'s where the kernel calls it), except for
  the last call, a tail call made after ``invoke`` has popped its frame.
- Instructions: the loop iterations of each kernel counted exactly (``loops``: outputs, window
  rows and taps inside and outside the input, multiply-accumulates, ...) times per-kernel
  coefficients fitted by non-negative least squares (least relative error) on per-function
  instruction counts (``INSTRUCTIONS``), ``requantize`` per call. Only data-dependent branches
  (rounding, clamping, the max of a pooling window) are averaged.

Accuracy: ``benchmarks/results/estimator_accuracy.json`` (key ``"c"``) and its markdown,
``c_cost(model_of(layer_shapes(arch)))`` against the measured firmware of the exported file.

Refit (after a change of the generated C, the compiler, its flags or the harness)::

    .venv/bin/python benchmarks/c_estimator_accuracy.py --refit

measures the fitted set, synthetic programs (``--synthetic`` per shape) and the committed test
models (the only users of avgpool, copy4d and requant), reads each image's symbol table
(``st_size`` of every function and object, pyelftools), the object file's section alignments
and ``-fstack-usage`` frames, counts instructions per function on the emulator, and prints the
tables of ``cost_tables`` as Python to paste there.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sparsearch.codegen import planner
from sparsearch.codegen.cost_tables import (
    CLASSIFY,
    CLASSIFY_INSTRUCTIONS,
    GENERIC,
    HARNESS,
    INSTRUCTIONS,
    INVOKE,
    INVOKE_INSTRUCTIONS,
    MODEL_INPUT,
    MODEL_OUTPUT,
    PREPROCESS,
    PREPROCESS_INSTRUCTIONS,
    REQUANTIZE_INSTRUCTIONS,
    STRUCTS,
    Fn,
)
from sparsearch.codegen.graph import Model
from sparsearch.codegen.ops import REQUIRES, Layer
from sparsearch.codegen.preprocess import Preprocess

__all__ = ["CCost", "c_cost", "classify_of", "loops"]


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


def preprocess_class(pre: Preprocess) -> tuple[Any, ...]:
    """``preprocess``'s kind: the int8 copy, or the area path by channels, resizing or not,
    and 16-bit window tables (images over 255 pixels wide or high)."""
    if pre.pixel_scale is None:
        return ("copy",)
    (h, w, c), (mh, mw, _) = pre.source_hwc, pre.model_hwc
    return ("area", c, (h, w) != (mh, mw), max(h, w) > 255)


def lookup(key: tuple[Any, ...]) -> Fn:
    """A function's table entry by ``functions``' key (KeyError: refit)."""
    kind = key[0]
    if kind == "generic":
        return GENERIC[key[1]]
    if kind == "preprocess":
        return PREPROCESS.get(key[1]) or PREPROCESS[None]
    if kind == "classify":
        return CLASSIFY.get(key[1]) or CLASSIFY[None]
    return {"input": MODEL_INPUT, "output": MODEL_OUTPUT}[key[1]]


def plan_of(model: Model, layers: Sequence[Layer]) -> planner.Plan:
    """The plan ``emit`` makes."""
    from sparsearch.codegen.emit import steps

    x, y = model.inputs[0], model.outputs[0]
    used = {t for lay in layers for t in (*lay.inputs, lay.output)} | {x, y}
    return planner.plan(steps(layers), {t: model.tensor(t).nbytes for t in used}, x, y)


def kernels(layers: Sequence[Layer]) -> list[str]:
    """The kernels the layers call, by name (source order)."""
    return sorted({lay.kernel for lay in layers if lay.kernel is not None})


def functions(
    layers: Sequence[Layer], out_bytes: int, out_at: int, pre: Preprocess
) -> list[tuple[str, tuple[Any, ...]]]:
    """The model object's functions in link order as (symbol, table key); ``model_invoke``
    is left out (``INVOKE``)."""
    used = kernels(layers)
    requant = any("requantize" in REQUIRES.get(k, ()) for k in used)
    out: list[tuple[str, tuple[Any, ...]]] = [("requantize", ("generic", "requantize"))] * requant
    out += [(k, ("generic", k)) for k in used]
    out.append(("preprocess", ("preprocess", preprocess_class(pre))))
    argmax = (out_bytes, out_at == 0) if out_bytes < 4 else None
    out += [
        ("model_input", ("api", "input")),
        ("model_output", ("api", "output")),
        ("model_classify", ("classify", argmax)),
    ]
    return out


def rodata(layers: Sequence[Layer], pre: Preprocess) -> list[tuple[str, int, int]]:
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
        for c in lay.consts:
            if c.name not in names:
                names.add(c.name)
                objs.append((c.name, c.nbytes, 1 if c.ctype == "int8_t" else 4))
    for lay in layers:
        if lay.kernel is not None:
            objs.append((f"L{lay.op.index}", *STRUCTS[lay.kernel]))
    return objs[::-1]


def invoke_terms(layers: Sequence[Layer], plan: planner.Plan) -> dict[str, int]:
    """What ``model_invoke``'s code depends on: its calls, the distinct arena pointers it
    passes, and how many of those passed to several calls are alive at once (GCC keeps them
    in callee-saved registers)."""
    uses: dict[int, list[int]] = {}  # pointer -> indices of the calls that pass it
    calls = 0
    for lay in layers:
        if lay.kernel is None:
            continue
        for t in (lay.inputs[0], lay.output):
            uses.setdefault(plan.offsets[t], []).append(calls)
        calls += 1
    spans = [(min(u), max(u)) for u in uses.values() if len(u) > 1]
    return {
        "calls": calls,
        "pointers": len(uses),
        "kept": max((sum(a <= t <= b for a, b in spans) for t in range(calls)), default=0),
    }


def invoke_fn(layers: Sequence[Layer], plan: planner.Plan) -> Fn:
    """``model_invoke``'s size and frame (``INVOKE``)."""
    t, i = invoke_terms(layers, plan), INVOKE
    size = i.base + i.per_call * t["calls"] + i.per_pointer * t["pointers"]
    return Fn(_align(round(size), 2), i.align, 16 if t["kept"] >= 2 else 8)


def c_cost(model: Model, layers: Sequence[Layer], *, classify: Preprocess) -> CCost:
    """Flash, RAM, stack and instructions of the program ``generate`` writes for ``model``
    (``layers``: ``passes.layers(model)``), as ``measure_firmware`` reports them.
    ``classify``: its preprocessing (``classify_of``). KeyError names a function or kernel the
    tables do not hold (refit)."""
    plan = plan_of(model, layers)
    x, y = model.tensor(model.inputs[0]), model.tensor(model.outputs[0])
    fns = functions(layers, y.nbytes, plan.offsets[y.index], classify)
    text = [(name, lookup(key)) for name, key in fns]
    text.insert(len(text) - 1, ("model_invoke", invoke_fn(layers, plan)))
    found = dict(text)

    h = HARNESS
    at = h.main_at + (h.main_size_large_input if x.nbytes > 255 else h.main_size)
    code = data = 0
    for _, fn in text:
        at = _align(at, fn.align) + fn.size
        code += fn.size
    at = _align(at + h.strings, 4) + h.api_table
    for _, size, align in rodata(layers, classify):
        at = _align(at, align) + size
        data += size
    flash = _align(at, 4) - h.empty_flash

    static = 4 * max(1, math.ceil(plan.arena_bytes / 4))

    def depth(k: str) -> int:
        calls_requantize = "requantize" in REQUIRES.get(k, ())
        return GENERIC[k].frame + (GENERIC["requantize"].frame if calls_requantize else 0)

    order = [lay.kernel for lay in layers if lay.kernel is not None]
    inv = found["model_invoke"]
    invoke_stack = max([inv.frame + depth(k) for k in order[:-1]] + [depth(order[-1])])
    pre_fn, cls_fn = found["preprocess"], found["model_classify"]
    classify_stack = cls_fn.frame + max(pre_fn.frame, invoke_stack)
    stack = max(invoke_stack, classify_stack)

    by_layer = [layer_instructions(lay) for lay in layers if lay.kernel]
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
REQUANTIZING = ("conv", "dwconv", "fc", "reduce", "requant")


def layer_instructions(lay: Layer) -> float:
    """Instructions of one run of the layer: its kernel (``INSTRUCTIONS``) and its
    ``requantize`` calls."""
    assert lay.kernel is not None
    feats = loops(lay)
    own = sum(INSTRUCTIONS[lay.kernel].get(f, 0.0) * n for f, n in feats.items())
    return own + REQUANTIZE_INSTRUCTIONS * feats["outputs"] * (lay.kernel in REQUANTIZING)


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
