"""Commands about jobs wherever they live, the local database or a server (``--server``):
``jobs``, ``status``, ``pareto``, ``pull``, ``submit`` and ``cancel``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from sparsearch.cli.common import (
    AccountingOption,
    ArtifactsOption,
    DbOption,
    EarlyStoppingOption,
    EpochsOption,
    FlashOption,
    InstructionsOption,
    MacsOption,
    OnOff,
    ParallelOption,
    RamMarginOption,
    RamOption,
    SeedOption,
    ServerOption,
    SpaceOption,
    StrategyName,
    StrategyOption,
    TargetName,
    TargetOption,
    TokenOption,
    TrialsOption,
    backend,
    check_instructions,
    check_int,
    err,
    fail,
    out,
    read_space,
    say,
)
from sparsearch.cli.search import instructions_note, print_front
from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.units import format_size, parse_size
from sparsearch.vocabulary import (
    ARTIFACT_KINDS,
    DEFAULT_STRATEGY,
    JOB_STATUSES,
    SETTLED_JOB_STATUSES,
)


def jobs(
    status: str | None = typer.Option(
        None, metavar="STATUS", help=f"Only jobs with this status ({' | '.join(JOB_STATUSES)})"
    ),
    limit: int = typer.Option(50, metavar="N", help="At most N jobs (1-1000), newest first"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List search jobs (local database, or --server)."""
    from sparsearch.cli.render import jobs_table

    try:
        if status is not None and status not in JOB_STATUSES:
            raise ConfigError(
                f"unknown job status {status!r}", f"choose one of {', '.join(JOB_STATUSES)}"
            )
        if not 1 <= limit <= 1000:
            raise ConfigError(f"--limit must be from 1 to 1000, got {limit}")
        rows = backend(server, token, db).list_jobs(status=status, limit=limit)
    except SparsearchError as e:
        fail(e)
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        out.print(jobs_table(rows))


