"""CLI commands that talk to a job wherever it lives: ``submit`` (to a server) and ``status``
(a server's job or a local one). Registered onto the main Typer app by ``cli.py``."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import typer
from rich.markup import escape

from sparsearch.cli import (
    AccountingOption,
    DbOption,
    EpochsOption,
    FlashOption,
    MacsOption,
    ParallelOption,
    RamOption,
    SeedOption,
    ServerOption,
    TokenOption,
    TrialsOption,
    _backend,
    _fail,
    app,
    err,
    out,
)
from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.units import format_size, parse_size

FINISHED = ("completed", "failed", "cancelled")


@app.command()
def submit(
    dataset: str = typer.Option(
        "digits", help="digits | fashion-mnist | an uploaded dataset id (on the server)"
    ),
    flash: str = FlashOption,
    ram: str = RamOption,
    macs: str | None = MacsOption,
    trials: int = TrialsOption,
    parallel: int = ParallelOption,
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    flash_accounting: str = AccountingOption,
    watch: bool = typer.Option(False, "--watch", help="Follow the job until it finishes"),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON"),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Submit a search job to a sparsearch server; prints the job id (last line of stdout)."""
    try:
        if not server:
            raise ConfigError(
                "submit needs a server",
                "pass --server URL or set "
                "SPARSEARCH_SERVER; for a local search use `sparsearch search`",
            )
        body: dict[str, Any] = {
            "dataset": dataset,
            "limits": {
                "flash_bytes": parse_size(flash, what="--flash"),
                "ram_bytes": parse_size(ram, what="--ram"),
            },
            "budget": {"trials": trials, "parallel": parallel, "epochs": epochs},
            "seed": seed,
            "flash_accounting": flash_accounting,
        }
        if macs:
            body["limits"]["macs"] = parse_size(macs, what="--macs")
        source = _backend(server, token, None)
        job = source.create_job(body)
    except SparsearchError as e:
        _fail(e)
    lim = job["limits"]
    err.print(
        escape(
            f"submitted job {job['id']} to {server}: {dataset}, flash ≤ "
            f"{lim['flash_bytes']} B, RAM ≤ {lim['ram_bytes']} B, {trials} trials"
        ),
        highlight=False,
    )
    if watch:
        job = _watch(source, job["id"])
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
    else:
        sys.stdout.write(job["id"] + "\n")


@app.command()
def status(
    job_id: str,
    watch: bool = typer.Option(False, "--watch", help="Show progress until the job finishes"),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a job's status and progress (local database, or --server)."""
    try:
        source = _backend(server, token, db)
        job = _watch(source, job_id) if watch else source.get_job(job_id)
    except SparsearchError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
        return
    p = job["progress"]
    best = job["best_accuracy"]
    hv = job["hypervolume"]
    out.print(
        escape(
            f"job {job['id']}: {job['status']} · trained {p['trained']}/{p['budget']} "
            f"(completed {p['completed']}, failed {p['failed']}, running {p['running']}, "
            f"infeasible {p['infeasible']}) · best {'-' if best is None else f'{best:.3f}'} · "
            f"HV {'-' if hv is None else f'{hv:.3f}'} · flash ≤ "
            f"{format_size(job['limits']['flash_bytes'])}, RAM ≤ "
            f"{format_size(job['limits']['ram_bytes'])}"
        ),
        highlight=False,
    )
    if job.get("error"):
        out.print(escape(f"error: {job['error']}"), highlight=False)


def _watch(source: Any, job_id: str, *, interval: float = 2.0) -> dict[str, Any]:
    """Poll the job with a Rich progress bar on stderr until it reaches a final status."""
    from sparsearch.render import SearchProgress

    job = source.get_job(job_id)
    with SearchProgress(err, job["progress"]["budget"]) as bar:
        while True:
            p = job["progress"]
            bar.update(_ProgressView(p, job))
            if job["status"] in FINISHED or job["status"] == "interrupted":
                return job
            time.sleep(interval)
            job = source.get_job(job_id)


class _ProgressView:
    """Adapts the API's job JSON to what SearchProgress.update reads."""

    def __init__(self, p: dict[str, int], job: dict[str, Any]) -> None:
        self.trained, self.running = p["trained"], p["running"]
        self.failed, self.infeasible = p["failed"], p["infeasible"]
        self.best_accuracy = job["best_accuracy"]
        self.hypervolume = job["hypervolume"] or 0.0
