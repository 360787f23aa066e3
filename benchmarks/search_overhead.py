"""Where a search's time goes: generating candidates vs training vs workers waiting.

Fashion-MNIST on a 10,000-image stratified training subset, 12 trained trials x 1 epoch, 2 in
parallel on a private local Ray, real Ax (Sobol then BoTorch). Writes one JSON document.

    .venv/bin/python benchmarks/search_overhead.py --out benchmarks/results/search_overhead.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dataset", default="fashion-mnist")
    ap.add_argument("--train-limit", type=int, default=10_000)
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--flash", type=int, default=64 * 1024)
    ap.add_argument("--ram", type=int, default=64 * 1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from sparsearch.datasets import load_dataset
    from sparsearch.jobconfig import JobConfig
    from sparsearch.search.driver import SearchDriver
    from sparsearch.storage import open_storage
    from sparsearch.worker.remote import init_ray

    tmp = Path(tempfile.mkdtemp(prefix="sparsearch-bench-"))
    storage = open_storage(f"sqlite:///{tmp / 'bench.db'}", tmp / "artifacts")
    cfg = JobConfig.create(
        dataset=args.dataset,
        flash_bytes=args.flash,
        ram_bytes=args.ram,
        trials=args.trials,
        parallel=args.parallel,
        epochs=args.epochs,
        seed=args.seed,
        train_limit=args.train_limit,
    )
    t0 = time.perf_counter()
    data = load_dataset(cfg.dataset, seed=cfg.seed, train_limit=cfg.train_limit)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    init_ray("", num_cpus=args.parallel, object_store_mb=300)
    t_ray = time.perf_counter() - t0
    job = storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())
    t0 = time.perf_counter()
    SearchDriver(storage, job.id, data=data).run()
    wall = time.perf_counter() - t0

    trials = storage.list_trials(job.id)
    trained = [t for t in trials if t.status in ("completed", "failed")]
    busy: dict[int, float] = defaultdict(float)
    count: dict[int, int] = defaultdict(int)
    for t in trained:
        busy[t.worker_pid or 0] += t.train_seconds or 0.0
        count[t.worker_pid or 0] += 1
    gen_by_node: dict[str, list[float]] = defaultdict(list)
    for t in trials:
        gen_by_node[t.generator or "unknown"].append(t.gen_seconds or 0.0)
    job = storage.get_job(job.id)
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cpus": os.cpu_count(),
            "arch": platform.machine(),
            "python": platform.python_version(),
            "node": platform.node(),
        },
        "config": {
            "dataset": args.dataset,
            "train_images": len(data.x_train),
            "trials": args.trials,
            "parallel": args.parallel,
            "epochs": args.epochs,
            "flash_limit": args.flash,
            "ram_limit": args.ram,
            "seed": args.seed,
        },
        "status": job.status,
        "seconds": {
            "load_data": round(t_data, 2),
            "ray_start": round(t_ray, 2),
            "search_wall": round(wall, 2),
            "generate_total": round(sum(t.gen_seconds or 0.0 for t in trials), 2),
            "train_total": round(sum(busy.values()), 2),
        },
        "generation_by_node": {
            k: {
                "candidates": len(v),
                "seconds_total": round(sum(v), 2),
                "seconds_max": round(max(v), 2),
            }
            for k, v in gen_by_node.items()
        },
        "workers": [
            {
                "pid": pid,
                "trials": count[pid],
                "busy_s": round(b, 2),
                "idle_s": round(wall - b, 2),
                "busy_fraction": round(b / wall, 3),
            }
            for pid, b in sorted(busy.items())
        ],
        "trials": {
            "candidates": len(trials),
            "trained": len(trained),
            "infeasible": sum(t.status == "infeasible" for t in trials),
            "failed": sum(t.status == "failed" for t in trained),
        },
        "best_accuracy": job.best_accuracy,
        "hypervolume": job.hypervolume,
    }
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
