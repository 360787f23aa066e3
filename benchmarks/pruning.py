"""Every pruning method on one Fashion-MNIST CNN, at 50 %, 75 % and 90 % reduction of its own
target quantity: accuracy, params, flash, RAM, MACs and wall time per run (issue: pruning
benchmark).

One baseline CNN of the default search space (``BASELINE``: conv 3x3 16 + pool, dsconv 3x3 32
+ pool, dsconv 3x3 64, global average pool, dense 32, classifier) is trained once
(``--epochs``, Adam, lr ``--lr``, batch 64, one torch thread, seed ``--seed``) on a stratified
``--train-limit`` subset of the training split (validation and test splits whole). Then, for
each method, knob setting and schedule below, and each reduction r:

- ``complexity`` (modes params, flops, memory; the method acts before training, so it is run
  the way a search runs it): ``space.pruned.effective_arch(BASELINE, PruningSpec("complexity",
  r, {"mode": m}))`` is built and trained from scratch for the baseline's epochs; the target
  quantity is the mode's complexity (r = the fraction of it removed);
- ``filter_norm``, ``relevance``, ``sparsity_induction`` (structured): a copy of the trained
  baseline pruned by ``worker.prune.prune_model`` to ``PruneTarget("params", (1 - r) x
  baseline params)`` and fine-tuned for ``--finetune-epochs`` (lr / 3);
- ``magnitude``, ``variational_dropout`` (unstructured): the same, to ``PruneTarget("ratio",
  r)``: r of the conv and dense weights zeroed (``target_quantity`` "nonzero_weights"; a
  params target counts every non-zero parameter, BatchNorm and biases included, which these
  methods never zero: on this baseline 90 % fewer is out of reach even at the deepest level).

Each method runs its default schedule; ``--iterative`` (on by default, off with ``--quick``)
adds ``iterative`` (3 steps) runs of magnitude and filter_norm at r = 0.75.

Writes ``--out`` (a document with the command, the machine and the config; the issue's list of
records is its ``records``) after every run, so a stopped run keeps what it did and
``--resume`` goes on from there; one progress line per run goes to stderr. At the end it adds
a ``summary`` and draws ``--plot`` (accuracy vs flash, one line per method).

    .venv/bin/python benchmarks/pruning.py --out benchmarks/results/pruning.json
    .venv/bin/python benchmarks/pruning.py --quick          # smoke run, /tmp/pruning_quick.*
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

from _common import command_line, load_average, machine_info, rnd
from _pruning_plot import plot

REDUCTIONS = (0.5, 0.75, 0.9)
QUICK = {"train_limit": 2000, "epochs": 1, "finetune_epochs": 0.5, "reductions": (0.5,)}
ITERATIVE = (("filter_norm", 0.75), ("magnitude", 0.75))  # (method, reduction)
ITERATIVE_STEPS = 3
#: The knob recorded as a run's ``mode`` (a method's choice knob), where it has one.
MODE_KNOB = {
    "complexity": "mode",
    "filter_norm": "p",
    "magnitude": "scope",
    "relevance": "criterion",
}
COMPLEXITY_MODES = ("params", "flops", "memory")
#: Numbers a run record carries from the measured model (``worker.prune.measure``).
MEASURED = (
    "accuracy",
    "int8_accuracy",
    "params",
    "nonzero_params",
    "flash_bytes",
    "nnz_flash_bytes",
    "ram_bytes",
    "macs",
    "zero_fraction",
)


def baseline_arch() -> Any:
    from sparsearch.space.spec import ArchSpec, BlockSpec

    return ArchSpec(
        input_shape=(1, 28, 28),
        num_classes=10,
        blocks=(
            BlockSpec("conv", 3, 16, "pool"),
            BlockSpec("dsconv", 3, 32, "pool"),
            BlockSpec("dsconv", 3, 64, "none"),
        ),
        head_pool="gap",
        head_units=32,
    )


def weight_counts(model: Any) -> dict[str, int]:
    """Conv and dense weights (biases and BatchNorm apart), and how many are not zero."""
    from sparsearch.pruning.stats import weight_layers

    total = nonzero = 0
    for _, m in weight_layers(model):
        total += m.weight.numel()
        nonzero += int((m.weight != 0).sum())
    return {"weights": total, "nonzero_weights": nonzero}


def widths(arch: Any) -> dict[str, Any]:
    return {"channels": [b.channels for b in arch.blocks], "head_units": arch.head_units}


# -- the plan ------------------------------------------------------------------------------------


def plan(reductions: tuple[float, ...], iterative: bool) -> list[dict[str, Any]]:
    """Every run: method, options (knobs + schedule), target quantity, reduction."""
    from sparsearch.vocabulary import PRUNING_METHODS

    runs: list[dict[str, Any]] = []

    def add(method: str, options: dict[str, Any], reduction: float) -> None:
        info = PRUNING_METHODS[method]
        schedule = options.get("schedule", info.schedules[0])
        knob = MODE_KNOB.get(method)
        mode = options.get(knob, info.knob(knob).default) if knob else None
        if method == "complexity":
            quantity = mode
        else:
            quantity = "params" if info.structured else "nonzero_weights"
        runs.append(
            {
                "method": method,
                "mode": mode,
                "schedule": schedule,
                "steps": options.get("steps", ITERATIVE_STEPS) if schedule == "iterative" else 1,
                "reduction": reduction,
                "target_quantity": quantity,
                "options": {"schedule": schedule, **options},
            }
        )

    for r in reductions:
        for m in COMPLEXITY_MODES:
            add("complexity", {"mode": m}, r)
    for method in ("filter_norm", "relevance", "sparsity_induction"):
        for r in reductions:
            add(method, {}, r)
    for method in ("magnitude", "variational_dropout"):
        for r in reductions:
            add(method, {}, r)
    for r in reductions:  # one threshold over all layers: small layers are not emptied first
        add("magnitude", {"scope": "global"}, r)
    if iterative:
        for method, r in ITERATIVE:
            add(method, {"schedule": "iterative", "steps": ITERATIVE_STEPS}, r)
    return runs


def key_of(rec: dict[str, Any]) -> tuple:
    return (rec["method"], rec["mode"], rec["schedule"], rec["reduction"])


# -- runs ----------------------------------------------------------------------------------------


class Bench:
    """The data, the trained baseline and its measurements; runs one planned pruning."""

    def __init__(self, a: argparse.Namespace, log: Any) -> None:
        from sparsearch.datasets import load_dataset
        from sparsearch.space.spec import TrainSpec
        from sparsearch.worker.prune import prepare

        self.a, self.log = a, log
        self.arch = baseline_arch()
        self.train = TrainSpec(
            lr=a.lr,
            epochs=a.epochs,
            finetune_epochs=a.finetune_epochs,
            batch_size=a.batch_size,
            seed=a.seed,
        )
        self.data = load_dataset("fashion-mnist", train_limit=a.train_limit, seed=a.seed)
        self.inputs = prepare(self.data, tuple(self.arch.model_input_shape[1:]))
        self.model: Any = None
        self.base: dict[str, Any] = {}

    def fit(self, arch: Any) -> tuple[Any, float]:
        """``arch`` built and trained from scratch as a search trial is; (model, seconds)."""
        from sparsearch.space.builder import build_model
        from sparsearch.worker.train import set_determinism, train_epochs

        t = self.train
        start = time.perf_counter()
        set_determinism(t.seed, 1)
        model = build_model(arch)
        train_epochs(
            model,
            self.inputs[0],
            self.data.y_train,
            epochs=t.epochs,
            lr=t.lr,
            batch_size=t.batch_size,
            seed=t.seed,
        )
        return model, time.perf_counter() - start

    def measure(self, model: Any, arch: Any) -> dict[str, Any]:
        from sparsearch.worker.prune import measure

        doc, _ = measure(model, self.data, self.inputs, arch)
        return doc

    def run_baseline(self) -> dict[str, Any]:
        from sparsearch.space.complexity import complexity

        self.model, seconds = self.fit(self.arch)
        start = time.perf_counter()
        self.base = {**self.measure(self.model, self.arch), **weight_counts(self.model)}
        rec = {
            "method": "none",
            "mode": None,
            "schedule": None,
            "steps": None,
            "reduction": 0.0,
            "target_quantity": None,
            "options": {},
            **{k: self.base[k] for k in MEASURED},
            "weights": self.base["weights"],
            "nonzero_weights": self.base["nonzero_weights"],
            "level": 0.0,
            "wall_seconds": round(seconds, 2),
            "measure_seconds": round(time.perf_counter() - start, 2),
            "arch": widths(self.arch),
            "complexity": {m: complexity(self.arch, m) for m in COMPLEXITY_MODES},
            "status": "ok",
        }
        self.base_complexity = rec["complexity"]
        return rec

    def run(self, run: dict[str, Any]) -> dict[str, Any]:
        """One planned run, measured; a run the method cannot do is recorded as failed."""
        from sparsearch.errors import SparsearchError

        rec = dict(run)
        try:
            if run["method"] == "complexity":
                rec.update(self._complexity(run))
            else:
                rec.update(self._prune(run))
            rec["status"] = "ok"
        except SparsearchError as e:
            rec.update(status="failed", error=f"{type(e).__name__}: {e}")
        return rec

    def _complexity(self, run: dict[str, Any]) -> dict[str, Any]:
        from sparsearch.space.complexity import complexity
        from sparsearch.space.pruned import effective_arch
        from sparsearch.space.spec import PruningSpec

        mode, r = run["mode"], run["reduction"]
        start = time.perf_counter()
        spec = PruningSpec("complexity", r, {"mode": mode})
        arch = effective_arch(self.arch, spec)
        derived = time.perf_counter() - start
        model, trained = self.fit(arch)
        start = time.perf_counter()
        after = {**self.measure(model, arch), **weight_counts(model)}
        reached = complexity(arch, mode)
        base = self.base_complexity[mode]
        return {
            **{k: after[k] for k in (*MEASURED, "weights", "nonzero_weights")},
            "level": r,
            "target_limit": round((1 - r) * base, 1),
            "target_value": reached,
            "reduction_reached": rnd(1 - reached / base),
            "wall_seconds": round(derived + trained, 2),
            "measure_seconds": round(time.perf_counter() - start, 2),
            "arch": widths(arch),
            "complexity": {m: complexity(arch, m) for m in COMPLEXITY_MODES},
        }

    def _prune(self, run: dict[str, Any]) -> dict[str, Any]:
        from sparsearch.space.spec import PruningSpec
        from sparsearch.worker.prune import PruneTarget, prune_model

        r = run["reduction"]
        if run["target_quantity"] == "params":
            base_value = self.base["params"]
            target = PruneTarget("params", (1 - r) * base_value)
        else:  # unstructured: the share of weights zeroed is the level itself
            base_value = self.base["weights"]
            target = PruneTarget("ratio", r)
        phases: dict[str, float] = {}

        def progress(phase: str) -> None:
            now = time.perf_counter()
            if phase == "find the level":
                phases.setdefault("find", now)
            elif phase.startswith("prune ("):
                phases.setdefault("prune", now)
            elif phase == "measure after":
                phases.setdefault("measure", now)
            if self.a.verbose:
                print(f"    {phase}", file=self.log, flush=True)

        start = time.perf_counter()
        outcome = prune_model(
            copy.deepcopy(self.model),
            self.data,
            PruningSpec(run["method"], 0.0, run["options"]),
            target,
            arch=self.arch,
            train=self.train,
            progress=progress,
            measure_before=False,
        )
        end = time.perf_counter()
        after = outcome.after
        counts = weight_counts(outcome.model)
        value = after["params"] if run["target_quantity"] == "params" else counts["nonzero_weights"]
        # find the level -> prune (schedule) -> measure after
        search_start, prune_start, measure_start = (
            phases.get(p, start) for p in ("find", "prune", "measure")
        )
        if measure_start == start:  # no "measure after" phase heard: the whole call
            measure_start = end
        return {
            **{k: after[k] for k in MEASURED},
            "level": rnd(outcome.level),
            **counts,
            "target_limit": round((1 - r) * base_value, 1),
            "target_value": value,
            "reduction_reached": rnd(1 - value / base_value),
            "wall_seconds": round(measure_start - search_start, 2),
            "level_search_seconds": round(prune_start - search_start, 2),
            "measure_seconds": round(end - measure_start, 2),
            "arch": widths(outcome.arch) if outcome.arch is not None else None,
            "engine_notes": outcome.notes,
        }


# -- summary -------------------------------------------------------------------------------------


def label_of(rec: dict[str, Any]) -> str:
    parts = [rec["method"]]
    if rec["mode"] is not None:
        knob = MODE_KNOB.get(rec["method"], "mode")
        parts.append(str(rec["mode"]) if knob == "mode" else f"{knob}={rec['mode']}")
    from sparsearch.vocabulary import PRUNING_METHODS

    info = PRUNING_METHODS.get(rec["method"])
    if info is not None and rec["schedule"] != info.schedules[0]:
        parts.append(str(rec["schedule"]))
    return " ".join(parts)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy drops vs the baseline per method and reduction, and the numbers the issue's
    claims are checked on (no verdicts: numbers only)."""
    base = next((r for r in records if r["method"] == "none"), None)
    if base is None:
        return {}
    ok = [r for r in records if r["method"] != "none" and r.get("status") == "ok"]
    per_method: dict[str, dict[str, Any]] = {}
    for r in ok:
        entry = per_method.setdefault(label_of(r), {"target_quantity": r["target_quantity"]})
        entry[str(r["reduction"])] = {
            "accuracy": r["accuracy"],
            "accuracy_drop": rnd(base["accuracy"] - r["accuracy"]),
            "int8_accuracy_drop": rnd(base["int8_accuracy"] - r["int8_accuracy"]),
            "reduction_reached": r.get("reduction_reached"),
            "params": r["params"],
            "flash_bytes": r["flash_bytes"],
            "nnz_flash_bytes": r["nnz_flash_bytes"],
            "ram_bytes": r["ram_bytes"],
            "macs": r["macs"],
            "wall_seconds": r["wall_seconds"],
        }
    reductions = sorted({r["reduction"] for r in ok})
    ranking = {
        str(x): [
            [label_of(r), r["accuracy"]]
            for r in sorted(
                (r for r in ok if r["reduction"] == x), key=lambda r: -float(r["accuracy"])
            )
        ]
        for x in reductions
    }

    def find(method: str, reduction: float, **match: Any) -> dict[str, Any] | None:
        for r in ok:
            same = r["method"] == method and r["reduction"] == reduction
            if same and all(r.get(k) == v for k, v in match.items()):
                return r
        return None

    complexity_vs_baseline = {}
    for mode in COMPLEXITY_MODES:
        for x in reductions:
            r = find("complexity", x, mode=mode)
            if r is not None:
                complexity_vs_baseline[f"{mode}@{x}"] = {
                    "accuracy": r["accuracy"],
                    "baseline_accuracy": base["accuracy"],
                    "accuracy_drop": rnd(base["accuracy"] - r["accuracy"]),
                    "params": r["params"],
                    "params_fraction_of_baseline": rnd(r["params"] / base["params"]),
                }
    wall = {}
    for x in reductions:
        fn = find("filter_norm", x, schedule="one_shot")
        for mode in COMPLEXITY_MODES:
            c = find("complexity", x, mode=mode)
            if fn is not None and c is not None:
                wall[f"{mode}@{x}"] = {
                    "train_once_seconds": c["wall_seconds"],
                    "filter_norm_one_shot_seconds": fn["wall_seconds"],
                    # what filter_norm needs first: the trained baseline
                    "filter_norm_plus_baseline_training_seconds": round(
                        fn["wall_seconds"] + base["wall_seconds"], 2
                    ),
                    "ratio": rnd(c["wall_seconds"] / max(fn["wall_seconds"], 1e-9), 3),
                }
    failed = [
        {"method": r["method"], "mode": r["mode"], "reduction": r["reduction"], "error": r["error"]}
        for r in records
        if r.get("status") == "failed"
    ]
    return {
        "baseline": {k: base[k] for k in ("accuracy", "int8_accuracy", "params", "flash_bytes")},
        "per_method": per_method,
        "ranking_by_accuracy": ranking,
        "complexity_vs_baseline": complexity_vs_baseline,
        "train_once_vs_filter_norm_one_shot_wall": wall,
        "failed": failed,
    }


