"""Search quality of the strategies (issue 10, section 6): hypervolume per trained trial.

Fashion-MNIST on a 10,000-image stratified training subset, two regimes of limits
(a: flash 64000 B / RAM 64000 B, roomy; b: flash 16384 B / RAM 6144 B, tight), the strategies
bo, random, nsga2 and evolution, seeds 0 1 2, 40 trained trials of 2 epochs, 2 in parallel.
Every run is a fresh job in a fresh SQLite database (kept, path in the run's "db"); all runs
share one private local Ray (2 CPUs) started once; the data set is loaded once per seed (the
seed also picks the validation split) and handed to the driver. Runs go seed-major (seed 0:
every regime and strategy, then seed 1, ...) so that a partial result stays balanced, and the
JSON (and the plot) are rewritten after every run.

    .venv/bin/python benchmarks/search_quality.py --out benchmarks/results/search_quality.json

Smoke run (regime b, all four strategies, seed 0, 6 trials of 1 epoch, 2000 images; writes to a
temporary folder unless --out/--plot say otherwise):

    .venv/bin/python benchmarks/search_quality.py --quick

Continue an interrupted run (completed runs of OLD.json are kept, failed or missing ones run):

    .venv/bin/python benchmarks/search_quality.py --resume-from OLD.json --out NEW.json

Per run, one record per prefix of n trained trials (n = 10, 20, 40: the first n trials by trial
index that count against the budget, completed or failed):

- ``hypervolume``: ``pareto.normalized_hypervolume`` of the prefix's completed feasible trials
  (10 classes, the regime's limits, dense flash), as the job itself computes it;
- ``best_feasible_accuracy`` (validation; the int8 model's on TFLM where measured, as the search
  objective) and ``best_feasible_test_accuracy`` (the test accuracy of that same trial);
- ``over_limit_as_measured``: completed trials of the prefix over a limit as measured (the
  estimate said they fit); ``export_seconds_median``: int8 export + TFLM measurement per trial;
- ``screened_per_trained``: the job's screened candidates / trained trials for the WHOLE run
  (the same number on every prefix record of a run): the strategies' generators run ahead of
  the trials, so a per-prefix count would not be attributable;
- ``worker_idle_fraction``: max over worker slots of wait / (wait + busy), the driver's
  ``Progress.wait_seconds`` / ``busy_seconds`` as they stood when the n-th trained trial
  finished (the final Progress for the whole budget);
- ``gen_seconds_median`` / ``_p95`` and ``train_seconds_median`` over the prefix's trials;
- ``cpu_hours``: CPU time (user + system) of this process and all its descendants (the local
  Ray's raylet, GCS and workers) spent since the run started, measured with psutil when the
  n-th trained trial finished. Ray workers outlive a run, so each is counted from its CPU time
  at the run's start; a process that exits during a run loses its last CPU time (Ray keeps its
  workers, so this is rare). ``cpu_hours_source`` says "psutil", or "wall x 2" when psutil could
  not read the processes (then cpu_hours = wall_seconds * 2 / 3600);
- ``wall_seconds``: since the run's driver started, when the n-th trained trial finished.

Each run also stores ``curve``: the hypervolume of its first n trained trials for n = 1..N (the
plot: one panel per regime, one line per strategy, mean over seeds with the min-max range
shaded). ``summary`` gives per regime, strategy and prefix the mean/min/max hypervolume over the
completed seeds, and the issue's target checks: regime b: bo@40 >= 1.2 x random@40 and bo@40 >=
nsga2@40 (means); regime a: bo@40 - random@40 > random@40's max-min over seeds; both regimes:
bo@20 >= random@40; no run failed; every worker idle < 5% (max over runs of
``worker_idle_fraction``). With another ``--trials N`` the checks use N and N // 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from datetime import UTC
from pathlib import Path
from typing import Any

from _common import command_line, machine_info, quantile, rnd

REGIMES: dict[str, dict[str, int]] = {
    "a": {"flash_bytes": 64_000, "ram_bytes": 64_000},
    "b": {"flash_bytes": 16_384, "ram_bytes": 6_144},
}
STRATEGIES = ("bo", "random", "nsga2", "evolution")
NUM_CLASSES = 10
RESULTS = Path(__file__).resolve().parent / "results"


# -- small helpers -----------------------------------------------------------------------------


class CpuMeter:
    """CPU seconds of this process and its descendants since ``start`` (psutil)."""

    def __init__(self) -> None:
        try:
            import psutil

            self._psutil: Any = psutil
            self._me = psutil.Process()
        except Exception:  # noqa: BLE001 - no psutil: fall back to wall time
            self._psutil = None
        self.source = "psutil" if self._psutil is not None else "wall x 2"
        self._base: dict[int, float] = {}

    def _snapshot(self) -> dict[int, float]:
        out: dict[int, float] = {}
        if self._psutil is None:
            return out
        procs = [self._me]
        with contextlib.suppress(self._psutil.Error):
            procs += self._me.children(recursive=True)
        for p in procs:
            try:
                t = p.cpu_times()
                out[p.pid] = t.user + t.system
            except self._psutil.Error:
                continue
        return out

    def start(self) -> None:
        self._base = self._snapshot()

    def seconds(self) -> float | None:
        if self._psutil is None:
            return None
        now = self._snapshot()
        return sum(max(0.0, v - self._base.get(pid, 0.0)) for pid, v in now.items())


# -- one run -----------------------------------------------------------------------------------


def prefix_sizes(trials: int) -> list[int]:
    return sorted({n for n in (10, 20, 40) if n <= trials} | {max(1, trials // 2), trials})


def _test_accuracy(trial: Any) -> float | None:
    """The test accuracy of the objective's model: int8 on TFLM where measured."""
    if trial is None:
        return None
    return trial.int8_test_accuracy if trial.int8_test_accuracy is not None else trial.test_accuracy


