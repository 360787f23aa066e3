"""How close is the C target's cost model (``codegen/cost.py``) to the built firmware? (issue 21)

The same candidates as ``estimator_accuracy.py`` (the default space's scrambled Sobol draw on
the input shapes 8x8x1, 28x28x1, 32x32x3 and 1x40x1, trained-like random weights, int8 export,
stripped), kept under ``--max-macs`` so that emulation stays in minutes on two cores. Each
export goes through ``generate`` (``source_hwc`` the data set's image and ``pixel_scale`` 1/255
for the image shapes: ``classify`` takes uint8 pixels and area-resizes them; none for the
1x40x1 sequence: ``classify`` takes the int8 input) and ``measure_firmware`` (Cortex-M4 image
minus empty image, 2 random inputs and 2 random raw samples on the emulator). The estimate is
``c_cost`` of the candidate's graph as the search sees it, ``model_of(layer_shapes(arch))``,
never exported; the script also checks that it equals ``c_cost`` of the exported file's layers.

Two sets, as for the TFLM estimator: FITTED (Sobol seed ``--fit-seed``) and JUDGED (seed
``--judge-seed``), drawn apart. Targets: flash within +-2 %, RAM exact, instructions within
+-10 % (both ``invoke`` and ``classify``).

``--refit`` rebuilds cost_tables.py's tables from the fitted set plus ``--synthetic`` programs per
shape (``model_of`` graphs of further candidates of the fit seed's draw with random weights,
biases and scales: torch-free, no export) and prints them as Python: each function's size and
frame (ELF symbol table, ``-fstack-usage``), its section alignment (the object file), and
least-squares instruction coefficients from per-function instruction counts (the emulator, one
invoke and one classify per program), to paste into ``codegen/cost_tables.py``.

Exports and measurements are cached (``--cache``: exports by architecture and converter
versions, measurements by the generated sources and compiler). Results go to
``benchmarks/results/estimator_accuracy.json`` under the key ``"c"`` (the other keys are kept)
and a section of its markdown.

    .venv/bin/python benchmarks/c_estimator_accuracy.py --out \\
        benchmarks/results/estimator_accuracy.json
"""

from __future__ import annotations

import argparse
import base64
import bisect
import hashlib
import json
import statistics
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from _common import command_line, rnd
from estimator_accuracy import CALIBRATION_IMAGES, RESULTS, SHAPES, _seed_of, sample, versions

TARGETS = {"flash_pct": 2.0, "ram_bytes": 0, "instructions_pct": 10.0}
SAMPLES = 2  # random inputs (and raw samples) emulated per program
MEASURE_VERSION = "c1"
SU_FLAGS = ("-fstack-usage", "-c")
ROOT = Path(__file__).resolve().parent.parent


# -- programs ------------------------------------------------------------------------------------


def source_of(name: str, eff: Any) -> tuple[tuple[int, int, int] | None, float | None]:
    """``generate``'s source_hwc and pixel_scale for a candidate of input shape ``name``."""
    if name == "1x40x1":
        return None, None
    c, h, w = eff.input_shape
    return (h, w, c), 1 / 255


def export(eff: Any) -> bytes:
    """The stripped int8 .tflite of ``eff`` with trained-like weights (as estimator_accuracy)."""
    from estimator_accuracy import trained_like

    from sparsearch.worker import tflite

    rng = np.random.default_rng(_seed_of(eff.to_dict()))
    x = rng.random((CALIBRATION_IMAGES, *eff.model_input_shape), dtype=np.float32)
    return tflite.strip(tflite.export_int8(trained_like(eff), tflite.calibration_sample(x)))