NOTES = [
    "records: the issue's list of run records (one per method, mode, schedule and reduction, "
    "plus the baseline, method 'none'); the rest of the document is provenance and a summary.",
    "accuracy: float top-1 on the whole Fashion-MNIST test split (10,000 images); "
    "int8_accuracy: the int8 model on TFLite Micro over a fixed sample of the test split "
    "(worker.deploy.INT8_EVAL_SAMPLES); flash_bytes: the stripped int8 .tflite (dense); "
    "ram_bytes: TFLM's arena; nnz_flash_bytes: the sparse accounting (non-zero int8 weights + "
    "bitmap + int32 biases), the only flash unstructured methods cut; macs per image.",
    "complexity runs the way a search runs it: effective_arch(baseline, PruningSpec("
    "'complexity', r, {'mode': m})) built and trained from scratch for the baseline's epochs "
    "(not train_once on the trained torch model through prune_model); its target quantity is "
    "the mode's complexity and reduction the fraction of it removed (target_value: the "
    "complexity reached).",
    "filter_norm, relevance, sparsity_induction: prune_model on a copy of the trained baseline "
    "to PruneTarget('params', (1 - r) x baseline params), then fine-tuned (lr / 3); magnitude "
    "and variational_dropout: PruneTarget('ratio', r), r of the conv and dense weights zeroed "
    "(target_quantity 'nonzero_weights'; not a params target, which counts non-zero "
    "parameters with the BatchNorm and bias ones these methods never zero: the baseline "
    "record's params - weights; on this baseline 90 % fewer is out of reach even at the "
    "deepest level, 95 % of the weights). target_limit: the bound that reduction means; "
    "target_value: what the pruned model measured; reduction_reached = 1 - target_value / "
    "baseline value.",
    "wall_seconds: complexity: deriving the architecture + training it from scratch; the "
    "others: prune_model's level search + pruning + fine-tuning (its schedule), measuring "
    "excluded (measure_seconds; level_search_seconds is part of wall_seconds); baseline: its "
    "training. One torch thread; the machine is shared (see machine.load_average_*), so wall "
    "times include contention.",
    "mode: the method's choice knob where it has one (complexity mode, filter_norm p, "
    "magnitude scope, relevance criterion), else null; options: the knobs passed (others at "
    "their defaults).",
    "the plot's x axis is flash_bytes for structured methods and nnz_flash_bytes for "
    "unstructured ones (legend: 'sparse flash'); their dense file does not shrink.",
]