def hypervolume(trials: list[Any], limits: dict[str, int]) -> float:
    from sparsearch.search.pareto import Point, normalized_hypervolume

    points = [
        # dense flash accounting: the limit applies to flash_bytes (measured on trained trials);
        # the accuracy is the objective's: int8 on TFLM where measured, else float
        Point(t.index, t.objective_accuracy, t.flash_bytes, t.ram_bytes)
        for t in trials
        if t.status == "completed" and t.feasible and t.objective_accuracy is not None
    ]
    return normalized_hypervolume(
        points,
        num_classes=NUM_CLASSES,
        flash_limit=limits["flash_bytes"],
        ram_limit=limits["ram_bytes"],
    )


def idle_fraction(wait: list[float], busy: list[float]) -> float | None:
    fractions = [w / (w + b) for w, b in zip(wait, busy, strict=True) if w + b > 0]
    return max(fractions) if fractions else None


def run_one(
    regime: str, strategy: str, seed: int, args: argparse.Namespace, data: Any, meter: CpuMeter
) -> dict[str, Any]:
    from sparsearch.jobconfig import JobConfig
    from sparsearch.search.driver import SearchDriver
    from sparsearch.storage import open_storage

    limits = REGIMES[regime]
    tmp = Path(tempfile.mkdtemp(prefix=f"sparsearch-quality-{regime}-{strategy}-{seed}-"))
    url = f"sqlite:///{tmp / 'search.db'}"
    storage = open_storage(url, tmp / "artifacts")
    space = None
    if args.pruning_methods:  # e.g. `none`: architecture search alone (seed 004's comparison)
        from dataclasses import replace

        from sparsearch.jobconfig import default_space

        space = replace(default_space("dense"), pruning_methods=tuple(args.pruning_methods))
    cfg = JobConfig.create(
        target="tflm",  # the committed results compare with runs from before the C target
        space=space,
        dataset=args.dataset,
        flash_bytes=limits["flash_bytes"],
        ram_bytes=limits["ram_bytes"],
        trials=args.trials,
        parallel=args.parallel,
        epochs=args.epochs,
        seed=seed,
        train_limit=args.train_limit,
        strategy=strategy,
    )
    job = storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())
    run: dict[str, Any] = {
        "regime": regime,
        "strategy": strategy,
        "seed": seed,
        "status": "running",
        "error": None,
        "db": url,
        "job_id": job.id,
    }
    # What stood when the n-th trained trial finished (n = 1..N): wall, CPU, slot times.
    marks: dict[int, dict[str, Any]] = {}
    t0 = time.monotonic()

    def on_progress(p: Any) -> None:
        if p.trained and p.trained not in marks:
            marks[p.trained] = {
                "wall": time.monotonic() - t0,
                "cpu": meter.seconds(),
                "wait": list(p.wait_seconds),
                "busy": list(p.busy_seconds),
            }

    meter.start()
    driver = None
    try:
        # ray_address "": the driver's init_ray finds the Ray this script started and keeps it.
        driver = SearchDriver(storage, job.id, ray_address="", data=data, on_progress=on_progress)
        driver.run()
    except Exception as e:  # noqa: BLE001 - record it and go on with the next run
        run["status"] = "failed"
        run["error"] = f"{type(e).__name__}: {e}"
        run["traceback"] = traceback.format_exc()
    wall = time.monotonic() - t0
    cpu = meter.seconds()
    final = storage.get_job(job.id)
    if run["status"] != "failed":
        run["status"] = final.status
        if final.status != "completed":
            run["error"] = final.error
    progress = driver.progress if driver is not None else None
    wait_s = progress.wait_seconds if progress else [0.0] * args.parallel
    busy_s = progress.busy_seconds if progress else [0.0] * args.parallel
    trials = storage.list_trials(job.id)
    trained = [t for t in trials if t.trained]  # by index: charged completed + failed
    run["wall_seconds"] = round(wall, 2)
    with contextlib.suppress(OSError):  # the machine may be shared: other work counts
        run["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    run["cpu_hours"] = rnd((cpu if cpu is not None else wall * 2) / 3600, 5)
    run["cpu_hours_source"] = meter.source
    run["trained"] = len(trained)
    run["completed"] = sum(t.status == "completed" for t in trained)
    run["failed_trials"] = sum(t.status == "failed" for t in trained)
    run["screened"] = final.screened
    run["wait_seconds"] = [round(x, 2) for x in wait_s]
    run["busy_seconds"] = [round(x, 2) for x in busy_s]
    run["worker_idle_fraction"] = rnd(idle_fraction(wait_s, busy_s))
    run["hypervolume"] = rnd(final.hypervolume, 5)
    run["curve"] = [rnd(hypervolume(trained[:n], limits), 5) for n in range(1, len(trained) + 1)]
    run["generators"] = sorted({t.generator or "unknown" for t in trials})
    screened_per_trained = final.screened / len(trained) if trained else None
    records = []
    for n in prefix_sizes(args.trials):
        if n > len(trained):
            continue
        prefix = trained[:n]
        mark = marks.get(n) or {"wall": wall, "cpu": cpu, "wait": wait_s, "busy": busy_s}
        if n == len(trained) == args.trials:  # the whole budget: the final Progress
            mark = {**mark, "wait": wait_s, "busy": busy_s}
        done = [t for t in prefix if t.status == "completed" and t.objective_accuracy is not None]
        feasible = [t for t in done if t.feasible]
        best = max(feasible, key=lambda t: t.objective_accuracy, default=None)
        exports = [t.export_seconds for t in prefix if t.export_seconds is not None]
        gens = [t.gen_seconds for t in prefix if t.gen_seconds is not None]
        trains = [t.train_seconds for t in prefix if t.train_seconds is not None]
        cpu_n = mark["cpu"] if mark["cpu"] is not None else mark["wall"] * 2
        records.append(
            {
                "regime": regime,
                "strategy": strategy,
                "seed": seed,
                "trials": n,
                "hypervolume": rnd(hypervolume(prefix, limits), 5),
                "best_feasible_accuracy": rnd(best.objective_accuracy if best else None),
                "best_feasible_test_accuracy": rnd(_test_accuracy(best)),
                "over_limit_as_measured": len(done) - len(feasible),
                "export_seconds_median": rnd(quantile(exports, 0.5), 2),
                "screened_per_trained": rnd(screened_per_trained, 2),
                "worker_idle_fraction": rnd(idle_fraction(mark["wait"], mark["busy"])),
                "gen_seconds_median": rnd(quantile(gens, 0.5)),
                "gen_seconds_p95": rnd(quantile(gens, 0.95)),
                "train_seconds_median": rnd(quantile(trains, 0.5), 2),
                "cpu_hours": rnd(cpu_n / 3600, 5),
                "wall_seconds": round(mark["wall"], 2),
            }
        )
    run["prefixes"] = records
    if trained:
        first = min(t.created_at for t in trials)
        last = max(t.finished_at for t in trained if t.finished_at is not None)
        run["first_trial_at"] = first.astimezone(UTC).isoformat() if first.tzinfo else str(first)
        run["last_trial_at"] = last.astimezone(UTC).isoformat() if last.tzinfo else str(last)
    return run


# -- summary and plot --------------------------------------------------------------------------


def hv_at(runs: list[dict], regime: str, strategy: str, n: int) -> list[float]:
    out = []
    for r in runs:
        if (r["regime"], r["strategy"], r.get("status")) != (regime, strategy, "completed"):
            continue
        for rec in r.get("prefixes", []):
            if rec["trials"] == n and rec["hypervolume"] is not None:
                out.append(rec["hypervolume"])
    return out


def summarize(runs: list[dict], regimes: list[str], strategies: list[str], trials: int) -> dict:
    hv: dict[str, Any] = {}
    for regime in regimes:
        hv[regime] = {}
        for strategy in strategies:
            hv[regime][strategy] = {}
            for n in prefix_sizes(trials):
                xs = hv_at(runs, regime, strategy, n)
                hv[regime][strategy][str(n)] = {
                    "seeds": len(xs),
                    "mean": rnd(statistics.fmean(xs), 5) if xs else None,
                    "min": rnd(min(xs), 5) if xs else None,
                    "max": rnd(max(xs), 5) if xs else None,
                }
    full, half = trials, max(1, trials // 2)

    def mean(regime: str, strategy: str, n: int) -> float | None:
        xs = hv_at(runs, regime, strategy, n)
        return statistics.fmean(xs) if xs else None

    def ratio(a: float | None, b: float | None) -> float | None:
        if a is None or b is None:
            return None
        return a / b if b > 0 else (float("inf") if a > 0 else 1.0)

    targets: dict[str, dict[str, Any]] = {}

    def check(name: str, target: str, value: float | None, met: bool | None) -> None:
        targets[name] = {
            "target": target,
            "value": rnd(value, 4) if value not in (None, float("inf")) else value,
            "met": bool(met) if met is not None else False,
        }
        if met is None:
            targets[name]["note"] = "not enough completed runs to decide"

    if "b" in regimes:
        r = ratio(mean("b", "bo", full), mean("b", "random", full))
        check(
            f"b: bo@{full} >= 1.2 x random@{full}",
            "ratio of mean hypervolumes >= 1.2",
            r,
            None if r is None else r >= 1.2,
        )
        r = ratio(mean("b", "bo", full), mean("b", "nsga2", full))
        check(
            f"b: bo@{full} >= nsga2@{full}",
            "ratio of mean hypervolumes >= 1.0",
            r,
            None if r is None else r >= 1.0,
        )
    if "a" in regimes:
        bo, rand = mean("a", "bo", full), mean("a", "random", full)
        xs = hv_at(runs, "a", "random", full)
        spread = max(xs) - min(xs) if xs else None
        diff = None if bo is None or rand is None else bo - rand
        ok = None if diff is None or spread is None or len(xs) < 2 else diff > spread
        check(
            f"a: bo@{full} - random@{full} > random@{full} range over seeds",
            f"difference of means > {rnd(spread, 4)} (random's max - min over seeds)",
            diff,
            ok,
        )
    for regime in regimes:
        r = ratio(mean(regime, "bo", half), mean(regime, "random", full))
        check(
            f"{regime}: bo@{half} >= random@{full}",
            "ratio of mean hypervolumes >= 1.0",
            r,
            None if r is None else r >= 1.0,
        )
    failed = [r for r in runs if r.get("status") != "completed"]
    check("no run failed", "0 runs not completed", float(len(failed)), not failed)
    idle = [r["worker_idle_fraction"] for r in runs if r.get("worker_idle_fraction") is not None]
    worst = max(idle) if idle else None
    check(
        "worker idle < 5%",
        "max over runs and slots of wait / (wait + busy) < 0.05",
        worst,
        None if worst is None else worst < 0.05,
    )
    return {"hypervolume": hv, "targets": targets}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    cfg = result["config"]
    regimes = list(cfg["regimes"])
    fig, axes = plt.subplots(1, len(regimes), figsize=(6 * len(regimes), 4.5), squeeze=False)
    for ax, regime in zip(axes[0], regimes, strict=True):
        lim = cfg["regimes"][regime]
        for j, strategy in enumerate(cfg["strategies"]):
            curves = [
                r["curve"]
                for r in result["runs"]
                if r["regime"] == regime
                and r["strategy"] == strategy
                and r.get("status") == "completed"
                and r.get("curve")
            ]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            y = np.array([c[:n] for c in curves], dtype=float)
            x = np.arange(1, n + 1)
            (line,) = ax.plot(
                x,
                y.mean(axis=0),
                linestyle=("-", "--", "-.", ":")[j % 4],
                label=f"{strategy} ({len(curves)} seeds)",
            )
            ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=line.get_color(), alpha=0.15)
        ax.set_title(f"regime {regime}: flash {lim['flash_bytes']} B, RAM {lim['ram_bytes']} B")
        ax.set_xlabel("trained trials")
        ax.set_ylabel("normalized hypervolume")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right")
    fig.suptitle(
        f"{cfg['dataset']}, {cfg['train_limit']} training images, {cfg['epochs']} epoch(s) per "
        "trial\nmean over seeds, min-max over seeds shaded",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--train-limit", type=int, default=None, help="default 10000 (quick: 2000)")
    ap.add_argument("--trials", type=int, default=None, help="trained trials per run (40)")
    ap.add_argument("--epochs", type=int, default=None, help="epochs per trial (2)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    ap.add_argument("--regimes", nargs="+", choices=sorted(REGIMES), default=None)
    ap.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=None)
    ap.add_argument(
        "--pruning-methods",
        nargs="+",
        default=None,
        help="restrict the space's pruning methods (default: the default space's); "
        "`--pruning-methods none` searches architectures alone",
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: b, seed 0, 6 x 1 epoch")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    ap.add_argument("--resume-from", type=Path, default=None, metavar="OLD.json")
    args = ap.parse_args()

    quick = args.quick
    args.train_limit = args.train_limit or (2000 if quick else 10_000)
    args.trials = args.trials or (6 if quick else 40)
    args.epochs = args.epochs or (1 if quick else 2)
    args.seeds = args.seeds if args.seeds is not None else ([0] if quick else [0, 1, 2])
    regimes = args.regimes or (["b"] if quick else ["a", "b"])
    strategies = args.strategies or list(STRATEGIES)
    if quick:
        scratch = Path(tempfile.mkdtemp(prefix="sparsearch-quality-quick-"))
        args.out = args.out or scratch / "search_quality.json"
        args.plot = args.plot or scratch / "search_quality.png"
    args.out = args.out or RESULTS / "search_quality.json"
    args.plot = args.plot or RESULTS / "search_quality.png"

    config = {
        "dataset": args.dataset,
        "train_limit": args.train_limit,
        "trials": args.trials,
        "epochs": args.epochs,
        "parallel": args.parallel,
        "seeds": args.seeds,
        "regimes": {r: REGIMES[r] for r in regimes},
        "strategies": strategies,
        "prefixes": prefix_sizes(args.trials),
        "ray": {"num_cpus": 2, "object_store_mb": 300},
        "quick": quick,
        "pruning_methods": args.pruning_methods or "default space",
    }
    done: dict[tuple[str, str, int], dict] = {}
    if args.resume_from is not None:
        old = json.loads(args.resume_from.read_text())
        for key in ("dataset", "train_limit", "trials", "epochs", "parallel", "pruning_methods"):
            if old["config"].get(key) != config[key]:
                sys.exit(
                    f"--resume-from {args.resume_from}: its {key} is {old['config'].get(key)!r}, "
                    f"this run's is {config[key]!r}; resume with the same settings"
                )
        for r in old.get("runs", []):
            if r.get("status") == "completed" and REGIMES.get(r["regime"]) == old["config"][
                "regimes"
            ].get(r["regime"]):
                done[(r["regime"], r["strategy"], r["seed"])] = r

    from sparsearch.datasets import load_dataset
    from sparsearch.worker.remote import init_ray

    plan = [(reg, strat, seed) for seed in args.seeds for reg in regimes for strat in strategies]
    result: dict[str, Any] = {
        "command": command_line(),
        "machine": machine_info(),
        "config": config,
        "runs": [],
        "summary": {},
    }
    if args.resume_from is not None:
        result["resumed_from"] = str(args.resume_from)
    meter = CpuMeter()
    ray_started = False
    started = time.monotonic()

    def save() -> None:
        ordered = {(r["regime"], r["strategy"], r["seed"]): r for r in result["runs"]}
        result["runs"] = [ordered[k] for k in plan if k in ordered]
        result["summary"] = summarize(result["runs"], regimes, strategies, args.trials)
        result["total_wall_seconds"] = round(time.monotonic() - started, 1)
        write_json(args.out, result)
        try:
            plot(result, args.plot)
        except Exception as e:  # noqa: BLE001 - a plot must not lose the numbers
            print(f"plot failed: {type(e).__name__}: {e}", file=sys.stderr)

    result["runs"] = [done[k] for k in plan if k in done]
    data_seed, data = None, None
    for i, (regime, strategy, seed) in enumerate(plan, 1):
        if (regime, strategy, seed) in done:
            print(
                f"[{i}/{len(plan)}] {regime} {strategy} seed {seed}: kept from resume", flush=True
            )
            continue
        if not ray_started:
            init_ray("", num_cpus=2, object_store_mb=300)
            ray_started = True
        if data_seed != seed:
            data = load_dataset(args.dataset, seed=seed, train_limit=args.train_limit)
            data_seed = seed
        print(f"[{i}/{len(plan)}] {regime} {strategy} seed {seed} ...", flush=True)
        try:
            run = run_one(regime, strategy, seed, args, data, meter)
        except Exception as e:  # noqa: BLE001 - outside the driver (storage, bookkeeping)
            run = {
                "regime": regime,
                "strategy": strategy,
                "seed": seed,
                "status": "failed",
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            }
        result["runs"].append(run)
        save()
        hv = run.get("hypervolume")
        print(
            f"[{i}/{len(plan)}] {regime} {strategy} seed {seed}: {run['status']} "
            f"hv={hv} trained={run.get('trained')} wall={run.get('wall_seconds')}s "
            f"idle={run.get('worker_idle_fraction')}"
            + (f" error={run['error']}" if run.get("error") else ""),
            flush=True,
        )
    save()
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