def synthetic(eff: Any, seed: int) -> Any:
    """``model_of(layer_shapes(eff))`` with random weights, biases and scales (ReLU outputs at
    zero point -128, as exports have them; pooling, reshape and pad keep their input's)."""
    import dataclasses
    import random
    import struct

    from sparsearch.codegen.graph import Model
    from sparsearch.space._c_graph import model_of
    from sparsearch.space._shapes import layer_shapes

    m = model_of(layer_shapes(eff))
    rng = random.Random(seed)
    q = {m.inputs[0]: (1 / 255, -128)}
    for op in m.operators:
        x, y = op.inputs[0], op.outputs[0]
        if op.code in ("MAX_POOL_2D", "RESHAPE", "PAD", "TRANSPOSE"):
            q[y] = q[x]
        elif op.options.get("fused_activation_function") == "RELU":
            q[y] = (rng.uniform(0.01, 0.2), -128)
        else:
            q[y] = (rng.uniform(0.02, 0.3), rng.randint(-40, 40))
    tensors = list(m.tensors)
    for i, t in enumerate(tensors):
        if t.index in q:
            s, z = q[t.index]
            tensors[i] = dataclasses.replace(t, scales=(s,), zero_points=(z,))
        elif t.is_const and t.scales and t.dtype == "int8":
            data = bytes(rng.randrange(256) for _ in range(t.numel))
            scales = tuple(rng.uniform(0.002, 0.02) for _ in t.scales)
            tensors[i] = dataclasses.replace(t, data=data, scales=scales)
        elif t.is_const and t.scales:
            vals = [rng.randint(-3000, 3000) for _ in range(t.numel)]
            tensors[i] = dataclasses.replace(t, data=struct.pack(f"<{t.numel}i", *vals))
    return Model(tuple(tensors), m.operators, m.inputs, m.outputs)


def program_of(model: Any, name: str, eff: Any) -> tuple[Any, list, Any]:
    """(CProgram, layers, Preprocess) of a read or synthetic model."""
    from sparsearch.codegen import passes
    from sparsearch.codegen.cost import classify_of
    from sparsearch.codegen.emit import emit

    source_hwc, pixel_scale = source_of(name, eff)
    layers = passes.layers(model)
    prog = emit(
        model,
        layers,
        prefix="model",
        source_hwc=source_hwc,
        pixel_scale=pixel_scale,
        title="",
        class_names=(),
    )
    return prog, layers, classify_of(model, source_hwc=source_hwc, pixel_scale=pixel_scale)


# -- measuring -----------------------------------------------------------------------------------