def write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2000 images, 1 epoch, r=0.5")
    p.add_argument("--train-limit", type=int, default=None, help="default 10000 (quick 2000)")
    p.add_argument("--epochs", type=int, default=None, help="baseline epochs, default 6 (quick 1)")
    p.add_argument("--finetune-epochs", type=float, default=None, help="default 2 (quick 0.5)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reductions", type=float, nargs="+", default=None)
    p.add_argument(
        "--iterative",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also iterative (3 steps) magnitude and filter_norm at 0.75 (default: on, "
        "off with --quick)",
    )
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results/pruning.json")
    p.add_argument("--plot", type=Path, default=None, help="default: --out with .png")
    p.add_argument("--resume", action="store_true", help="skip the runs --out already has")
    p.add_argument("--plot-only", action="store_true", help="redraw --plot from --out")
    p.add_argument("--verbose", "-v", action="store_true", help="every run's phases")
    a = p.parse_args()
    q = a.quick
    a.train_limit = a.train_limit or (QUICK["train_limit"] if q else 10000)
    a.epochs = a.epochs or (QUICK["epochs"] if q else 6)
    a.finetune_epochs = a.finetune_epochs if a.finetune_epochs is not None else (
        QUICK["finetune_epochs"] if q else 2.0
    )  # fmt: skip
    reductions = tuple(a.reductions or (QUICK["reductions"] if q else REDUCTIONS))
    iterative = (not q) if a.iterative is None else a.iterative
    results = Path(__file__).resolve().parent / "results"
    a.out = a.out or (Path("/tmp/pruning_quick.json") if q else results / "pruning.json")
    a.plot = a.plot or a.out.with_suffix(".png")
    log = sys.stderr

    if a.plot_only:
        plot(json.loads(a.out.read_text()), a.plot, label_of)
        return

    config = {
        "dataset": "fashion-mnist",
        "train_limit": a.train_limit,
        "epochs": a.epochs,
        "finetune_epochs": a.finetune_epochs,
        "finetune_lr": a.lr / 3,
        "lr": a.lr,
        "batch_size": a.batch_size,
        "seed": a.seed,
        "threads": 1,
        "reductions": list(reductions),
        "iterative": iterative,
        "iterative_steps": ITERATIVE_STEPS,
        "quick": q,
        "baseline_arch": baseline_arch().to_dict(),
    }
    old: dict[str, Any] | None = None
    if a.resume and a.out.exists():
        old = json.loads(a.out.read_text())
        if old.get("config") != config:
            raise SystemExit(f"--resume: {a.out} was written with another config; drop --resume")
    doc: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_info(),
        "config": config,
        "records": [],
        "notes": NOTES,
    }
    if old is not None:
        doc["resumed_from"] = {"command": old.get("command"), "machine": old.get("machine")}
    done = {key_of(r): r for r in (old or {}).get("records", [])}
    start = time.monotonic()

    bench = Bench(a, log)
    print(
        f"baseline: {a.train_limit} images, {a.epochs} epoch(s), "
        f"{widths(baseline_arch())}; {len(plan(reductions, iterative))} runs to go",
        file=log,
        flush=True,
    )
    base = bench.run_baseline()
    old_base = done.get(key_of(base))
    if old_base is not None:  # retrained (deterministic): keep the record its runs started from
        same = all(old_base.get(k) == base[k] for k in MEASURED)
        if same:
            base = old_base
        else:
            print(
                f"warning: the retrained baseline ({_line(base)}) differs from the recorded "
                f"one ({_line(old_base)}); the resumed runs started from the recorded one",
                file=log,
                flush=True,
            )
            doc["notes"] = [
                *NOTES,
                "resumed: the retrained baseline differed from the recorded one (records "
                "before the resume started from the recorded baseline, the others from it)",
            ]
    doc["records"].append(base)
    print(_line(base), file=log, flush=True)
    write(a.out, doc)
    runs = plan(reductions, iterative)
    for i, run in enumerate(runs, 1):
        if key_of(run) in done:
            doc["records"].append(done[key_of(run)])
            continue
        rec = bench.run(run)
        doc["records"].append(rec)
        print(f"[{i}/{len(runs)}] {_line(rec)}", file=log, flush=True)
        doc["machine"]["load_average_at_end"] = load_average()
        doc["wall_seconds"] = round(time.monotonic() - start, 1)
        write(a.out, doc)
    doc["machine"]["load_average_at_end"] = load_average()
    doc["wall_seconds"] = round(time.monotonic() - start, 1)
    doc["summary"] = summarize(doc["records"])
    write(a.out, doc)
    plot(doc, a.plot, label_of)
    print(f"wrote {a.out} and {a.plot} ({doc['wall_seconds']} s)", file=log, flush=True)


def _line(rec: dict[str, Any]) -> str:
    what = f"{label_of(rec)} r={rec['reduction']:g}"
    if rec.get("status") != "ok":
        return f"{what}: FAILED {rec.get('error')}"
    return (
        f"{what}: acc {rec['accuracy']:.4f} int8 {rec['int8_accuracy']:.4f} "
        f"params {rec['params']} nnz {rec['nonzero_params']} flash {rec['flash_bytes']} "
        f"nnz_flash {rec['nnz_flash_bytes']} ram {rec['ram_bytes']} macs {rec['macs']} "
        f"{rec['wall_seconds']:.1f} s"
    )


if __name__ == "__main__":
    main()
