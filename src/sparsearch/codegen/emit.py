"""Layers + plan + preprocessing -> the C99 (and C++) sources of one model.

``generate(tflite_bytes, ...)`` is the whole generator: read, lower (``passes``), plan, emit.
Pure: bytes in, sources out, no compiler, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sparsearch.codegen import ops, passes, planner
from sparsearch.codegen.graph import Model, ModelError
from sparsearch.codegen.ops import Const, Layer
from sparsearch.codegen.preprocess import Preprocess
from sparsearch.codegen.program import CProgram
from sparsearch.codegen.reader import read_model

_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,30}")


def generate(
    tflite: bytes,
    *,
    prefix: str = "model",
    source_hwc: tuple[int, int, int] | None = None,
    pixel_scale: float | None = None,
    title: str = "",
    class_names: Sequence[str] = (),
) -> CProgram:
    """C sources of the int8 ``tflite``. ``source_hwc``/``pixel_scale``: the raw 8-bit image
    ``classify`` takes and its scale to [0, 1] (None: data stored as floats, ``classify``
    takes the int8 input). Raises ModelError naming what the C target cannot run."""
    if not _PREFIX.fullmatch(prefix):
        raise ModelError(
            f"prefix {prefix!r} is not a C identifier of lower-case letters, digits and _",
            "use e.g. model or kws_model",
        )
    model = read_model(tflite)
    layers = passes.layers(model)
    return emit(
        model,
        layers,
        prefix=prefix,
        source_hwc=source_hwc,
        pixel_scale=pixel_scale,
        title=title,
        class_names=class_names,
    )


def steps(layers: Sequence[Layer]) -> list[planner.Step]:
    return [planner.Step(lay.inputs, lay.output, lay.alias, lay.in_place) for lay in layers]


def emit(
    model: Model,
    layers: Sequence[Layer],
    *,
    prefix: str,
    source_hwc: tuple[int, int, int] | None,
    pixel_scale: float | None,
    title: str,
    class_names: Sequence[str],
) -> CProgram:
    x = model.tensor(model.inputs[0])
    y = model.tensor(model.outputs[0])
    used = {t for lay in layers for t in (*lay.inputs, lay.output)} | {x.index, y.index}
    sizes = {t: model.tensor(t).nbytes for t in used}
    plan = planner.plan(steps(layers), sizes, x.index, y.index)
    if x.index not in plan.offsets or y.index not in plan.offsets:
        raise ModelError("the model's output is not computed from its input", ops.HINT)
    in_hwc = _hwc(x.shape)
    pre = Preprocess(
        source_hwc=source_hwc or in_hwc,
        model_hwc=in_hwc,
        pixel_scale=pixel_scale,
        input_scale=x.scales[0],
        input_zero_point=x.zero_points[0],
    )
    if pre.pixel_scale is not None and pre.source_hwc[2] != in_hwc[2]:
        raise ModelError(
            f"the source images have {pre.source_hwc[2]} channels, the model {in_hwc[2]}",
            "pass the source shape of the images the model was trained on",
        )
    up = prefix.upper()
    header = _header(prefix, up, x, y, plan, pre, title, class_names, model.size)
    source = _source(prefix, up, layers, plan, pre, y.nbytes, x.index, y.index)
    return CProgram(
        files={f"{prefix}.h": header, f"{prefix}.c": source},
        prefix=prefix,
        input_bytes=x.nbytes,
        output_bytes=y.nbytes,
        classify_bytes=pre.raw_bytes,
        classify_dtype=pre.raw_dtype,
        arena_bytes=plan.arena_bytes,
        info={
            "input": {
                "shape_hwc": list(in_hwc),
                "scale": x.scales[0],
                "zero_point": x.zero_points[0],
            },
            "output": {"classes": y.numel, "scale": y.scales[0], "zero_point": y.zero_points[0]},
            "arena_bytes": plan.arena_bytes,
            "arena_lower_bound": plan.lower_bound,
            "layers": [lay.comment for lay in layers],
            "kernels": sorted({lay.kernel for lay in layers if lay.kernel}),
            "weight_bytes": sum(c.nbytes for lay in layers for c in lay.consts),
            "macs": sum(lay.macs for lay in layers),
            "preprocess": pre,
        },
    )


def _hwc(shape: tuple[int, ...]) -> tuple[int, int, int]:
    dims = (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else shape
    if len(dims) != 4 or dims[0] != 1:
        raise ModelError(
            f"the model's input has shape {list(shape)}; expected [1, H, W, C]", ops.HINT
        )
    return int(dims[1]), int(dims[2]), int(dims[3])


def _comment(text: str) -> str:
    """``text`` safe inside a C block comment: one line, no ``*/`` to end it early and no
    ``/*`` (-Wcomment)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", str(text)).replace("*/", "* /").replace("/*", "/ *")


def _header(prefix, up, x, y, plan, pre, title, class_names, size) -> str:  # type: ignore[no-untyped-def]
    h, w, c = _hwc(x.shape)
    guard = f"{up}_H"
    names = ", ".join(f"{i}: {_comment(n)}" for i, n in enumerate(class_names)) or "class indices"
    title = _comment(title)
    if pre.pixel_scale is None:
        classify_doc = (
            f" * {prefix}_classify(input): input is the int8 model input ({h}x{w}x{c}, NHWC),\n"
            f" *   q = clamp(round(x / {x.scales[0]:.9g}) + ({x.zero_points[0]}), -128, 127)\n"
            " *   of the float sample x; returns the class index (argmax of the outputs).\n"
        )
        arg = "const int8_t *input"
    else:
        sh, sw, sc = pre.source_hwc
        classify_doc = (
            f" * {prefix}_classify(pixels): pixels is the raw {sh}x{sw}x{sc} image (uint8, HWC,\n"
            f" *   row-major), scaled by {pre.pixel_scale:.9g} to [0, 1]"
            + (f", area-resized to {h}x{w}" if (sh, sw) != (h, w) else "")
            + f"\n *   and quantized (scale {x.scales[0]:.9g}, zero point {x.zero_points[0]}) in"
            " integer arithmetic;\n *   returns the class index (argmax of the outputs).\n"
        )
        arg = "const uint8_t *pixels"
    lines = [
        f"/* {prefix}.h: an int8 CNN as plain C, generated by sparsearch.",
        *([f" * {title}"] if title else []),
        " *",
        " * Outputs equal TensorFlow Lite Micro's reference kernels bit for bit. No heap, no",
        " * interpreter, no floating point at run time; every activation lives in one static",
        f" * buffer of {up}_ARENA_BYTES bytes (offsets planned at generation time; {prefix}_invoke",
        " * overwrites the input).",
        " *",
        f" * {prefix}_input(): where to write the int8 input, {h}x{w}x{c} NHWC, "
        f"q = round(x / {x.scales[0]:.9g}) + ({x.zero_points[0]}).",
        f" * {prefix}_invoke(): runs the network.",
        f" * {prefix}_output(): the {y.numel} int8 outputs (logits; scale {y.scales[0]:.9g}, zero"
        f" point {y.zero_points[0]}).",
        classify_doc.rstrip("\n"),
        f" * Classes: {names}.",
        f" * Made from a {size}-byte .tflite.",
        " */",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <stdint.h>",
        "",
        "#ifdef __cplusplus",
        'extern "C" {',
        "#endif",
        "",
        f"#define {up}_INPUT_HEIGHT {h}",
        f"#define {up}_INPUT_WIDTH {w}",
        f"#define {up}_INPUT_CHANNELS {c}",
        f"#define {up}_INPUT_BYTES {x.nbytes}",
        f"#define {up}_OUTPUT_BYTES {y.nbytes}",
        f"#define {up}_CLASSIFY_BYTES {pre.raw_bytes}",
        f"#define {up}_ARENA_BYTES {plan.arena_bytes}",
        f"#define {up}_INPUT_ZERO_POINT ({x.zero_points[0]})",
        f"#define {up}_OUTPUT_ZERO_POINT ({y.zero_points[0]})",
        "",
        f"int8_t *{prefix}_input(void);",
        f"void {prefix}_invoke(void);",
        f"const int8_t *{prefix}_output(void);",
        f"int {prefix}_classify({arg});",
        "",
        "#ifdef __cplusplus",
        "}",
        "#endif",
        "",
        f"#endif /* {guard} */",
        "",
    ]
    return "\n".join(lines)


