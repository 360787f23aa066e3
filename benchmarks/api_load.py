"""Open-loop HTTP load on the read endpoints of a real `sparsearch serve` process.

A job with 1,000 stored trials (40 on the front); requests are *scheduled* at a fixed rate
(open loop: a slow response never delays the next request) alternating
`GET /v1/jobs/{id}/pareto?limit=50` and `GET /v1/jobs/{id}/trials?limit=50&offset=…&sort=…`,
each latency measured from its scheduled start (so queueing counts). Runs on SQLite and on
PostgreSQL against `sparsearch serve --no-scheduler --workers 2` (the thread count is serve's
default unless `--threads`); target: p99 under 50 ms, zero errors. `--repeat N` measures each
backend N times, each on a fresh database and server: on a shared 2-core VM one run says little.

    .venv/bin/python benchmarks/api_load.py --rate 200 --seconds 60 --repeat 3 \
        --out benchmarks/results/api_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx  # only for the readiness probe

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))
PG_ADMIN = os.environ.get(
    "SPARSEARCH_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def seed(url: str, artifacts: Path, n_trials: int) -> tuple[str, str]:
    """A job with ``n_trials`` completed trials (every 25th on the front) and a token."""
    from sparsearch.jobconfig import JobConfig
    from sparsearch.storage import open_storage

    storage = open_storage(url, artifacts)
    cfg = JobConfig.create(
        target="tflm",  # the committed results compare with runs from before the C target
        dataset="digits",
        flash_bytes=24576,
        ram_bytes=6144,
        trials=n_trials,
    )
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner="bench")
    rng = random.Random(0)
    params = {f"b{i}_channels": rng.randint(2, 64) for i in range(4)}
    for i in range(n_trials):
        est = {
            "flash_bytes": rng.randint(5000, 24000),
            "ram_bytes": rng.randint(1000, 6000),
            "activation_bytes": rng.randint(500, 4000),
            "macs": rng.randint(10**3, 10**6),
            "nnz_flash_bytes": rng.randint(1000, 9000),
            "param_count": rng.randint(100, 9000),
        }
        storage.add_trial(
            job.id,
            i,
            status="running",
            params=params,
            generator="MBM",
            gen_seconds=rng.random() * 5,
            estimates=est,
            feasible=True,
            pruning={"method": "filter_norm", "level": 0.3},
        )
        storage.finish_trial(
            job.id,
            i,
            status="completed",
            train_seconds=rng.random() * 20,
            metrics={"accuracy": rng.random(), "test_accuracy": rng.random()},
        )
    storage.set_pareto(job.id, range(0, n_trials, 25))
    storage.set_job_status(job.id, "running")
    storage.set_job_status(job.id, "completed")
    _, token = storage.create_token("bench")
    storage.close()
    if url.startswith("postgresql"):
        # A served database has statistics: autovacuum analyzes a table within a minute of
        # 1,000 inserts. Right after seeding it has none, and the planner's guesses are not
        # what a running service sees.
        from sqlalchemy import create_engine, text

        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
        engine.dispose()
    return job.id, token


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, host: str, token: str
) -> int:
    """One keep-alive HTTP/1.1 GET on an open connection; returns the status code.

    A minimal client on purpose: httpx with thousands of pending requests spent more CPU than
    the server on this 2-core machine, so the generator, not the server, set the pace."""
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: application/json\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    if status == 200:
        json.loads(body)
    return status


async def load(
    base: str,
    token: str,
    job_id: str,
    rate: float,
    seconds: float,
    n_trials: int,
    connections: int = 64,
) -> dict:
    """Open loop: a producer enqueues each request at its scheduled time; ``connections``
    keep-alive workers send them. Latency counts from the scheduled time, so a backlog (server
    too slow) shows up as latency instead of silently lowering the offered rate."""
    host, port = base.removeprefix("http://").split(":")
    total = int(rate * seconds)
    queue: asyncio.Queue = asyncio.Queue()
    latencies: list[float] = []
    errors: dict[str, int] = {}

    def path_for(k: int) -> str:
        if k % 2 == 0:
            return f"/v1/jobs/{job_id}/pareto?limit=50"
        sort = ("index", "-accuracy", "flash_bytes", "ram_bytes")[(k // 2) % 4]
        return f"/v1/jobs/{job_id}/trials?limit=50&offset={(k * 50) % n_trials}&sort={sort}"

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        while True:
            item = await queue.get()
            if item is None:
                writer.close()
                return
            scheduled, path = item
            try:
                status = await _get(reader, writer, path, host, token)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, int(port))
                continue
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
                continue
            latencies.append(time.perf_counter() - scheduled)

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.2
    for k in range(total):
        scheduled = start + k / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((scheduled, path_for(k)))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        if not latencies:
            return float("nan")
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "requests": total,
        "ok": len(latencies),
        "errors": errors,
        "elapsed_s": round(elapsed, 2),
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
    }


def host_loop_seconds() -> float:
    """Seconds for a fixed pure-Python loop (10**7 additions), taken before each run: this
    shared VM's speed varies by 2x from one moment to the next, and a run's latencies only
    compare with another's taken at a similar speed."""
    start = time.perf_counter()
    total = 0
    for i in range(10**7):
        total += i
    return round(time.perf_counter() - start, 2)


