"""What one bo candidate costs to generate late in a search (issue 10, section 3).

Replays 100 trained trials into a fresh ``bo`` strategy, then times ``--asks 20`` asks of one
candidate each, as the driver's generator thread makes them while two trials train: each ask
sees two pending candidates (the two previous proposals, standing in for the trials in flight)
and, after the next ask, the older of them is told a result, so every timed ask refits the GP
on one more point (warm-started, as in a search). Two busy processes (a torch matmul loop, one
thread each) stand in for the two training trials on the CPUs while the asks are timed
(``--no-load`` skips them). The strategy runs with one torch thread, as the driver does.

Where the 100 trials come from:

- ``--from-db sqlite:///path.db --job ID``: the trained trials (completed and failed, first 100
  by index) of a stored job, e.g. one of benchmarks/search_quality.py's runs (its JSON names
  each run's "db" and "job_id"); the strategy gets that job's limits and space. Proposals are
  told the accuracy of the stored trial nearest in (log10 MACs, log10 params), plus noise.
- otherwise SYNTHETIC trials: the first 100 feasible points of a scrambled Sobol draw
  (``screen.feasible(sobol_draw(codec, --data-seed), 100)``) on Fashion-MNIST's shape
  (1, 28, 28), 10 classes, regime b's limits (flash 16384 B, RAM 6144 B), each given the
  accuracy ``0.1 + 0.8 / (1 + exp(-2 s))`` with ``s = 0.5 (log10 MACs - 4) + 0.5 (log10 params
  - 2.5)``, plus Gaussian noise of sd 0.01, clipped to [0.1, 0.95] (a smooth, saturating
  accuracy-vs-size curve; nothing was trained). Proposals are told the same function's value.
  The GP's cost depends on the number of points and features, not on these values.

Two warm-up asks first (the first one also draws the strategy's 1500-point feasible pool, once
per job in a real search) make the two pending candidates; they are reported apart and not in
the statistics. Targets per candidate: median ask <= 1 s, p95 <= 3 s.

    .venv/bin/python benchmarks/generation_cost.py --out benchmarks/results/generation_cost.json

Smoke run: ``--quick`` (30 replayed trials, 3 asks).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import command_line, load_average, machine_info, quantile, rnd

REGIME_B = {"flash_bytes": 16_384, "ram_bytes": 6_144}
SHAPES = {"fashion-mnist": ((1, 28, 28), 10)}
TARGET_MEDIAN_S, TARGET_P95_S = 1.0, 3.0


# -- the stand-ins for two training trials -----------------------------------------------------


def _spin(stop: Any, ready: Any) -> None:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    b = torch.randn(256, 256)
    ready.set()
    while not stop.is_set():
        for _ in range(20):
            b = torch.tanh(a @ b)


@contextlib.contextmanager
def cpu_load(n: int) -> Any:
    """``n`` processes spinning a one-thread torch matmul loop until the block ends."""
    if n <= 0:
        yield []
        return
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    readies = [ctx.Event() for _ in range(n)]
    procs = [ctx.Process(target=_spin, args=(stop, r), daemon=True) for r in readies]
    for p in procs:
        p.start()
    for r in readies:
        r.wait(timeout=120)
    try:
        yield [p.pid for p in procs]
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


# -- sources of trials -------------------------------------------------------------------------


def synthetic_accuracy(macs: int, params: int, rng: random.Random | None) -> float:
    s = 0.5 * (math.log10(max(1, macs)) - 4.0) + 0.5 * (math.log10(max(1, params)) - 2.5)
    acc = 0.1 + 0.8 / (1.0 + math.exp(-2.0 * s))
    if rng is not None:
        acc += rng.gauss(0.0, 0.01)
    return min(0.95, max(0.1, acc))


def synthetic_source(args: argparse.Namespace) -> tuple[Any, list[Any], Any, dict]:
    from sparsearch.jobconfig import JobConfig
    from sparsearch.search.screen import Screen, sobol_draw
    from sparsearch.search.strategies import Result

    cfg = JobConfig.create(
        target="tflm",  # the committed results compare with runs from before the C target
        dataset="fashion-mnist",
        flash_bytes=REGIME_B["flash_bytes"],
        ram_bytes=REGIME_B["ram_bytes"],
        trials=args.replay + args.asks,
        parallel=2,
        epochs=2,
        seed=args.seed,
    )
    shape, classes = SHAPES["fashion-mnist"]
    screen = Screen(cfg, shape, classes)
    rng = random.Random(args.data_seed)
    points = screen.feasible(sobol_draw(screen.codec, args.data_seed), args.replay)
    results = []
    for p in points:
        c = screen.costs(p)
        acc = synthetic_accuracy(c.macs, c.estimates["param_count"], rng)
        results.append(Result(p, acc, c.flash, c.ram, c.macs))

    def oracle(params: dict[str, Any]) -> float:
        c = screen.costs(params)
        return synthetic_accuracy(c.macs, c.estimates["param_count"], rng)

    info = {
        "kind": "synthetic",
        "dataset_shape": [*shape],
        "num_classes": classes,
        "limits": REGIME_B,
        "data_seed": args.data_seed,
        "accuracy": "0.1 + 0.8/(1+exp(-2s)), s = 0.5(log10 MACs - 4) + 0.5(log10 params - 2.5), "
        "+ N(0, 0.01), clipped to [0.1, 0.95]",
    }
    return screen, results, oracle, info


def db_source(args: argparse.Namespace) -> tuple[Any, list[Any], Any, dict]:
    from sparsearch.jobconfig import JobConfig
    from sparsearch.search.screen import Screen
    from sparsearch.search.strategies import Result
    from sparsearch.storage import open_storage
    from sparsearch.vocabulary import accounted_flash

    storage = open_storage(args.from_db, Path(tempfile.mkdtemp(prefix="sparsearch-gencost-")))
    job = storage.get_job(args.job)
    cfg = JobConfig.from_dict(job.config)
    if cfg.dataset in SHAPES:
        shape, classes = SHAPES[cfg.dataset]
    else:
        from sparsearch.datasets import load_dataset

        data = load_dataset(cfg.dataset, seed=cfg.seed, train_limit=cfg.train_limit)
        shape, classes = data.input_shape, data.num_classes
    screen = Screen(cfg, shape, classes)
    trained = [t for t in storage.list_trials(job.id) if t.trained][: args.replay]
    if not trained:
        sys.exit(f"job {args.job} in {args.from_db} has no trained trials")
    results, known = [], []
    for t in trained:
        costs = screen.costs(t.params)
        flash = accounted_flash(cfg.flash_accounting, t.to_json()) if t.flash_bytes else 0
        macs = t.macs if t.macs is not None else (costs.macs if costs else 0)
        results.append(Result(t.params, t.accuracy, flash, t.ram_bytes or 0, macs))
        if t.accuracy is not None:
            known.append((math.log10(max(1, macs)), math.log10(max(1, t.param_count or 1)), t))
    rng = random.Random(args.data_seed)

    def oracle(params: dict[str, Any]) -> float:
        c = screen.costs(params)
        lm, lp = math.log10(max(1, c.macs)), math.log10(max(1, c.estimates["param_count"]))
        nearest = min(known, key=lambda k: (k[0] - lm) ** 2 + (k[1] - lp) ** 2)[2]
        return min(1.0, max(0.0, nearest.accuracy + rng.gauss(0.0, 0.01)))

    info = {
        "kind": "db",
        "db": args.from_db,
        "job": job.id,
        "job_strategy": cfg.strategy,
        "dataset": cfg.dataset,
        "limits": {"flash_bytes": cfg.limits.flash_bytes, "ram_bytes": cfg.limits.ram_bytes},
        "replayed_completed": sum(r.accuracy is not None for r in results),
        "replayed_failed": sum(r.accuracy is None for r in results),
        "proposal_accuracy": "the nearest stored trial's in (log10 MACs, log10 params) "
        "+ N(0, 0.01)",
    }
    return screen, results, oracle, info


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--from-db", default=None, metavar="URL", help="sqlite:///path.db")
    ap.add_argument("--job", default=None, help="the job id in --from-db")
    ap.add_argument("--replay", type=int, default=None, help="trials replayed (100)")
    ap.add_argument("--asks", type=int, default=None, help="timed asks (20)")
    ap.add_argument("--seed", type=int, default=0, help="the strategy's seed")
    ap.add_argument("--data-seed", type=int, default=1, help="synthetic draws and noise")
    ap.add_argument("--no-load", action="store_true", help="no busy processes while timing")
    ap.add_argument("--quick", action="store_true", help="smoke run: 30 replayed, 3 asks")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if (args.from_db is None) != (args.job is None):
        ap.error("--from-db and --job go together")
    args.replay = args.replay or (30 if args.quick else 100)
    args.asks = args.asks or (3 if args.quick else 20)

    import torch

    from sparsearch.search.strategies import Result, make_strategy

    torch.set_num_threads(1)  # as the driver: the workers get the cores
    machine = machine_info()  # the load average before this script's own work
    t0 = time.perf_counter()
    screen, results, oracle, source = db_source(args) if args.from_db else synthetic_source(args)
    t_source = time.perf_counter() - t0
    strategy = make_strategy(
        "bo", screen, seed=args.seed, budget=len(results) + args.asks, parallel=2
    )
    for r in results:
        strategy.tell(r)

    def ask(pending: list[dict[str, Any]]) -> dict[str, Any]:
        strategy.last_fit_seconds = None
        t = time.perf_counter()
        batch = strategy.ask(1, pending)
        wall = time.perf_counter() - t
        if not batch:
            raise SystemExit("the strategy proposed nothing (space exhausted?)")
        return {
            "proposal": batch[0],
            "ask_seconds": wall,
            "fit_seconds": strategy.last_fit_seconds,
            "generator": batch[0].generator,
            "told": len(strategy._told),  # noqa: SLF001 - a benchmark may look
        }

    def tell(params: dict[str, Any]) -> None:
        c = screen.costs(params)
        strategy.tell(Result(params, oracle(params), c.flash, c.ram, c.macs))

    load = 0 if args.no_load else 2
    asks, warmups = [], []
    t_start = time.perf_counter()
    with cpu_load(load) as load_pids:
        pending: list[dict[str, Any]] = []
        for _ in range(2):  # make the two "training" candidates
            a = ask(pending)
            warmups.append(a)
            pending.append(a["proposal"].params)
        for i in range(args.asks):
            a = ask(pending)
            a["index"] = i
            asks.append(a)
            tell(pending.pop(0))  # the older trial finished: told after this ask
            pending.append(a["proposal"].params)
            print(
                f"ask {i + 1}/{args.asks}: {a['ask_seconds']:.3f} s "
                f"(fit {a['fit_seconds'] or 0:.3f} s, {a['generator']}, told {a['told']})",
                flush=True,
            )
    t_timed = time.perf_counter() - t_start

    def row(a: dict[str, Any]) -> dict[str, Any]:
        return {
            "ask_seconds": rnd(a["ask_seconds"]),
            "fit_seconds": rnd(a["fit_seconds"]),
            "generator": a["generator"],
            "told": a["told"],
            "gen_seconds": rnd(a["proposal"].gen_seconds),
        }

    ask_s = [a["ask_seconds"] for a in asks]
    fit_s = [a["fit_seconds"] for a in asks if a["fit_seconds"] is not None]
    med, p95 = quantile(ask_s, 0.5), quantile(ask_s, 0.95)
    result = {
        "command": command_line(),
        "machine": {**machine, "load_average_at_end": load_average()},
        "config": {
            "strategy": "bo",
            "seed": args.seed,
            "replayed": len(results),
            "asks": args.asks,
            "k": 1,
            "pending": 2,
            "busy_processes": load,
            "torch_threads": torch.get_num_threads(),
            "source": source,
        },
        "warmups": [row(a) for a in warmups],
        "asks": [{"index": a["index"], **row(a)} for a in asks],
        "fits": [rnd(x) for x in fit_s],
        "summary": {
            "ask_seconds": {
                "median": rnd(med),
                "p95": rnd(p95),
                "max": rnd(max(ask_s)) if ask_s else None,
            },
            "fit_seconds": {
                "median": rnd(quantile(fit_s, 0.5)),
                "p95": rnd(quantile(fit_s, 0.95)),
                "max": rnd(max(fit_s)) if fit_s else None,
                "fits": len(fit_s),
            },
            "seconds": {
                "source": round(t_source, 2),
                "warmup_asks": round(sum(a["ask_seconds"] for a in warmups), 2),
                "timed_total": round(t_timed, 2),
            },
            "load_pids": load_pids,
            "targets": {
                "ask median <= 1 s": {
                    "target": TARGET_MEDIAN_S,
                    "value": rnd(med),
                    "met": med is not None and med <= TARGET_MEDIAN_S,
                },
                "ask p95 <= 3 s": {
                    "target": TARGET_P95_S,
                    "value": rnd(p95),
                    "met": p95 is not None and p95 <= TARGET_P95_S,
                },
            },
        },
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
