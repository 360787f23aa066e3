"""Would the early-stopping rule have stopped the right trials? An offline replay on real curves
(issue 22), before the rule is turned on by default.

Runs searches with early stopping OFF (every trial trains to the end and keeps its learning
curve), then replays ``search/stopping.py``'s rule over them in trial order: when trial *i*
reaches a checkpoint, the front is that of the trials before *i* (their final float curve
accuracy, measured flash and RAM) and the gains are those of the completed trials before *i*.
Reported per search and per ``--margins`` value (the rule's ``margin``: accuracy added to its
optimism, e.g. for the gap between the float curve and the int8 accuracy the front is ranked
by):

- ``rank_correlation``: Spearman's rho between a trial's float curve accuracy at each
  checkpoint and at the end (is the schedule's early accuracy informative?);
- ``would_stop``: trials the rule stops, at which checkpoint, and the epochs that saves (share
  of all epochs trained);
- ``false_stops``: stopped trials that are on the search's final front (the issue's target:
  at most 10 % of the stopped ones);
- ``regret``: for each false stop, how much higher its final accuracy was than the best front
  trial that dominated it at the checkpoint.

    .venv/bin/python benchmarks/early_stop_replay.py --workdir runs/early_stop_replay \\
        --out benchmarks/results/early_stop_replay.json

``--workdir`` keeps the database: a search already completed there is reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import command_line, machine_info, rnd

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))

#: name -> (dataset, options); each with 9 epochs so checkpoints 1 and 3 exist.
SEARCHES: dict[str, tuple[str, list[str]]] = {
    "fashion-16k-6k": (
        "fashion-mnist",
        ["--train-limit", "10000", "--flash", "16KiB", "--ram", "6KiB"],
    ),
    "fashion-64k-64k": (
        "fashion-mnist",
        ["--train-limit", "10000", "--flash", "64000", "--ram", "64000"],
    ),
}


def run_search(name: str, dataset: str, options: list[str], a: argparse.Namespace) -> dict:
    db = f"sqlite:///{a.workdir / 'runs.db'}"
    cmd = [
        SPARSEARCH, "search", "--dataset", dataset, *options, "--trials", str(a.trials),
        "--epochs", str(a.epochs), "--parallel", "2", "--seed", str(a.seed), "--target", "tflm",
        "--early-stopping", "off", "--db", db, "--artifacts", str(a.workdir / "artifacts"),
        "--json",
    ]  # fmt: skip
    cached = a.workdir / f"{name}.json"
    if cached.exists():
        doc = json.loads(cached.read_text())
        if doc.get("command") == cmd and doc.get("status") == "completed":
            return doc
    start = time.perf_counter()
    with (a.workdir / f"{name}.log").open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: search failed (exit {proc.returncode}); see {name}.log")
    doc = json.loads(proc.stdout)
    doc["command"], doc["wall_seconds"] = cmd, round(time.perf_counter() - start, 1)
    cached.write_text(json.dumps(doc))
    return doc


def _spearman(x: list[float], y: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(x) < 3:
        return None
    rho = spearmanr(x, y).statistic
    return None if rho != rho else float(rho)  # NaN: constant input


def replay(trials: list[dict], epochs: float, margin: float = 0.0) -> dict[str, Any]:
    from sparsearch.search.stopping import (
        Completed,
        FrontPoint,
        Running,
        StopRule,
        cost_is_exact,
        decide,
    )

    rule = StopRule(margin=margin)
    done = sorted(
        (t for t in trials if t["status"] == "completed" and t.get("curve")),
        key=lambda t: t["index"],
    )
    final = {t["index"]: t["curve"][-1]["accuracy"] for t in done}
    correlations = {}
    for rung in rule.rungs(epochs):
        pairs = [
            (p["accuracy"], final[t["index"]])
            for t in done
            for p in t["curve"]
            if p.get("phase") == "train" and abs(p["epoch"] - rung) < 1e-6
        ]
        correlations[f"{rung:g}"] = rnd(_spearman(*map(list, zip(*pairs, strict=True))), 3)
    stops = []
    for i, t in enumerate(done):
        before = done[:i]
        front = _front(before)
        completed = [Completed(b["curve"], _prunes(b)) for b in before]
        for p in t["curve"]:
            if p.get("phase") != "train" or not rule.is_rung(p["epoch"], epochs):
                continue
            d = decide(
                rule,
                Running(
                    epoch=p["epoch"], accuracy=p["accuracy"], flash=t["flash_bytes"],
                    ram=t["ram_bytes"], epochs=epochs, pruned=_prunes(t),
                    exact_cost=cost_is_exact(t.get("pruning") or {}),
                ),  # fmt: skip
                [FrontPoint(f["index"], final[f["index"]], f["flash_bytes"], f["ram_bytes"])
                 for f in front],
                completed,
            )  # fmt: skip
            if d.stop:
                by = final[d.by] if d.by is not None else None
                stops.append(
                    {
                        "index": t["index"],
                        "epoch": p["epoch"],
                        "accuracy_then": rnd(p["accuracy"], 4),
                        "final_accuracy": rnd(final[t["index"]], 4),
                        "on_final_front": bool(t.get("pareto")),
                        "dominated_by": d.by,
                        "regret": rnd(final[t["index"]] - by, 4) if by is not None else None,
                    }
                )
                break
    trained_epochs = sum(_epochs(t, epochs) for t in done)
    saved = sum(epochs - s["epoch"] for s in stops)
    false = [s for s in stops if s["on_final_front"]]
    return {
        "trials": len(done),
        "rank_correlation": correlations,
        "would_stop": len(stops),
        "epochs_saved_share": rnd(saved / trained_epochs, 3) if trained_epochs else None,
        "false_stops": len(false),
        "false_stop_rate": rnd(len(false) / len(stops), 3) if stops else None,
        "stops": stops,
    }


def _prunes(t: dict) -> bool:
    return (t.get("pruning") or {}).get("method", "none") != "none"


def _epochs(t: dict, epochs: float) -> float:
    return max((p["epoch"] for p in t["curve"] if p.get("phase") == "train"), default=epochs)


def _front(trials: list[dict]) -> list[dict]:
    """The non-dominated feasible trials by (final float curve accuracy, flash, RAM), as the
    search ranks its front (``search.pareto.pareto_indices``)."""
    from sparsearch.search.pareto import Point, pareto_indices

    kept = [
        t
        for t in trials
        if t.get("feasible") and t.get("flash_bytes") is not None and t.get("ram_bytes") is not None
    ]
    points = [
        Point(t["index"], t["curve"][-1]["accuracy"], t["flash_bytes"], t["ram_bytes"])
        for t in kept
    ]
    on = set(pareto_indices(points))
    return [t for t in kept if t["index"] in on]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("runs/early_stop_replay"))
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="run only these searches")
    ap.add_argument("--margins", type=float, nargs="*", default=[0.0, 0.01, 0.02, 0.03])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {}
    for name, (dataset, options) in SEARCHES.items():
        if a.only and name not in a.only:
            continue
        doc = run_search(name, dataset, options, a)
        results[name] = {"job_id": doc["job_id"], "wall_seconds": doc.get("wall_seconds")}
        for margin in a.margins:
            r = replay(doc["trials"], a.epochs, margin)
            results[name][f"margin {margin:g}"] = r
            print(
                f"{name} (margin {margin:g}): {r['trials']} trials, rho {r['rank_correlation']}, "
                f"would stop {r['would_stop']} (saving {r['epochs_saved_share']} of the epochs), "
                f"false stops {r['false_stops']}",
                flush=True,
            )
    doc = {
        "command": command_line(),
        "config": {"trials": a.trials, "epochs": a.epochs, "seed": a.seed, "target": "tflm"},
        "searches": results,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "machine": machine_info(),
    }
    if a.out:
        a.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