def pareto(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a job's Pareto front (accuracy vs flash vs RAM)."""
    try:
        source = backend(server, token, db)
        job, front = source.get_job(job_id), source.pareto(job_id)
    except SparsearchError as e:
        fail(e)
    if as_json:
        sys.stdout.write(json.dumps(front) + "\n")
    else:
        print_front({**job, "pareto": front})


def pull(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    trial: int | None = typer.Option(
        None, metavar="N", help="Trial index (default: the most accurate on the front)"
    ),
    fmt: str = typer.Option(
        "tflite",
        "--format",
        metavar="KIND",
        help="; ".join(f"{k.name}: {k.description}" for k in ARTIFACT_KINDS.values()),
    ),
    output: Path = typer.Option(..., "-o", "--output", metavar="FILE", help="File to write"),
    search_run: bool = typer.Option(
        False,
        "--search-run",
        help="The model of the trial's search run even when it has a finalized one",
    ),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Save a trial's model as .tflite, C source, ONNX or weights.

    The most accurate front trial unless --trial, its finalized model when `finalize` made one
    (unless --search-run), as an int8 .tflite unless --format."""
    try:
        if fmt not in ARTIFACT_KINDS:
            raise ConfigError(
                f"unknown format {fmt!r}", f"choose one of {', '.join(ARTIFACT_KINDS)}"
            )
        check_int(trial, "--trial", hint="trial indices start at 0")
        source = backend(server, token, db, artifacts)
        if trial is None:
            trial = source.best(job_id)["index"]
        data, final = source.artifact(job_id, trial, fmt, final=False if search_run else None)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(data)
        except OSError as e:
            raise ConfigError(
                f"cannot write {output}: {e.strerror or e}", "pass a writable file path with -o"
            ) from e
    except SparsearchError as e:
        fail(e)
    model = "final model" if final else "search run"
    say(f"wrote {output} ({len(data)} B, {fmt}, job {job_id} trial {trial}, {model})")


def submit(
    dataset: str = typer.Option(
        "digits",
        metavar="NAME",
        help="digits | fashion-mnist | an uploaded dataset id (on the server)",
    ),
    flash: str = FlashOption,
    ram: str = RamOption,
    macs: str | None = MacsOption,
    max_instructions: int | None = InstructionsOption,
    ram_margin: str | None = RamMarginOption,
    trials: int = TrialsOption,
    parallel: int = ParallelOption,
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    flash_accounting: str = AccountingOption,
    strategy: StrategyName | None = StrategyOption,
    target: TargetName = TargetOption,
    early_stopping: OnOff = EarlyStoppingOption,
    space: Path | None = SpaceOption,
    watch: bool = typer.Option(False, "--watch", help="Follow the job until it finishes"),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON"),
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Submit a search job to a server; prints the job id.

    The job id is the last line of stdout (or the job as JSON with --json)."""
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
            "strategy": strategy or DEFAULT_STRATEGY,
            "target": target,
            "early_stopping": early_stopping == "on",
        }
        if macs:
            body["limits"]["macs"] = parse_size(macs, what="--macs")
        if max_instructions is not None:
            check_instructions(max_instructions)
            body["limits"]["instructions"] = max_instructions
        if ram_margin:
            body["limits"]["ram_margin_bytes"] = parse_size(ram_margin, what="--ram-margin")
        if space is not None:  # checked here as the server will, to name the file
            body["space"] = read_space(space, flash_accounting)[0]
        source = backend(server, token, None)
        job = source.create_job(body)
    except SparsearchError as e:
        fail(e)
    lim = job["limits"]
    say(
        f"submitted job {job['id']} to {server}: {dataset}, flash ≤ "
        f"{lim['flash_bytes']} B, RAM ≤ {lim['ram_bytes']} B{instructions_note(lim)}, {trials} "
        "trials, strategy "
        f"{job.get('strategy', body['strategy'])}, target {job.get('target', body['target'])}"
    )
    if watch:
        job = _watch(source, job["id"])
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
    else:
        sys.stdout.write(job["id"] + "\n")


def status(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    watch: bool = typer.Option(False, "--watch", help="Show progress until the job finishes"),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a job's status and progress.

    From the local database, or from a server with --server."""
    try:
        source = backend(server, token, db)
        job = _watch(source, job_id) if watch else source.get_job(job_id)
    except SparsearchError as e:
        fail(e)
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
        return
    p = job["progress"]
    best = job["best_accuracy"]
    hv = job["hypervolume"]
    uncharged = f", uncharged {p['uncharged']}" if p.get("uncharged") else ""
    uncharged += f", stopped {p['stopped']}" if p.get("stopped") else ""
    out.print(
        escape(
            f"job {job['id']}: {job['status']} · {job.get('strategy', '-')} · target "
            f"{job.get('target', '-')} · trained "
            f"{p['trained']}/{p['budget']} (completed {p['completed']}, failed {p['failed']}, "
            f"running {p['running']}, infeasible {p['infeasible']}{uncharged}) · screened "
            f"{p.get('screened', 0)} · best {'-' if best is None else f'{best:.3f}'} · "
            f"HV {'-' if hv is None else f'{hv:.3f}'} · flash ≤ "
            f"{format_size(job['limits']['flash_bytes'])}, RAM ≤ "
            f"{format_size(job['limits']['ram_bytes'])}{instructions_note(job['limits'])}"
        ),
        highlight=False,
    )
    if job.get("error"):
        out.print(escape(f"error: {job['error']}"), highlight=False)


def cancel(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    as_json: bool = typer.Option(False, "--json", help="Print the job as JSON"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Cancel a job, queued or running.

    A queued or interrupted job at once; a running one (on a scheduler or in a local
    `sparsearch search`) at its driver's next check, within about a second."""
    try:
        job = backend(server, token, db).cancel(job_id)
    except SparsearchError as e:
        fail(e)
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
        return
    if job["status"] == "cancelled":
        say(f"job {job_id} cancelled")
    else:
        say(f"job {job_id}: cancel requested; its driver stops it within about a second")


def _watch(source: Any, job_id: str, *, interval: float = 2.0) -> dict[str, Any]:
    """Poll the job with a Rich progress bar on stderr until it reaches a final status."""
    from sparsearch.cli.render import SearchProgress

    job = source.get_job(job_id)
    with SearchProgress(err, job["progress"]["budget"]) as bar:
        while True:
            p = job["progress"]
            bar.update(_ProgressView(p, job))
            if job["status"] in SETTLED_JOB_STATUSES:
                return job
            time.sleep(interval)
            job = source.get_job(job_id)


class _ProgressView:
    """Adapts the API's job JSON to what SearchProgress.update reads."""

    def __init__(self, p: dict[str, int], job: dict[str, Any]) -> None:
        self.trained, self.running = p["trained"], p["running"]
        self.failed, self.infeasible = p["failed"], p["infeasible"]
        self.screened = p.get("screened", 0)
        self.best_accuracy = job["best_accuracy"]
        self.hypervolume = job["hypervolume"] or 0.0
