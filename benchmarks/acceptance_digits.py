"""The core issue's acceptance run: the README search command with --json for several seeds.

For each seed: exactly 8 trained trials, >= 1 feasible trial with accuracy >= 0.90, every front
trial within both limits and non-dominated, every trial stored in the database; wall time.

    .venv/bin/python benchmarks/acceptance_digits.py --seeds 0 1 2 \
        --out benchmarks/results/acceptance_digits.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLASH, RAM, TRIALS = 24 * 1024, 6 * 1024, 8
FRONT_KEYS = ("index", "accuracy", "test_accuracy", "flash_bytes", "ram_bytes", "macs", "pruning")


def dominated(t: dict, others: list[dict]) -> bool:
    def dominates(a: dict, b: dict) -> bool:
        no_worse = (
            a["accuracy"] >= b["accuracy"]
            and a["flash_bytes"] <= b["flash_bytes"]
            and a["ram_bytes"] <= b["ram_bytes"]
        )
        return no_worse and (a["accuracy"], -a["flash_bytes"], -a["ram_bytes"]) != (
            b["accuracy"],
            -b["flash_bytes"],
            -b["ram_bytes"],
        )

    return any(dominates(o, t) for o in others)


def run_seed(seed: int, workdir: Path) -> dict:
    db = f"sqlite:///{workdir / f'seed{seed}.db'}"
    cmd = [
        str(Path(sys.executable).with_name("sparsearch")), "search", "--target", "tflm",
        "--dataset", "digits", "--flash", "24KiB", "--ram", "6KiB",
        "--trials", str(TRIALS), "--parallel", "2", "--epochs", "6",
        "--db", db, "--artifacts", str(workdir / "artifacts"), "--seed", str(seed), "--json",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    doc = json.loads(proc.stdout)  # fails loudly if stdout is not exactly one JSON document
    trials = doc["trials"]
    trained = [t for t in trials if t["status"] in ("completed", "failed")]
    completed = [t for t in trials if t["status"] == "completed" and t["feasible"]]
    front = doc["pareto"]

    from sparsearch.storage import open_storage

    storage = open_storage(db, workdir / "artifacts")
    stored = [t.index for t in storage.list_trials(doc["job_id"])]
    checks = {
        "exit_code_0": proc.returncode == 0,
        "exactly_8_trained": len(trained) == TRIALS,
        "feasible_accuracy_ge_0.90": any(t["accuracy"] >= 0.90 for t in completed),
        "front_within_limits": all(
            t["flash_bytes"] <= FLASH and t["ram_bytes"] <= RAM for t in front
        ),
        "front_non_dominated": all(not dominated(t, completed) for t in front),
        "front_non_empty": bool(front),
        "every_trial_stored": stored == [t["index"] for t in trials],
    }
    return {
        "seed": seed,
        "wall_seconds": round(wall, 1),
        "passed": all(checks.values()),
        "checks": checks,
        "trained": len(trained),
        "infeasible": sum(t["status"] == "infeasible" for t in trials),
        "best_accuracy": doc["best_accuracy"],
        "hypervolume": doc["hypervolume"],
        "generators": sorted({t["generator"] for t in trials}),
        "front": [{k: t[k] for k in FRONT_KEYS} for t in front],
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sparsearch-accept-"))
    results = [run_seed(s, workdir) for s in args.seeds]
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "runs": results,
        "all_passed": all(r["passed"] for r in results),
    }
    text = json.dumps(doc, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    sys.exit(0 if doc["all_passed"] else 1)


if __name__ == "__main__":
    main()
