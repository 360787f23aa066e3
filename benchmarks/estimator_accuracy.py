"""How close is the analytic estimate (``space/estimate.py``) to the deployed model? (issue 11)

Draws candidates of the DEFAULT search space (``SpaceConfig()``: conv and dsconv blocks, stride
and pool downsampling, gap and flatten heads, hidden dense layers, structured pruning, every
input scale) with a scrambled Sobol design (``sobol_draw``, as a search's initial design does)
on four input shapes (C, H, W): 8x8x1 (1, 8, 8), 28x28x1 (1, 28, 28), 32x32x3 (3, 32, 32) and a
one-row 1x40x1 (1, 1, 40). Each candidate's effective (post-pruning) architecture is built with
trained-like weights (random BatchNorm running mean / variance and affine, random conv and
dense weights and biases, seeded per architecture: at init every folded bias is zero and equal
buffers are stored once, which distorts the sizes), exported to int8 (``tflite.export_int8`` on
16 random calibration images), stripped (``tflite.strip``: what ships) and loaded in TFLite
Micro (``run_tflm``). Measured: flash = len(stripped file), RAM = arena total, activation =
arena head, and the tail's breakdown by allocation class.

Two sets: the FITTED set (Sobol seed ``--fit-seed``, ``--fit-per-shape`` per shape), on which
the estimator's flash and tail constants were fitted, and the JUDGED set (seed
``--judge-seed``, ``--judge-per-shape`` per shape), drawn apart, which the targets are judged
on: flash within +-3 %, RAM within +-2 %, activation (head) exact. Candidates that cannot be
built (SpaceError) and ones over ``--max-params`` parameters or ``--max-macs`` MACs (kept small
so the run takes minutes on two cores) are skipped and counted. ``--refit`` prints the
least-squares constants of the estimator's terms on the fitted set (a check of the constants
in estimate.py, which are set by hand from the flatbuffer layout and the runtime's structs).

Measurements are cached (``--cache``, keyed by architecture, converter and runtime version),
so a refit reruns in seconds. ``--write-test-data`` writes a few measured architectures that
cover every shape and feature to tests/space/data/measured_archs.json.

    .venv/bin/python benchmarks/estimator_accuracy.py --refit \\
        --out benchmarks/results/estimator_accuracy.json \\
        --write-test-data tests/space/data/measured_archs.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from _common import command_line, machine_info, rnd

SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {  # name: ((C, H, W), classes)
    "8x8x1": ((1, 8, 8), 10),
    "28x28x1": ((1, 28, 28), 10),
    "32x32x3": ((3, 32, 32), 10),
    "1x40x1": ((1, 1, 40), 6),
}
TARGET_FLASH_PCT, TARGET_RAM_PCT = 3.0, 2.0
CALIBRATION_IMAGES = 16
#: Bumped when the way a model is made or measured changes (invalidates the cache).
MEASURE_VERSION = "1: uniform BN stats, N(0, 0.3) weights, 16 U(0,1) calibration images"
RESULTS = Path(__file__).resolve().parent / "results"


# -- sampling ------------------------------------------------------------------------------------


def sample(seed: int, per_shape: int, max_params: int, max_macs: int) -> tuple[list, dict]:
    """``per_shape`` candidates per input shape from the default space's Sobol draw ``seed``
    (consecutive points, shape after shape):
    (shape name, arch, pruning, effective arch) rows, and the counts of skipped draws."""
    from sparsearch.errors import SpaceError
    from sparsearch.search.codec import Codec
    from sparsearch.search.screen import sobol_draw
    from sparsearch.space.estimate import estimate
    from sparsearch.space.params import SpaceConfig, decode
    from sparsearch.space.pruned import effective_arch

    space = SpaceConfig()
    codec = Codec(space)
    rows, skipped = [], {"infeasible": 0, "too_large": 0, "duplicate": 0}
    draw = sobol_draw(codec, seed)  # one sequence, shape after shape: no net repeats per shape
    for name, (shape, classes) in SHAPES.items():
        seen, got = set(), 0
        while got < per_shape:
            arch, pruning, _ = decode(draw(), space, shape, classes)
            try:
                est = estimate(arch, pruning)
            except SpaceError:
                skipped["infeasible"] += 1
                continue
            if est.params > max_params or est.macs > max_macs:
                skipped["too_large"] += 1
                continue
            eff = effective_arch(arch, pruning)
            key = json.dumps(eff.to_dict(), sort_keys=True)
            if key in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(key)
            rows.append((name, arch, pruning, eff))
            got += 1
    return rows, skipped


# -- measuring -----------------------------------------------------------------------------------


def _seed_of(arch_dict: dict) -> int:
    digest = hashlib.sha256(json.dumps(arch_dict, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "little")


def trained_like(arch: Any) -> Any:
    """``build_model(arch)`` with random (seeded) weights and BatchNorm statistics."""
    import torch

    from sparsearch.space.builder import build_model

    gen = torch.Generator().manual_seed(_seed_of(arch.to_dict()))
    model = build_model(arch).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=gen))
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
            elif isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
                m.weight.copy_(0.3 * torch.randn(m.weight.shape, generator=gen))
                if m.bias is not None:
                    m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return model


def graph_stats(tflite_bytes: bytes) -> dict[str, Any]:
    """What the stripped flatbuffer holds: operators, tensors, buffers, quantization channels."""
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(tflite_bytes))
    g = model.subgraphs[0]
    channels = sum(
        len(t.quantization.scale)
        for t in g.tensors
        if t.quantization is not None and t.quantization.scale is not None
    )
    return {
        "ops": [fu.opcode_to_name(model, op.opcodeIndex) for op in g.operators],
        "tensors": len(g.tensors),
        "buffers": len(model.buffers),
        "buffer_bytes": sum(len(b.data) for b in model.buffers if b.data is not None),
        "quant_channels": channels,
    }


def measure(arch: Any, seed: int) -> dict[str, Any]:
    """Export ``arch`` (trained-like), strip it, load it in TFLM: the measured numbers."""
    import numpy as np

    from sparsearch.worker import tflite
    from sparsearch.worker.tflm import run_tflm

    rng = np.random.default_rng(seed)
    x = rng.random((CALIBRATION_IMAGES, *arch.model_input_shape), dtype=np.float32)
    start = time.perf_counter()
    raw = tflite.export_int8(trained_like(arch), tflite.calibration_sample(x))
    shipped = tflite.strip(raw)
    run = run_tflm(shipped)
    return {
        "flash_bytes": len(shipped),
        "unstripped_bytes": len(raw),
        "ram_bytes": run.arena_total,
        "activation_bytes": run.arena_head,
        "tail_bytes": run.arena_tail,
        "breakdown": run.breakdown,
        "graph": graph_stats(shipped),
        "seconds": round(time.perf_counter() - start, 2),
        "_tflite": shipped,
    }


def versions() -> str:
    import importlib.metadata as md

    return " ".join(
        f"{p}=={md.version(p)}" for p in ("litert-torch", "ai-edge-litert", "tflite-micro")
    )


class Cache:
    """Measurements by (architecture, versions, MEASURE_VERSION), in one JSON file."""

    def __init__(self, path: Path, models_dir: Path | None) -> None:
        self.path, self.models_dir = path, models_dir
        self.tag = f"{versions()} | {MEASURE_VERSION}"
        self.data: dict[str, Any] = {}
        if path.exists():
            doc = json.loads(path.read_text())
            if doc.get("tag") == self.tag:
                self.data = doc["entries"]
        self.hits = self.misses = 0

    def get(self, arch: Any) -> dict[str, Any]:
        key = json.dumps(arch.to_dict(), sort_keys=True)
        if key in self.data:
            self.hits += 1
            return self.data[key]
        self.misses += 1
        got = measure(arch, _seed_of(arch.to_dict()))
        shipped = got.pop("_tflite")
        if self.models_dir is not None:
            self.models_dir.mkdir(parents=True, exist_ok=True)
            (self.models_dir / f"{_seed_of(arch.to_dict()):08x}.tflite").write_bytes(shipped)
        self.data[key] = got
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"command": command_line(), "tag": self.tag, "entries": self.data}
        self.path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        return got


# -- comparing -----------------------------------------------------------------------------------


def _pct(est: int, got: int) -> float:
    return 100.0 * (est - got) / got


def compare(rows: list, cache: Cache, what: str) -> tuple[list[dict], int]:
    from sparsearch.errors import TrialError
    from sparsearch.space.estimate import estimate, tail_breakdown

    out, failed = [], 0
    for i, (name, arch, pruning, eff) in enumerate(rows):
        try:
            got = cache.get(eff)
        except TrialError as e:
            failed += 1
            print(f"[{what} {i + 1}/{len(rows)}] export failed: {e}", flush=True)
            continue
        est = estimate(arch, pruning)
        row = {
            "arch": eff.to_dict(),
            "input_shape": name,
            "pruning": pruning.to_dict(),
            "est_flash_bytes": est.flash_bytes,
            "flash_bytes": got["flash_bytes"],
            "est_ram_bytes": est.ram_bytes,
            "ram_bytes": got["ram_bytes"],
            "est_activation_bytes": est.activation_bytes,
            "activation_bytes": got["activation_bytes"],
            "flash_err_pct": rnd(_pct(est.flash_bytes, got["flash_bytes"]), 2),
            "ram_err_pct": rnd(_pct(est.ram_bytes, got["ram_bytes"]), 2),
            "head_err_bytes": est.activation_bytes - got["activation_bytes"],
            "tail_bytes": got["tail_bytes"],
            "est_tail_bytes": est.ram_bytes - est.activation_bytes,
            "unstripped_bytes": got["unstripped_bytes"],
            "breakdown": got["breakdown"],
            "est_breakdown": tail_breakdown(eff),
            "graph": got["graph"],
            "macs": est.macs,
            "params": est.params,
        }
        out.append(row)
        print(
            f"[{what} {i + 1}/{len(rows)}] {name} flash {row['flash_bytes']} "
            f"({row['flash_err_pct']:+.2f}%) ram {row['ram_bytes']} ({row['ram_err_pct']:+.2f}%) "
            f"head {row['head_err_bytes']:+d} ({got['seconds']} s)",
            flush=True,
        )
    return out, failed


def summary(rows: list[dict]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, Any]:
        errs = [r[key] for r in rows]
        return {
            "worst_abs_pct": rnd(max(abs(e) for e in errs), 2),
            "mean_abs_pct": rnd(sum(abs(e) for e in errs) / len(errs), 2),
            "mean_pct": rnd(sum(errs) / len(errs), 2),
            "min_pct": rnd(min(errs), 2),
            "max_pct": rnd(max(errs), 2),
        }

    return {
        "n": len(rows),
        "flash": stats("flash_err_pct"),
        "ram": stats("ram_err_pct"),
        "head_exact": sum(r["head_err_bytes"] == 0 for r in rows),
        "head_worst_abs_bytes": max(abs(r["head_err_bytes"]) for r in rows),
        "by_shape": {
            s: {
                "n": len(sub),
                "flash_worst_abs_pct": rnd(max(abs(r["flash_err_pct"]) for r in sub), 2),
                "ram_worst_abs_pct": rnd(max(abs(r["ram_err_pct"]) for r in sub), 2),
            }
            for s in SHAPES
            if (sub := [r for r in rows if r["input_shape"] == s])
        },
    }


def coverage(rows: list[dict]) -> dict[str, int]:
    """How many rows exercise each feature of the space."""
    feats: dict[str, int] = {}

    def add(k: str) -> None:
        feats[k] = feats.get(k, 0) + 1

    for r in rows:
        a = r["arch"]
        for b in a["blocks"]:
            add(f"block={b['kind']}")
            add(f"down={b['downsample']}")
            add(f"kernel={b['kernel']}")
        add(f"head_pool={a['head_pool']}")
        add("hidden_dense" if a["head_units"] else "no_hidden_dense")
        add(f"input_scale={a['input_scale']}")
        add(f"n_blocks={len(a['blocks'])}")
        add("pruned" if r["pruning"]["method"] != "none" else "unpruned")
    return dict(sorted(feats.items()))


# -- pointer size --------------------------------------------------------------------------------


def pointer_share(rows: list[dict]) -> dict[str, Any]:
    """How much of each judged net's tail would shrink on a 32-bit MCU: the tail replayed with
    the 32-bit struct sizes (``estimate.MCU32``), its fixed part (allocator objects) either kept
    (low end) or halved (high end); see the markdown for the reasoning."""
    from dataclasses import replace

    from sparsearch.space.estimate import HOST64, MCU32, graph_of, tail_of_graph
    from sparsearch.space.spec import ArchSpec

    lows, highs, rows_out = [], [], []
    for r in rows:
        g = graph_of(ArchSpec.from_dict(r["arch"]))
        host = tail_of_graph(g, HOST64)["total"]
        kept = tail_of_graph(g, MCU32)["total"]
        halved = tail_of_graph(g, replace(MCU32, fixed=MCU32.fixed // 2))["total"]
        lo, hi = host - kept, host - halved
        lows.append(100.0 * lo / r["tail_bytes"])
        highs.append(100.0 * hi / r["tail_bytes"])
        rows_out.append({"tail_bytes": r["tail_bytes"], "shrink_bytes": [lo, hi]})
    return {
        "shrink_pct_of_tail": [rnd(min(lows), 1), rnd(max(highs), 1)],
        "shrink_pct_of_tail_mean": [rnd(sum(lows) / len(lows), 1), rnd(sum(highs) / len(highs), 1)],
        "shrink_pct_of_ram_max": rnd(
            max(
                100.0 * x["shrink_bytes"][1] / r["ram_bytes"]
                for x, r in zip(rows_out, rows, strict=True)
            ),
            1,
        ),
        "per_net": rows_out,
    }


# -- refit ---------------------------------------------------------------------------------------


def refit(rows: list[dict]) -> dict[str, Any]:
    """Least-squares ``FLASH_BASE`` and ``FLASH_ZERO_POINT_PAD`` on ``rows`` (the only fitted
    flash constants; everything else is the flatbuffer layout)."""
    import numpy as np

    from sparsearch.space.estimate import flatbuffer_terms, graph_of
    from sparsearch.space.spec import ArchSpec

    terms = [flatbuffer_terms(graph_of(ArchSpec.from_dict(r["arch"]))) for r in rows]
    a = np.array([[1.0, t["zero_point_vectors"]] for t in terms])
    b = np.array([r["flash_bytes"] - t["structure"] for r, t in zip(rows, terms, strict=True)])
    coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    fixed_pad = b - 2.0 * a[:, 1]
    return {
        "base": rnd(float(coef[0]), 1),
        "zero_point_pad": rnd(float(coef[1]), 2),
        "base_with_pad_2": rnd(float(fixed_pad.mean()), 1),
    }


# -- output --------------------------------------------------------------------------------------


def _arch_text(a: dict) -> str:
    blocks = " ".join(
        f"{b['kind']}{b['kernel']}x{b['channels']}"
        + {"none": "", "stride": "/s", "pool": "/p"}[b["downsample"]]
        for b in a["blocks"]
    )
    head = a["head_pool"] + (f" fc{a['head_units']}" if a["head_units"] else "")
    return f"@{a['input_scale']:g} {blocks} {head} fc{a['num_classes']}"


def markdown(doc: dict) -> str:
    s, j = doc["summary"], doc["judged"]
    lines = [
        "# Estimator accuracy (stripped int8 .tflite, TFLM arena)",
        "",
        f"Command: `{doc['command']}`",
        "",
        f"Fitted on {s['fitted']['n']} architectures (Sobol seed {doc['fit_seed']}), judged on "
        f"{s['judged']['n']} others (seed {doc['judge_seed']}); {doc['versions']}. "
        f"Targets on the judged set: flash within +-{TARGET_FLASH_PCT:g} %, RAM within "
        f"+-{TARGET_RAM_PCT:g} %, head exact.",
        "",
        "| set | n | flash worst | flash mean abs | RAM worst | RAM mean abs | head exact |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("fitted", "judged"):
        x = s[name]
        lines.append(
            f"| {name} | {x['n']} | {x['flash']['worst_abs_pct']:.2f} % | "
            f"{x['flash']['mean_abs_pct']:.2f} % | {x['ram']['worst_abs_pct']:.2f} % | "
            f"{x['ram']['mean_abs_pct']:.2f} % | {x['head_exact']}/{x['n']} |"
        )
    lines += [
        "",
        f"Skipped draws: fitted {doc['skipped']['fitted']}, judged {doc['skipped']['judged']}; "
        f"export failures: fitted {doc['export_failed']['fitted']}, "
        f"judged {doc['export_failed']['judged']}.",
        "",
        "## Judged set",
        "",
        "| shape | arch (effective) | pruning | est flash | flash | err | est RAM | RAM | err "
        "| head |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in j:
        p = r["pruning"]
        prune = "-" if p["method"] == "none" else f"{p['method']} {p['level']:.2f}"
        head = "exact" if r["head_err_bytes"] == 0 else f"{r['head_err_bytes']:+d} B"
        lines.append(
            f"| {r['input_shape']} | {_arch_text(r['arch'])} | {prune} | {r['est_flash_bytes']} "
            f"| {r['flash_bytes']} | {r['flash_err_pct']:+.2f} % | {r['est_ram_bytes']} | "
            f"{r['ram_bytes']} | {r['ram_err_pct']:+.2f} % | "
            f"{head} |"
        )
    ps = doc["pointer_share"]
    lo, hi = ps["shrink_pct_of_tail"]
    mlo, mhi = ps["shrink_pct_of_tail_mean"]
    lines += [
        "",
        "## Pointer size: the tail on a 32-bit MCU",
        "",
        f"pointer_share: {lo:.0f}-{hi:.0f} % of the judged nets' tails "
        f"(mean {mlo:.0f}-{mhi:.0f} %) are pointer-sized members (and the padding they cause) "
        "that shrink on a 32-bit MCU; at "
        f"most {ps['shrink_pct_of_ram_max']:.0f} % of a judged net's RAM. The measured (64-bit "
        "host) RAM is an upper bound of the MCU's.",
        "",
        *POINTER_REASONING,
    ]
    return "\n".join(lines) + "\n"


POINTER_REASONING = [
    "How: the estimator replays the tail allocation by allocation (`estimate.tail_of_graph`, "
    "exact on every measured net with the host's struct sizes, `HOST64`), then again with the "
    "32-bit sizes of the same structs (`MCU32`, derived from TFLM's headers, not measured):",
    "",
    "- `TfLiteEvalTensor` {data ptr, dims ptr, type}: 24 B -> 12 B, one per tensor "
    "(constants included).",
    "- `NodeAndRegistration` {TfLiteNode: inputs, outputs, intermediates, user_data, "
    "builtin_data, custom_initial_data pointers + an int; registration ptr}: 64 B -> 32 B, one "
    "per operator.",
    "- persistent `TfLiteTensor` (model input and output): 64 B -> 40 B; their "
    "`TfLiteAffineQuantization` {scale ptr, zero_point ptr, int}: 24 B -> 12 B; scratch-buffer "
    "handles {data ptr}: 8 B -> 4 B; the input / output pointer arrays: 8 B -> 4 B (but each is "
    "a 16-byte aligned allocation).",
    "- kernel op data: `OpDataConv` (conv, depthwise) 80 B -> 64 B and `OpDataFullyConnected` "
    "72 B -> 60 B (two per-channel array pointers each; 16-byte aligned, so 80 -> 64 B); PAD, "
    "pooling and reduce op data and the per-channel int32 multiplier / shift arrays hold no "
    "pointers and do not change; parsed builtin options hold none either except fully "
    "connected's (32 B -> 24 B).",
    "- the fixed part (488 B on the host: MicroAllocator, its arena allocators, the greedy "
    "planner, the builtin-data allocator, subgraph allocations; the breakdown does not list it) "
    "is mostly pointers and size_t: the low end keeps it, the high end halves it.",
]


def write_test_data(rows: list[dict], path: Path, n: int = 8) -> None:
    """A few measured rows covering every input shape and the space's features (greedy cover)."""

    def feats(r: dict) -> set[str]:
        a = r["arch"]
        f = {f"shape={r['input_shape']}", f"head={a['head_pool']}"}
        f |= {f"block={b['kind']}" for b in a["blocks"]}
        f |= {f"down={b['downsample']}" for b in a["blocks"]}
        if a["head_units"]:
            f.add("hidden")
        if r["pruning"]["method"] != "none":
            f.add("pruned")
        return f

    chosen: list[dict] = []
    covered: set[str] = set()
    pool = list(rows)
    while pool and len(chosen) < n:
        best = max(pool, key=lambda r: (len(feats(r) - covered), -r["flash_bytes"]))
        chosen.append(best)
        covered |= feats(best)
        pool.remove(best)
    keep = ("arch", "input_shape", "pruning", "flash_bytes", "ram_bytes", "activation_bytes")
    doc = {
        "about": "Measured (stripped int8 .tflite, TFLM arena on a 64-bit host) by "
        "benchmarks/estimator_accuracy.py --write-test-data; arch is the effective arch.",
        "versions": versions(),
        "archs": [{k: r[k] for k in keep} for r in chosen],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {len(chosen)} measured archs covering {sorted(covered)} to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--fit-seed", type=int, default=0)
    ap.add_argument("--judge-seed", type=int, default=1)
    ap.add_argument("--fit-per-shape", type=int, default=12)
    ap.add_argument("--judge-per-shape", type=int, default=6)
    ap.add_argument("--max-params", type=int, default=40_000)
    ap.add_argument("--max-macs", type=int, default=4_000_000)
    ap.add_argument("--cache", type=Path, default=RESULTS / "estimator_accuracy_cache.json")
    ap.add_argument("--models-dir", type=Path, default=None, help="keep the stripped .tflite")
    ap.add_argument("--refit", action="store_true", help="print least-squares flash constants")
    ap.add_argument("--write-test-data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    machine = machine_info()
    start = time.perf_counter()
    cache = Cache(args.cache, args.models_dir)
    sets, skipped, failed = {}, {}, {}
    for what, seed, n in (
        ("fitted", args.fit_seed, args.fit_per_shape),
        ("judged", args.judge_seed, args.judge_per_shape),
    ):
        rows, skipped[what] = sample(seed, n, args.max_params, args.max_macs)
        sets[what], failed[what] = compare(rows, cache, what)
    fit_keys = {json.dumps(r["arch"], sort_keys=True) for r in sets["fitted"]}
    overlap = sum(json.dumps(r["arch"], sort_keys=True) in fit_keys for r in sets["judged"])
    doc = {
        "command": command_line(),
        "fit_seed": args.fit_seed,
        "judge_seed": args.judge_seed,
        "versions": versions(),
        "measure": MEASURE_VERSION,
        "limits": {"max_params": args.max_params, "max_macs": args.max_macs},
        "targets": {"flash_pct": TARGET_FLASH_PCT, "ram_pct": TARGET_RAM_PCT, "head": "exact"},
        "summary": {
            "fitted": summary(sets["fitted"]),
            "judged": summary(sets["judged"]),
            "judged_in_fitted": overlap,
            "targets_met": summary(sets["judged"])["flash"]["worst_abs_pct"] <= TARGET_FLASH_PCT
            and summary(sets["judged"])["ram"]["worst_abs_pct"] <= TARGET_RAM_PCT
            and summary(sets["judged"])["head_exact"] == len(sets["judged"]),
        },
        "pointer_share": pointer_share(sets["judged"]),
        "coverage": {k: coverage(v) for k, v in sets.items()},
        "skipped": skipped,
        "export_failed": failed,
        "cache": {"hits": cache.hits, "measured": cache.misses},
        "seconds": round(time.perf_counter() - start, 1),
        "machine": machine,
        "code_version": machine["code"],
        "fitted": sets["fitted"],
        "judged": sets["judged"],
    }
    if args.refit:
        doc["refit_flash_constants"] = refit(sets["fitted"])
        print("least-squares flash constants (fitted set):", doc["refit_flash_constants"])
    print(json.dumps({k: doc[k] for k in ("summary", "pointer_share", "skipped")}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(doc))
    if args.write_test_data:
        write_test_data(sets["fitted"] + sets["judged"], args.write_test_data)


if __name__ == "__main__":
    main()
