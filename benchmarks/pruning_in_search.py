"""Seed 004's claim, measured: does pruning inside the search find smaller models at equal
accuracy than architecture search alone?

Reads two ``search_quality.py`` results of the same regime and strategy — one on the default
space (pruning dimensions included), one with ``--pruning-methods none`` — and, from each run's
own database (the path the result records; ``search_quality.py`` leaves them under /tmp),
every completed feasible trial. For each seed and each accuracy level reached by both searches
it reports the smallest flash (and RAM) each found at that accuracy or better, and summarizes
the ratio; plus the mean hypervolume of both. Writes ``benchmarks/results/pruning_in_search.json``.

    .venv/bin/python benchmarks/search_quality.py --strategies bo --regimes b \\
        --pruning-methods none --out /tmp/sq/no_pruning.json
    .venv/bin/python benchmarks/search_quality.py --strategies bo --regimes b \\
        --out /tmp/sq/pruning.json
    .venv/bin/python benchmarks/pruning_in_search.py --with /tmp/sq/pruning.json \\
        --without /tmp/sq/no_pruning.json --regime b --strategy bo
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from _common import command_line, machine_info, rnd

RESULTS = Path(__file__).resolve().parent / "results"
#: Accuracy levels (int8, validation) at which the smallest models are compared.
LEVELS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8)


def trials_of(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's completed, feasible trials: objective accuracy, measured flash and RAM."""
    from sparsearch.storage import open_storage

    url = run["db"]
    folder = Path(url.removeprefix("sqlite:///")).parent
    storage = open_storage(url, folder / "artifacts")
    try:
        return [
            {
                "index": t.index,
                "accuracy": t.objective_accuracy,
                "flash_bytes": t.flash_bytes,
                "ram_bytes": t.ram_bytes,
                "pruning": t.pruning.get("method", "none"),
            }
            for t in storage.list_trials(run["job_id"], status="completed")
            if t.feasible and t.objective_accuracy is not None
        ]
    finally:
        storage.close()


def smallest_at(trials: list[dict[str, Any]], level: float, key: str) -> int | None:
    sizes = [t[key] for t in trials if t["accuracy"] >= level]
    return min(sizes) if sizes else None


def runs_of(path: Path, regime: str, strategy: str) -> dict[int, dict[str, Any]]:
    doc = json.loads(path.read_text())
    return {
        r["seed"]: r
        for r in doc["runs"]
        if r["regime"] == regime and r["strategy"] == strategy and r["status"] == "completed"
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--with", dest="with_", type=Path, required=True, help="default space run")
    ap.add_argument("--without", type=Path, required=True, help="--pruning-methods none run")
    ap.add_argument("--regime", default="b")
    ap.add_argument("--strategy", default="bo")
    ap.add_argument("--out", type=Path, default=RESULTS / "pruning_in_search.json")
    a = ap.parse_args()
    with_runs = runs_of(a.with_, a.regime, a.strategy)
    without_runs = runs_of(a.without, a.regime, a.strategy)
    seeds = sorted(set(with_runs) & set(without_runs))
    per_seed = []
    ratios: dict[str, list[float]] = {"flash_bytes": [], "ram_bytes": []}
    for seed in seeds:
        pruned, plain = trials_of(with_runs[seed]), trials_of(without_runs[seed])
        rows = []
        for level in LEVELS:
            row: dict[str, Any] = {"accuracy_at_least": level}
            for key in ratios:
                w, wo = smallest_at(pruned, level, key), smallest_at(plain, level, key)
                row[key] = {"with_pruning": w, "architecture_only": wo}
                if w is not None and wo is not None:
                    row[key]["ratio"] = rnd(w / wo, 3)
                    ratios[key].append(w / wo)
            rows.append(row)
        per_seed.append(
            {
                "seed": seed,
                "hypervolume": {
                    "with_pruning": with_runs[seed]["hypervolume"],
                    "architecture_only": without_runs[seed]["hypervolume"],
                },
                "pruned_trials": sum(t["pruning"] != "none" for t in pruned),
                "trials": len(pruned),
                "smallest": rows,
            }
        )
    hv = {
        k: rnd(statistics.mean(r["hypervolume"][k] for r in per_seed), 5) if per_seed else None
        for k in ("with_pruning", "architecture_only")
    }
    summary = {
        "mean_hypervolume": hv,
        "smallest_ratio_with_over_without": {
            k: {
                "pairs": len(v),
                "median": rnd(statistics.median(v), 3) if v else None,
                "with_smaller": sum(x < 1 for x in v),
                "equal": sum(x == 1 for x in v),
                "with_larger": sum(x > 1 for x in v),
            }
            for k, v in ratios.items()
        },
    }
    doc = {
        "command": command_line(),
        "machine": machine_info(),
        "inputs": {"with": str(a.with_), "without": str(a.without)},
        "regime": a.regime,
        "strategy": a.strategy,
        "levels": list(LEVELS),
        "seeds": per_seed,
        "summary": summary,
    }
    a.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
