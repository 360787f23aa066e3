"""From a search to the model you ship, on Fashion-MNIST under 16 KiB flash / 6 KiB RAM as
measured (issue 11's target: >= 86% int8 test accuracy on TFLite Micro over the whole 10,000
image test split, within both limits as measured).

Runs the two commands a user would, as subprocesses of the installed CLI:

    sparsearch search --dataset fashion-mnist --train-limit N --flash 16KiB --ram 6KiB ...
    sparsearch finalize JOB --epochs E          (the front trial chosen by int8 validation
                                                 accuracy, retrained on train + validation)

and records both commands, the finalized trial's measured numbers and the ``.tflite`` it
measured (``--out`` with ``.tflite`` for ``.json``).

    python benchmarks/finalize_fashion.py --out benchmarks/results/finalize_fashion_16k_6k.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import command_line, machine_info

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))


def run(args: list[str], log: Path) -> dict:
    """Run the CLI with --json; its stderr (progress) goes to ``log``; returns the document."""
    with log.open("a") as err:
        err.write(f"$ {shlex.join(args)}\n")
        err.flush()
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{args[1]} failed (exit {proc.returncode}); see {log}")
    return json.loads(proc.stdout)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flash", default="16KiB")
    p.add_argument("--ram", default="6KiB")
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--epochs", type=int, default=4, help="epochs per search trial")
    p.add_argument("--train-limit", type=int, default=12000)
    p.add_argument("--final-epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=None, help="keep the database here")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()

    work = a.workdir or Path(tempfile.mkdtemp(prefix="finalize-fashion-"))
    work.mkdir(parents=True, exist_ok=True)
    db, artifacts, log = f"sqlite:///{work / 'runs.db'}", work / "artifacts", work / "log.txt"
    info = machine_info()
    start = time.monotonic()
    search = [
        SPARSEARCH, "search", "--target", "tflm",  # as the committed run (before the C target)
        "--dataset", "fashion-mnist", "--train-limit", str(a.train_limit),
        "--flash", a.flash, "--ram", a.ram, "--trials", str(a.trials),
        "--parallel", str(a.parallel), "--epochs", str(a.epochs), "--seed", str(a.seed),
        "--db", db, "--artifacts", str(artifacts), "--json",
    ]  # fmt: skip
    doc = run(search, log)
    searched = time.monotonic()
    job_id = doc["job_id"]
    finalize = [
        SPARSEARCH, "finalize", job_id, "--epochs", str(a.final_epochs), "--db", db, "--json",
    ]  # fmt: skip
    fdoc = run(finalize, log)
    done = time.monotonic()
    (entry,) = fdoc["finalized"]
    final = entry["final"]
    tflite_out = a.out.with_suffix(".tflite")
    pull = [SPARSEARCH, "pull", job_id, "-o", str(tflite_out), "--db", db]
    subprocess.run(pull, check=True, capture_output=True)
    limits = doc["limits"]
    trained = [t for t in doc["trials"] if t["status"] == "completed"]
    result = {
        "command": command_line(),
        "commands": [shlex.join(search), shlex.join(finalize), shlex.join(pull)],
        "job_id": job_id,
        "trial": entry["index"],
        "limits": {"flash_bytes": limits["flash_bytes"], "ram_bytes": limits["ram_bytes"]},
        "flash_bytes": final["flash_bytes"],
        "ram_bytes": final["ram_bytes"],
        "within_limits": final["flash_bytes"] <= limits["flash_bytes"]
        and final["ram_bytes"] <= limits["ram_bytes"],
        "final_int8_test_accuracy": final["int8_test_accuracy"],
        "final_float_test_accuracy": final["test_accuracy"],
        "test_images": final["deployment"]["int8_eval_images"]["test"],
        "target_met": final["int8_test_accuracy"] >= 0.86
        and final["flash_bytes"] <= limits["flash_bytes"]
        and final["ram_bytes"] <= limits["ram_bytes"],
        "epochs": final["epochs"],
        "wall_seconds": round(done - start, 1),
        "search_seconds": round(searched - start, 1),
        "finalize_seconds": round(done - searched, 1),
        "search": {
            "trials_completed": len(trained),
            "over_limit_as_measured": sum(1 for t in trained if not t["feasible"]),
            "best_int8_val_accuracy": doc["best_accuracy"],
            "front": [
                {
                    k: t[k]
                    for k in (
                        "index",
                        "int8_accuracy",
                        "accuracy",
                        "flash_bytes",
                        "ram_bytes",
                        "est_flash_bytes",
                        "est_ram_bytes",
                    )
                }
                for t in doc["pareto"]
            ],  # fmt: skip
        },
        "architecture": final["deployment"]["operators"],
        "machine": info,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    keys = ("final_int8_test_accuracy", "flash_bytes", "ram_bytes", "target_met", "wall_seconds")
    print(json.dumps({k: result[k] for k in keys}))
    if a.workdir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
