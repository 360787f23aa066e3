"""Wall time of the test suite (issue 20): runs one command, records it into test_times.json.

Each run fills one section of the JSON file (the others are kept), so the phases can be measured
back to back and the file written as they finish:

- ``before``: the suite as it was (a clone of an earlier commit, e.g. ``--cwd /tmp/before``),
  run as its ``make test`` did plus ``--durations=30``;
- ``after``: ``make test PYTEST_ARGS=--durations=30``;
- ``quick``: ``make test-quick``;
- ``ci``: ``.ci/run`` on a fresh clone (install, lint, tests); with ``--after-from-ci`` and
  ``PYTEST_ARGS=--durations=30`` its ``make test`` also fills ``after``.

For ``before``/``after`` the section holds the wall time, the test count from pytest's last
line, the load average when it started, its mean over the run (sampled every 10 s) and when it
ended, and the 30 slowest test phases that pytest printed. The run's whole output goes to
``<out>.<phase>.log`` beside the JSON file (not committed).

    .venv/bin/python benchmarks/test_times.py --phase after \\
        --command 'make test PYTEST_ARGS=--durations=30' --out benchmarks/results/test_times.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

DURATION = re.compile(r"^\s*([0-9.]+)s (call|setup|teardown)\s+(\S+)")
#: pytest's last line: "1320 passed, 1 skipped in 1577.24s (0:26:17)"
SUMMARY = re.compile(r"^=*\s*((?:\d+ \w+(?:, )?)+) in ([0-9.]+)s")


def load_average() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def parse(output: str) -> tuple[int | None, list[dict], float | None]:
    """The number of tests run (passed + failed + skipped + errors), the durations table and
    pytest's own wall time (of the last pytest run in ``output``)."""
    tests = pytest_seconds = None
    durations: list[dict] = []
    in_table = False
    for line in output.splitlines():
        if "slowest" in line and "durations" in line:
            in_table = True
            continue
        match = DURATION.match(line) if in_table else None
        if match:
            seconds, phase, test = match.groups()
            durations.append({"test": test, "phase": phase, "seconds": float(seconds)})
        elif in_table and line.strip() and not line.startswith("("):
            in_table = False
        summary = SUMMARY.match(line.strip())
        if summary:
            counts = dict(
                (word, int(n)) for n, word in re.findall(r"(\d+) (\w+)", summary.group(1))
            )
            tests = sum(
                counts.get(k, 0) for k in ("passed", "failed", "skipped", "error", "errors")
            )
            pytest_seconds = float(summary.group(2))
    return tests, durations, pytest_seconds


def run(command: str, cwd: Path, log: Path) -> dict:
    samples: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(10):
            samples.append(load_average()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    start_load = load_average()
    start = time.monotonic()
    sampler.start()
    with log.open("w") as out:
        proc = subprocess.run(
            command, shell=True, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    wall = time.monotonic() - start
    done.set()
    text = log.read_text(errors="replace")
    tests, durations, pytest_seconds = parse(text)
    return {
        "command": command,
        "cwd": str(cwd),
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "pytest_seconds": pytest_seconds,
        "tests": tests,
        "load_average": {
            "start": start_load,
            "mean_1min_during": round(sum(samples) / len(samples), 2) if samples else None,
            "end": load_average(),
        },
        "cpus": os.cpu_count(),
        "durations": durations,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=("before", "after", "quick", "ci"), required=True)
    ap.add_argument("--command", required=True)
    ap.add_argument("--cwd", type=Path, default=Path.cwd())
    ap.add_argument("--note", default="", help="what else ran on the machine meanwhile")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/test_times.json"))
    ap.add_argument(
        "--after-from-ci",
        action="store_true",
        help="ci phase: also fill 'after' from the make test inside it (--durations=30)",
    )
    args = ap.parse_args()

    out = args.out.resolve()
    log = out.with_suffix(f".{args.phase}.log")
    result = run(args.command, args.cwd.resolve(), log)
    if args.note:
        result["note"] = args.note
    doc = json.loads(out.read_text()) if out.exists() else {}
    doc["command"] = "make test"  # the README's test command, and what .ci/run calls
    if args.phase == "ci" and args.after_from_ci:
        # .ci/run's own `make test` (run with PYTEST_ARGS=--durations=30) is the "after":
        # its wall time is pytest's (the install and lint before it are the ci phase's).
        doc["after"] = {
            **result,
            "command": "make test PYTEST_ARGS=--durations=30 (the one .ci/run runs)",
            "wall_seconds": result["pytest_seconds"],
        }
    if args.phase in ("quick", "ci"):
        keep = ("command", "cwd", "exit_code", "wall_seconds", "pytest_seconds", "tests")
        result = {k: v for k, v in result.items() if k in (*keep, "load_average", "note")}
    doc[args.phase] = result
    if "before" in doc and "after" in doc:
        doc["after_over_before"] = round(
            doc["after"]["wall_seconds"] / doc["before"]["wall_seconds"], 3
        )
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "durations"}, indent=2))


if __name__ == "__main__":
    main()