def _array(c: Const) -> str:
    per_line = 16 if c.ctype == "int8_t" else 8
    vals = [ops.base.c_int(v) for v in c.values]
    rows = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    body = ",\n    ".join(rows)
    return f"static const {c.ctype} {c.name}[{len(vals)}] = {{\n    {body}\n}};"


def _source(prefix, up, layers, plan, pre, out_bytes, x_index, y_index) -> str:  # type: ignore[no-untyped-def]
    used = {lay.kernel for lay in layers if lay.kernel}
    parts = [
        f"/* {prefix}.c: generated by sparsearch; see {prefix}.h. */",
        f'#include "{prefix}.h"',
        "",
        "#include <stddef.h>",
        "",
        "/* Kernels stay functions of their own, never specialized for one caller (GCC's noipa):",
        " * one copy however many layers use them, and a code size and speed the estimator can",
        " * count. */",
        "#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8",
        "#define NOINLINE __attribute__((noipa))",
        "#elif defined(__GNUC__) || defined(__clang__)",
        "#define NOINLINE __attribute__((noinline))",
        "#else",
        "#define NOINLINE",
        "#endif",
        "",
        *ops.kernel_sources(used),
        "",
        pre.c_source().rstrip("\n"),
        "",
        "/* Weights, biases and requantization tables (flash). */",
    ]
    seen: set[str] = set()
    for lay in layers:
        for c in lay.consts:
            if c.name not in seen:
                seen.add(c.name)
                parts.append(_array(c))
    parts.append("")
    parts.append("/* Layer parameters. */")
    for lay in layers:
        if lay.kernel:
            parts.append(f"/* {lay.comment} */")
            parts.append(
                f"static const {_struct(lay.kernel)} L{lay.op.index} = {{{', '.join(lay.fields)}}};"
            )
    words = (plan.arena_bytes + 3) // 4
    parts += [
        "",
        f"/* All activations: {plan.arena_bytes} bytes (word-aligned). */",
        f"static int32_t arena[{max(words, 1)}];",
        "#define AT(offset) ((int8_t *)arena + (offset))",
        "",
        f"int8_t *{prefix}_input(void)",
        "{",
        f"    return AT({plan.offsets[x_index]});",
        "}",
        "",
        f"const int8_t *{prefix}_output(void)",
        "{",
        f"    return AT({plan.offsets[y_index]});",
        "}",
        "",
        f"void {prefix}_invoke(void)",
        "{",
    ]
    for lay in layers:
        src, dst = plan.offsets[lay.inputs[0]], plan.offsets[lay.output]
        if lay.kernel is None:
            parts.append(f"    /* {lay.comment} */")
            continue
        parts.append(
            f"    {lay.kernel}(&L{lay.op.index}, AT({src}), AT({dst}));  /* {lay.comment} */"
        )
    parts += [
        "}",
        "",
        f"int {prefix}_classify(const {'int8_t' if pre.pixel_scale is None else 'uint8_t'} *raw)",
        "{",
        f"    preprocess(raw, {prefix}_input());",
        f"    {prefix}_invoke();",
        f"    const int8_t *out = {prefix}_output();",
        "    int best = 0;",
        f"    for (int i = 1; i < {out_bytes}; ++i) {{",
        "        if (out[i] > out[best]) {",
        "            best = i;",
        "        }",
        "    }",
        "    return best;",
        "}",
        "",
    ]
    return "\n".join(parts)


def _struct(kernel: str) -> str:
    return {"maxpool": "pool_t", "avgpool": "pool_t"}.get(kernel, f"{kernel}_t")
