"""The tiny-chip result (issue 21): SpArSe's class of chip, the whole model on it.

Fashion-MNIST under ``--target c`` with the whole model (code, weights, activations, stack)
within 16 KiB of flash and 2 KiB of RAM: a search, then ``finalize`` of its most accurate front
trial, scored on all 10,000 test images by the C model (bit-exact with TFLM on every one of
them, checked by the deployment). Beside it, the same search under ``--target tflm`` with the
same limits (TFLM's arena bookkeeping alone is ~1.6 KB), and MNIST-1D (``npz:``, from the
``mnist1d`` package, ``benchmarks/make_mnist1d.py``) within 4 KiB / 1 KiB under ``c``.

Runs the commands a user would, as subprocesses of the installed CLI, and records them:

    .venv/bin/python benchmarks/make_mnist1d.py --out runs/mnist1d.npz
    .venv/bin/python benchmarks/tiny_chip.py --workdir runs/tiny_chip \\
        --out benchmarks/results/tiny_chip.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import command_line, machine_info

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))
TARGET_ACCURACY = 0.86


def run(args: list[str], log: Path) -> tuple[int, dict[str, Any] | None, str]:
    """Run the CLI with --json: (exit status, its document or None, the last stderr lines)."""
    with log.open("a") as err:
        err.write(f"$ {shlex.join(args)}\n")
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    with log.open("a") as err:
        err.write(proc.stderr)
    tail = " ".join(ln.strip() for ln in proc.stderr.splitlines()[-3:])
    doc = json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else None
    return proc.returncode, doc, tail


def search_and_finalize(
    name: str, dataset: str, target: str, flash: str, ram: str, a: argparse.Namespace,
    work: Path, *, epochs: int, final_epochs: int, trials: int, train_limit: int | None,
) -> dict[str, Any]:  # fmt: skip
    db = f"sqlite:///{work / (name + '.db')}"
    log = work / f"{name}.log"
    search = [
        SPARSEARCH, "search", "--dataset", dataset, "--target", target, "--flash", flash,
        "--ram", ram, "--trials", str(trials), "--parallel", str(a.parallel), "--epochs",
        str(epochs), "--seed", str(a.seed), "--db", db, "--artifacts", str(work / name), "--json",
    ]  # fmt: skip
    if train_limit:
        search[4:4] = ["--train-limit", str(train_limit)]
    start = time.monotonic()
    code, doc, said = run(search, log)
    out: dict[str, Any] = {"commands": [shlex.join(search)]}
    if doc is None:
        out["error"] = f"search exited {code}: {said}"
        return out
    searched = time.monotonic()
    out.update(
        job_id=doc["job_id"],
        limits={k: doc["limits"][k] for k in ("flash_bytes", "ram_bytes")},
        trials_completed=sum(1 for t in doc["trials"] if t["status"] == "completed"),
        best_int8_val_accuracy=doc["best_accuracy"],
        front=[
            {
                k: t.get(k)
                for k in (
                    "index",
                    "int8_accuracy",
                    "flash_bytes",
                    "ram_bytes",
                    "est_flash_bytes",
                    "est_ram_bytes",
                    "instructions",
                )
            }
            for t in doc["pareto"]
        ],  # fmt: skip
        search_seconds=round(searched - start, 1),
    )
    if not doc["pareto"]:
        out["error"] = "no trial of the search fits the limits as measured"
        return out
    finalize = [
        SPARSEARCH, "finalize", doc["job_id"], "--epochs", str(final_epochs), "--db", db, "--json",
    ]  # fmt: skip
    out["commands"].append(shlex.join(finalize))
    code, fdoc, said = run(finalize, log)
    if fdoc is None:
        out["error"] = f"finalize exited {code}: {said}"
        return out
    (entry,) = fdoc["finalized"]
    final = entry["final"]
    out["finalize_seconds"] = round(time.monotonic() - searched, 1)
    out["final"] = {
        "trial": entry["index"],
        "int8_test_accuracy": final["int8_test_accuracy"],
        "test_images": final["deployment"]["int8_eval_images"]["test"],
        "flash_bytes": final["flash_bytes"],
        "ram_bytes": final["ram_bytes"],
        "instructions": final.get("instructions"),
        "c_stack_bytes": final.get("c_stack_bytes"),
        "tflm_flash_bytes": final.get("tflm_flash_bytes"),
        "tflm_ram_bytes": final.get("tflm_ram_bytes"),
        "bit_exact_images": (final["deployment"].get("c") or {}).get("bit_exact_images"),
        "epochs": final.get("epochs"),
        "within_limits": final["flash_bytes"] <= out["limits"]["flash_bytes"]
        and final["ram_bytes"] <= out["limits"]["ram_bytes"],
    }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=40)
    p.add_argument("--epochs", type=int, default=6, help="epochs per search trial")
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--final-epochs", type=int, default=40)
    p.add_argument("--mnist1d", type=Path, default=Path("runs/mnist1d.npz"))
    p.add_argument("--mnist1d-trials", type=int, default=30)
    p.add_argument("--parallel", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=Path("runs/tiny_chip"))
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    work = a.workdir
    work.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    start = time.monotonic()
    common = dict(epochs=a.epochs, final_epochs=a.final_epochs, trials=a.trials,
                  train_limit=a.train_limit)  # fmt: skip
    c = search_and_finalize("fashion_c", "fashion-mnist", "c", "16KiB", "2KiB", a, work, **common)
    tflm = search_and_finalize(
        "fashion_tflm", "fashion-mnist", "tflm", "16KiB", "2KiB", a, work, **common
    )
    m1d = search_and_finalize(
        "mnist1d_c", f"npz:{a.mnist1d}", "c", "4KiB", "1KiB", a, work, epochs=a.epochs,
        final_epochs=a.final_epochs, trials=a.mnist1d_trials, train_limit=None,
    )  # fmt: skip
    final = c.get("final") or {}
    result = {
        "command": command_line(),
        "dataset": "fashion-mnist",
        "target": "c",
        "limits": c.get("limits", {"flash_bytes": 16384, "ram_bytes": 2048}),
        "final": {
            k: final.get(k)
            for k in (
                "int8_test_accuracy",
                "test_images",
                "flash_bytes",
                "ram_bytes",
                "instructions",
                "c_stack_bytes",
                "bit_exact_images",
                "trial",
                "epochs",
            )
        },  # fmt: skip
        "target_met": bool(final)
        and final["int8_test_accuracy"] >= TARGET_ACCURACY
        and final["test_images"] == 10000
        and final["within_limits"],
        "search": {k: v for k, v in c.items() if k != "final"},
        "tflm": {
            "int8_test_accuracy": (tflm.get("final") or {}).get("int8_test_accuracy"),
            "why_none": tflm.get("error"),
            **{k: v for k, v in tflm.items() if k not in ("error",)},
        },
        "mnist1d": {
            "limits": m1d.get("limits", {"flash_bytes": 4096, "ram_bytes": 1024}),
            "int8_test_accuracy": (m1d.get("final") or {}).get("int8_test_accuracy"),
            "flash_bytes": (m1d.get("final") or {}).get("flash_bytes"),
            "ram_bytes": (m1d.get("final") or {}).get("ram_bytes"),
            "why_none": m1d.get("error"),
            **{k: v for k, v in m1d.items() if k not in ("error", "limits")},
        },
        "wall_seconds": round(time.monotonic() - start, 1),
        "machine": info,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"final": result["final"], "target_met": result["target_met"],
                      "tflm": result["tflm"]["why_none"] or result["tflm"]["int8_test_accuracy"],
                      "mnist1d": result["mnist1d"]["int8_test_accuracy"]}))  # fmt: skip


if __name__ == "__main__":
    main()