def run_backend(name: str, url: str, args: argparse.Namespace, workdir: Path) -> dict:
    host_loop_s = host_loop_seconds()
    artifacts = workdir / f"artifacts-{name}"
    job_id, token = seed(url, artifacts, args.trials)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")},
        "SPARSEARCH_DATABASE_URL": url,
        "SPARSEARCH_ARTIFACT_DIR": str(artifacts),
        **({"SPARSEARCH_API_THREADS": str(args.threads)} if args.threads else {}),
    }
    server = subprocess.Popen(
        [
            SPARSEARCH,
            "serve",
            "--no-scheduler",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(load(base, token, job_id, args.rate, 3, args.trials))  # warm-up
        result = asyncio.run(load(base, token, job_id, args.rate, args.seconds, args.trials))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    return {
        "backend": name,
        "host_loop_s": host_loop_s,
        **result,
        "meets_target": result["p99_ms"] < 50 and not result["errors"],
    }


def one_backend(name: str, args: argparse.Namespace, workdir: Path) -> dict:
    """Seed a fresh database (a new SQLite file, or a new PostgreSQL database dropped after),
    start a server on it and measure."""
    workdir.mkdir(parents=True, exist_ok=True)
    if name == "sqlite":
        return run_backend(name, f"sqlite:///{workdir / 'load.db'}", args, workdir)
    from sqlalchemy import create_engine, text

    db = f"sparsearch_load_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    try:
        return run_backend(name, PG_ADMIN.rsplit("/", 1)[0] + f"/{db}", args, workdir)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{db}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=2, help="API worker processes (serve --workers)")
    ap.add_argument(
        "--threads", type=int, help="threads per worker (SPARSEARCH_API_THREADS; default: serve's)"
    )
    ap.add_argument("--backends", nargs="+", default=["sqlite", "postgres"])
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs per backend (each on a fresh database)"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="sparsearch-load-"))
    results = []
    for run in range(1, args.repeat + 1):
        for name in args.backends:
            results.append({"run": run, **one_backend(name, args, workdir / f"run{run}")})
    doc = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rate_rps": args.rate,
        "seconds": args.seconds,
        "trials_in_job": args.trials,
        "server": f"sparsearch serve --no-scheduler --workers {args.workers}; load generator "
        f"on the same {os.cpu_count()}-core machine",
        "results": results,
    }
    text_out = json.dumps(doc, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text_out + "\n")
    print(text_out)


if __name__ == "__main__":
    main()