def _samples(prog: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    inputs = rng.integers(-128, 128, (SAMPLES, prog.input_bytes)).astype(np.int8)
    lo, hi = (0, 256) if prog.classify_dtype == "uint8" else (-128, 128)
    raw = rng.integers(lo, hi, (SAMPLES, prog.classify_bytes)).astype(prog.classify_dtype)
    return inputs, raw


def elf_facts(workdir: Path, gcc: str) -> dict[str, Any]:
    """Function and object sizes (symbol table), frames and section alignments (the model's
    object file compiled again with -fstack-usage)."""
    from elftools.elf.elffile import ELFFile

    from sparsearch.worker.firmware import CFLAGS

    with (workdir / "model.elf").open("rb") as f:
        syms = ELFFile(f).get_section_by_name(".symtab").iter_symbols()
        sizes = {
            s.name: int(s["st_size"])
            for s in syms
            if s.name and s["st_info"]["type"] in ("STT_FUNC", "STT_OBJECT")
        }
    cmd = [gcc, "-mcpu=cortex-m4", *CFLAGS, *SU_FLAGS, "-Imodel", "model/model.c", "-o", "m.o"]
    subprocess.run(cmd, cwd=workdir, check=True, capture_output=True)
    frames = {}
    for line in (workdir / "m.su").read_text().splitlines():
        where, frame, _ = line.split("\t")
        frames[where.rsplit(":", 1)[-1]] = int(frame)
    with (workdir / "m.o").open("rb") as f:
        aligns = {
            s.name.removeprefix(".text."): int(s["sh_addralign"])
            for s in ELFFile(f).iter_sections()
            if s.name.startswith(".text.")
        }
    return {"sizes": sizes, "frames": frames, "aligns": aligns}


def per_function(elf: Path, prog: Any, inputs: np.ndarray, raw: np.ndarray) -> dict[str, Any]:
    """Instructions per function of one invoke and one classify (a block hook that attributes
    each block to the function it lies in)."""
    from elftools.elf.elffile import ELFFile

    from sparsearch.worker._emulate import Emulator, thumb_instructions

    with elf.open("rb") as f:
        funcs = sorted(
            (int(s["st_value"]) & ~1, s.name)
            for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()
            if s["st_info"]["type"] == "STT_FUNC"
        )
    starts = [a for a, _ in funcs]
    per: Counter[str] = Counter()

    class Counting(Emulator):
        def _on_block(self, uc: Any, address: int, size: int, _: object) -> None:
            key = address << 16 | size
            n = self._blocks.get(key)
            if n is None:
                n = self._blocks[key] = thumb_instructions(bytes(uc.mem_read(address, size)))
            self._count += n
            per[funcs[bisect.bisect_right(starts, address) - 1][1]] += n

    em = Counting(
        elf, max_instructions=2_000_000_000, call_timeout_s=600, scratch_bytes=raw[0].size
    )
    em.write(em.call("model_input").result & 0xFFFF_FFFF, inputs[0].tobytes())
    per.clear()
    em.call("model_invoke")
    invoke = dict(per)
    em.write(em.scratch, raw[0].tobytes())
    per.clear()
    em.call("model_classify", em.scratch)
    return {"invoke": invoke, "classify": dict(per)}


def measure(prog: Any, seed: int, gcc: str, detail: bool, emulate: bool = True) -> dict[str, Any]:
    from sparsearch.worker.firmware import build_images, flash_and_ram, measure_firmware

    inputs, raw = _samples(prog, seed)
    with tempfile.TemporaryDirectory(prefix="c-accuracy-") as tmp:
        work = Path(tmp)
        if emulate:
            fw = measure_firmware(prog, inputs, raw, gcc=gcc, workdir=work)
            got: dict[str, Any] = {
                "flash_bytes": fw.flash_bytes,
                "static_ram_bytes": fw.static_ram_bytes,
                "stack_bytes": fw.stack_bytes,
                "ram_bytes": fw.ram_bytes,
                "instructions": fw.instructions,
                "classify_instructions": fw.classify_instructions,
                "seconds": round(fw.seconds, 2),
            }
        else:
            empty, model = build_images(prog, work, gcc)
            flash = flash_and_ram(model)[0] - flash_and_ram(empty)[0]
            got = {"flash_bytes": flash}
        if detail:
            got["elf"] = elf_facts(work, gcc)
            if emulate:
                got["per_function"] = per_function(work / "model.elf", prog, inputs, raw)
    return got


class Cache:
    """Exports by (architecture, converter versions), measurements by (generated sources,
    compiler, MEASURE_VERSION), in one JSON file."""

    def __init__(self, path: Path, compiler: str) -> None:
        self.path, self.compiler = path, compiler
        self.tag = versions()
        self.exports: dict[str, str] = {}
        self.measured: dict[str, Any] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            if doc.get("tag") == self.tag:
                self.exports = doc["exports"]
            self.measured = doc.get("measured", {})
        self.hits = self.misses = 0

    def export(self, eff: Any) -> bytes:
        key = json.dumps(eff.to_dict(), sort_keys=True)
        if key not in self.exports:
            self.exports[key] = base64.b64encode(export(eff)).decode()
            self.save()
        return base64.b64decode(self.exports[key])

    def measure(self, prog: Any, seed: int, detail: bool, emulate: bool = True) -> dict:
        text = json.dumps([prog.files, self.compiler, MEASURE_VERSION, seed, emulate])
        key = hashlib.sha256(text.encode()).hexdigest()
        got = self.measured.get(key)
        if got is not None and (not detail or "elf" in got):
            self.hits += 1
            return got
        self.misses += 1
        from sparsearch.worker.firmware import find_arm_gcc

        got = self.measured[key] = measure(prog, seed, find_arm_gcc(), detail, emulate)
        self.save()
        return got

    def save(self) -> None:
        doc = {"tag": self.tag, "exports": self.exports, "measured": self.measured}
        self.path.write_text(json.dumps(doc, sort_keys=True) + "\n")


# -- comparing -----------------------------------------------------------------------------------


def _pct(est: float, got: float) -> float:
    return 100.0 * (est - got) / got


def compare(rows: list, cache: Cache, what: str, detail: bool) -> list[dict]:
    from sparsearch.codegen.cost import c_cost
    from sparsearch.codegen.reader import read_model
    from sparsearch.space._c_graph import model_of
    from sparsearch.space._shapes import layer_shapes

    out = []
    for i, (name, _arch, pruning, eff) in enumerate(rows):
        shipped = read_model(cache.export(eff))
        prog, layers, pre = program_of(shipped, name, eff)
        got = cache.measure(prog, _seed_of(eff.to_dict()), detail)
        cand = model_of(layer_shapes(eff))
        from sparsearch.codegen import passes

        est = c_cost(cand, passes.layers(cand), classify=pre)
        real = c_cost(shipped, layers, classify=pre)
        row = {
            "input_shape": name,
            "arch": eff.to_dict(),
            "pruning": pruning.to_dict(),
            "measured": {k: v for k, v in got.items() if k not in ("elf", "per_function")},
            "estimated": _figures(est),
            "same_as_file": _figures(est) == _figures(real),
            "flash_err_pct": rnd(_pct(est.flash_bytes, got["flash_bytes"]), 2),
            "ram_err_bytes": est.ram_bytes - got["ram_bytes"],
            "stack_err_bytes": est.stack_bytes - got["stack_bytes"],
            "static_err_bytes": est.static_ram_bytes - got["static_ram_bytes"],
            "instructions_err_pct": rnd(_pct(est.instructions, got["instructions"]), 2),
            "classify_err_pct": rnd(
                _pct(est.classify_instructions, got["classify_instructions"]), 2
            ),
        }
        out.append(row)
        print(
            f"[{what} {i + 1}/{len(rows)}] {name} flash {got['flash_bytes']} "
            f"({row['flash_err_pct']:+.2f}%) ram {got['ram_bytes']} ({row['ram_err_bytes']:+d} B) "
            f"instr {got['instructions']} ({row['instructions_err_pct']:+.1f}%, classify "
            f"{row['classify_err_pct']:+.1f}%)"
            + ("" if row["same_as_file"] else " [file differs]"),
            flush=True,
        )
    return out


def _figures(c: Any) -> dict[str, int]:
    keys = ("flash_bytes", "static_ram_bytes", "stack_bytes", "ram_bytes", "instructions")
    return {k: getattr(c, k) for k in (*keys, "classify_instructions")}


def summary(rows: list[dict]) -> dict[str, Any]:
    instr = [max(abs(r["instructions_err_pct"]), abs(r["classify_err_pct"])) for r in rows]
    return {
        "n": len(rows),
        "flash_max_rel_err": rnd(max(abs(r["flash_err_pct"]) for r in rows) / 100, 4),
        "flash_mean_abs_rel_err": rnd(
            statistics.mean(abs(r["flash_err_pct"]) for r in rows) / 100, 4
        ),
        "ram_max_abs_err": max(abs(r["ram_err_bytes"]) for r in rows),
        "ram_exact": sum(r["ram_err_bytes"] == 0 for r in rows),
        "static_ram_exact": sum(r["static_err_bytes"] == 0 for r in rows),
        "instructions_max_rel_err": rnd(max(instr) / 100, 4),
        "instructions_mean_abs_rel_err": rnd(statistics.mean(instr) / 100, 4),
        "same_as_file": sum(r["same_as_file"] for r in rows),
        "pruned": sum(r["pruning"]["method"] != "none" for r in rows),
        "by_shape": {s: sum(r["input_shape"] == s for r in rows) for s in SHAPES},
    }


# -- refit ---------------------------------------------------------------------------------------


def refit_records(
    rows: list, cache: Cache, synthetic_rows: list, emulate_macs: int, files: list[Path]
) -> list:
    """(model, layers, preprocess, measured detail) of the fitted set, the synthetic programs
    and ``files`` (.tflite: the kernels outside the default space, as tests/codegen/test_cost.py
    builds them: uint8 pixels unless the input is one row high)."""
    from sparsearch.codegen import generate, passes
    from sparsearch.codegen.cost import classify_of
    from sparsearch.codegen.reader import read_model
    from sparsearch.space.estimate import estimate

    out = []
    for path in files:
        model = read_model(path.read_bytes())
        scale = None if model.tensor(model.inputs[0]).shape[1] == 1 else 1 / 255
        prog = generate(path.read_bytes(), pixel_scale=scale)
        got = cache.measure(prog, 0, True)
        out.append((model, passes.layers(model), classify_of(model, pixel_scale=scale), got))
    for i, (name, arch, pruning, eff) in enumerate(rows + synthetic_rows):
        is_synth = i >= len(rows)
        model = synthetic(eff, i) if is_synth else read_model(cache.export(eff))
        prog, layers, pre = program_of(model, name, eff)
        emulate = not is_synth or estimate(arch, pruning).macs <= emulate_macs
        got = cache.measure(prog, _seed_of(eff.to_dict()), True, emulate)
        out.append((model, layers, pre, got))
        print(f"[refit {i + 1}/{len(rows) + len(synthetic_rows)}] {name}", flush=True)
    return out


def _fn(seen: list[tuple[int, int, int]]) -> str:
    """``Fn(median size, most common alignment, most common frame)  # n=...``."""
    sizes, aligns, frames = zip(*seen, strict=True)
    mode = [Counter(v).most_common(1)[0][0] for v in (aligns, frames)]
    return f"Fn({statistics.median_low(sizes)}, {mode[0]}, {mode[1]}),  # n={len(seen)}"


def _block(title: str, entries: list[tuple[Any, list]], indent: str = "    ") -> list[str]:
    return [title, *(f"{indent}{key!r}: {_fn(seen)}" for key, seen in entries), "}"]


def refit(records: list) -> str:
    """cost_tables' tables from the records, as Python."""
    import numpy as np
    from scipy.optimize import nnls

    from sparsearch.codegen import cost

    groups: dict[tuple, list[tuple[int, int, int]]] = defaultdict(list)
    structs: dict[str, Counter] = defaultdict(Counter)
    invoke_x, invoke_y, invoke_frames = [], [], Counter()
    feats: dict[tuple, list] = defaultdict(list)
    req_n = req_calls = 0
    own_x: dict[str, list] = defaultdict(list)
    for model, layers, pre, got in records:
        elf = got["elf"]
        plan = cost.plan_of(model, layers)
        y = model.outputs[0]
        for name, key in cost.functions(layers, model.tensor(y).nbytes, plan.offsets[y], pre):
            if name in elf["sizes"]:
                groups[key].append((elf["sizes"][name], elf["aligns"][name], elf["frames"][name]))
        for lay in layers:
            if lay.kernel and f"L{lay.op.index}" in elf["sizes"]:
                structs[lay.kernel][elf["sizes"][f"L{lay.op.index}"]] += 1
        t = cost.invoke_terms(layers, plan)
        invoke_x.append([1, t["calls"], t["pointers"]])
        invoke_y.append(elf["sizes"]["model_invoke"])
        invoke_frames[(t["kept"] >= 2, elf["frames"]["model_invoke"])] += 1
        per = got.get("per_function")
        if per is None:
            continue
        inv, cls = per["invoke"], per["classify"]
        sums: dict[str, Counter] = defaultdict(Counter)
        for lay in layers:
            if lay.kernel:
                sums[lay.kernel].update(cost.loops(lay))
        for k, f in sums.items():
            feats[("kernel", k)].append((dict(f), inv.get(k, 0)))
            if k in cost.REQUANTIZING:
                req_calls += f["outputs"]
        req_n += inv.get("requantize", 0)
        n_calls = sum(1 for la in layers if la.kernel)
        own_x["invoke"].append(([1, n_calls], inv.get("model_invoke", 0)))
        own_x["classify"].append(([1, model.tensor(y).nbytes], cls.get("model_classify", 0)))
        kind = "copy" if pre.pixel_scale is None else "area"
        feats[("preprocess", kind)].append((cost.preprocess_loops(pre), cls.get("preprocess", 0)))

    def of(kind: str) -> list[tuple]:
        return sorted(((k, v) for k, v in groups.items() if k[0] == kind), key=repr)

    lines = _block("GENERIC = {", [(k[1], v) for k, v in of("generic")])
    lines += _block("PREPROCESS = {", [(k[1], v) for k, v in of("preprocess")])
    lines += _block("CLASSIFY = {", [(k[1], v) for k, v in of("classify")])
    lines.append(f"STRUCTS seen (bytes: count): {dict(structs)}")
    coef, *_ = np.linalg.lstsq(np.array(invoke_x, float), np.array(invoke_y, float), rcond=None)
    lines.append(f"INVOKE (base, per call, per pointer): {np.round(coef, 2).tolist()}")
    lines.append(f"invoke frames by (2+ pointers kept): {sorted(invoke_frames.items())}")
    lines.append("INSTRUCTIONS = {")
    pre_lines = []
    for key in sorted(feats):
        rows = feats[key]
        names = sorted({f for d, _ in rows for f in d})
        a = np.array([[d.get(f, 0) for f in names] for d, _ in rows], float)
        b = np.array([n for _, n in rows], float)
        w = 1 / np.maximum(b, 1)  # least relative error per function
        c, _ = nnls(a * w[:, None], b * w)
        err = np.abs(a @ c - b) / np.maximum(b, 1)
        text = ", ".join(f"{f!r}: {v:.2f}" for f, v in zip(names, c, strict=True) if v > 0)
        stats = f"n={len(rows)}, mean {100 * err.mean():.1f} %, worst {100 * err.max():.1f} %"
        entry = f"    {key[1]!r}: {{{text}}},  # {stats}"
        (pre_lines if key[0] == "preprocess" else lines).append(entry)
    lines += ["}", "PREPROCESS_INSTRUCTIONS = {", *pre_lines, "}"]
    lines.append(f"REQUANTIZE_INSTRUCTIONS = {req_n / max(req_calls, 1):.2f}")
    for what, rows in own_x.items():
        c, *_ = np.linalg.lstsq(
            np.array([r for r, _ in rows], float), np.array([n for _, n in rows], float), rcond=None
        )
        per = "call" if what == "invoke" else "output"
        lines.append(f"{what.upper()}_INSTRUCTIONS (base, per {per}): {np.round(c, 2).tolist()}")
    return "\n".join(lines)


# -- output --------------------------------------------------------------------------------------


def markdown_section(c: dict) -> str:
    lines = [
        "## C target (interpreter-free C on a Cortex-M4): codegen/cost.py",
        "",
        f"Command: `{c['command']}`; {c['compiler']}. Estimate: `c_cost(model_of("
        "layer_shapes(arch)))`, never exported; measured: `measure_firmware` of the exported "
        f"file's generated C. Targets: flash within +-{TARGETS['flash_pct']:g} %, RAM exact, "
        f"instructions within +-{TARGETS['instructions_pct']:g} % (invoke and classify).",
        "",
        "| set | n | flash worst | flash mean abs | RAM worst | RAM exact | static exact "
        "| instr worst | instr mean abs | estimate = file's |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("fitted", "judged"):
        s = c[name]
        lines.append(
            f"| {name} | {s['n']} | {100 * s['flash_max_rel_err']:.2f} % | "
            f"{100 * s['flash_mean_abs_rel_err']:.2f} % | {s['ram_max_abs_err']} B | "
            f"{s['ram_exact']}/{s['n']} | {s['static_ram_exact']}/{s['n']} | "
            f"{100 * s['instructions_max_rel_err']:.1f} % | "
            f"{100 * s['instructions_mean_abs_rel_err']:.1f} % | {s['same_as_file']}/{s['n']} |"
        )
    lines += ["", *c.get("notes", [])]
    return "\n".join(lines) + "\n"


MD_MARK = "## C target (interpreter-free C"
NOTES = [
    "- Kernels are generated `static` and `__attribute__((noipa))`: GCC neither inlines them "
    "nor specializes one for a single caller (IPA-CP folded a lone layer's parameter struct "
    "into `kernel.constprop.0`, whose size, frame and speed followed the layer's shape in ways "
    "no table predicted: instructions missed +-10 % on 3 of 24 judged candidates, -23 % "
    "worst). Every kernel is now one fixed function: flash and frames come from a table, "
    "instructions from exact loop counts.",
    "- What that costs, measured on these 56 exports against the specializing build: flash "
    "+3.5 % median (+164 B; mean +5.5 %, -16 to +472 B, +21 % at most), instructions +2.7 % "
    "median (mean +11 %, -10 % to +88 %: single-layer kernels that GCC had specialized), RAM "
    "unchanged median (+48 B at most).",
    "- What is left approximate: `preprocess` (its loop bounds are constants of the source: "
    "area windows, mean 3.8 % of its own instructions), `requantize`'s rounding branches (a "
    "mean per call) and `model_invoke`'s frame (24 instead of 16 bytes on 3 of 254 programs).",
]


def write_results(path: Path, c: dict) -> None:
    """Add key "c" to the JSON (other keys untouched) and replace the markdown's C section."""
    doc = json.loads(path.read_text()) if path.exists() else {}
    doc["c"] = c
    path.write_text(json.dumps(doc, indent=1) + "\n")
    md = path.with_suffix(".md")
    text = md.read_text() if md.exists() else ""
    if MD_MARK in text:
        text = text[: text.index(MD_MARK)].rstrip("\n") + "\n"
    md.write_text(text + ("\n" if text else "") + markdown_section(c))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fit-seed", type=int, default=0)
    ap.add_argument("--judge-seed", type=int, default=1)
    ap.add_argument("--fit-per-shape", type=int, default=8)
    ap.add_argument("--judge-per-shape", type=int, default=6)
    ap.add_argument("--max-params", type=int, default=40_000)
    ap.add_argument("--max-macs", type=int, default=1_000_000)
    ap.add_argument("--cache", type=Path, default=RESULTS / "c_estimator_accuracy_cache.json")
    ap.add_argument("--refit", action="store_true", help="print cost_tables.py's tables")
    ap.add_argument("--synthetic", type=int, default=48, help="synthetic programs per shape")
    ap.add_argument("--synthetic-seed", type=int, default=2)
    ap.add_argument("--emulate-macs", type=int, default=300_000, help="synthetic: emulate below")
    ap.add_argument(
        "--refit-models",
        type=Path,
        nargs="*",
        default=[ROOT / "tests/codegen/data", ROOT / "tests/codegen/data/edge"],
        help="folders of .tflite files that also feed the refit (kernels the space never uses)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from sparsearch.worker.firmware import compiler_version, find_arm_gcc

    start = time.perf_counter()
    compiler = compiler_version(find_arm_gcc())
    cache = Cache(args.cache, compiler)
    sets = {}
    for what, seed, n in (
        ("fitted", args.fit_seed, args.fit_per_shape),
        ("judged", args.judge_seed, args.judge_per_shape),
    ):
        rows, skipped = sample(seed, n, args.max_params, args.max_macs)
        sets[what] = rows
        print(f"{what}: {len(rows)} candidates, skipped {skipped}", flush=True)
    if args.refit:
        synth, _ = sample(args.synthetic_seed, args.synthetic, args.max_params, args.max_macs)
        files = sorted(p for d in args.refit_models for p in d.glob("*.tflite"))
        records = refit_records(sets["fitted"], cache, synth, args.emulate_macs, files)
        print(refit(records), flush=True)
    results = {w: compare(rows, cache, w, detail=args.refit) for w, rows in sets.items()}
    fit_keys = {json.dumps(r["arch"], sort_keys=True) for r in results["fitted"]}
    c = {
        "judged": summary(results["judged"]),
        "fitted": summary(results["fitted"]),
        "judged_in_fitted": sum(
            json.dumps(r["arch"], sort_keys=True) in fit_keys for r in results["judged"]
        ),
        "command": command_line(),
        "compiler": compiler,
        "targets": TARGETS,
        "seeds": {"fitted": args.fit_seed, "judged": args.judge_seed},
        "limits": {"max_params": args.max_params, "max_macs": args.max_macs},
        "cache": {"hits": cache.hits, "measured": cache.misses},
        "seconds": round(time.perf_counter() - start, 1),
        "notes": NOTES,
        "rows": results,
    }
    print(json.dumps({k: c[k] for k in ("fitted", "judged")}, indent=1))
    if args.out:
        write_results(args.out, c)


if __name__ == "__main__":
    main()
