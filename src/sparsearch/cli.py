"""The ``sparsearch`` command line (Typer + Rich).

Heavy libraries (torch, Ray, Ax) are imported inside commands, so ``sparsearch --help`` starts
fast. Every SparsearchError becomes a two-line message (what, then what to do) and exit code 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.units import parse_size

app = typer.Typer(
    help="Find neural networks that fit a microcontroller.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(db_app, name="db")

# soft_wrap: messages (paths, URLs) are never broken across lines at the terminal width.
err = Console(stderr=True, soft_wrap=True)
out = Console()

#: What ``pull --format`` can write (the artifacts every completed trial stores).
PULL_FORMATS: tuple[str, ...] = ("state_dict", "onnx")

DbOption = typer.Option(None, "--db", help="Database URL [env SPARSEARCH_DATABASE_URL]")
ArtifactsOption = typer.Option(
    None, "--artifacts", help="Artifact directory [env SPARSEARCH_ARTIFACT_DIR]"
)


def _settings(db: str | None = None, artifacts: Path | None = None) -> Any:
    from pydantic import ValidationError

    from sparsearch.config import Settings

    overrides: dict[str, Any] = {}
    if db:
        overrides["database_url"] = db
    if artifacts:
        overrides["artifact_dir"] = artifacts
    try:
        return Settings(**overrides)
    except ValidationError as e:
        bad = "; ".join(
            f"SPARSEARCH_{'_'.join(map(str, x['loc'])).upper()}: {x['msg']}" for x in e.errors()
        )
        raise ConfigError(f"invalid setting {bad}", "fix or unset that environment variable") from e


def _masked(url: str) -> str:
    """A database URL fit for messages (password replaced by ***)."""
    from sparsearch.storage import mask_url

    return mask_url(url)


def _open(settings: Any) -> Any:
    from sparsearch.storage import open_storage

    return open_storage(settings.database_url, settings.artifact_dir)


def _print_error(e: SparsearchError) -> None:
    # escape(): messages quote user input (paths, names) that Rich would read as markup.
    err.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False)
    if e.hint:
        err.print(f"[bold]hint:[/] {escape(e.hint)}", highlight=False)


def _fail(e: SparsearchError) -> None:
    _print_error(e)
    raise typer.Exit(e.exit_code)


def _job_document(storage: Any, job_id: str) -> dict[str, Any]:
    """The --json document: job, limits, hypervolume, every trial, the front."""
    job = storage.get_job(job_id)
    trials = [t.to_json() for t in storage.list_trials(job_id)]
    return {
        "job_id": job.id,
        "status": job.status,
        "error": job.error,
        "dataset": job.config["dataset"],
        "limits": job.config["limits"],
        "budget": job.config["budget"],
        "flash_accounting": job.config.get("flash_accounting", "dense"),
        "hypervolume": job.hypervolume,
        "best_accuracy": job.best_accuracy,
        "trials": trials,
        "pareto": [t for t in trials if t["pareto"]],
    }


def _print_front(doc: dict[str, Any]) -> None:
    """Print a front table; ``doc`` needs job_id (or id), status, hypervolume, pareto."""
    from sparsearch.render import front_table

    hv = doc["hypervolume"]
    title = (
        f"Pareto front of job {doc.get('job_id') or doc['id']} ({doc['status']}, "
        f"hypervolume {0.0 if hv is None else hv:.3f})"
    )
    front = sorted(doc["pareto"], key=lambda t: -t["accuracy"])
    out.print(front_table(front, title=title))
    if not front:
        out.print("no feasible completed trial yet")


ServerOption = typer.Option(
    None,
    "--server",
    envvar="SPARSEARCH_SERVER",
    help="sparsearch server URL; without it, commands read the local database",
)
TokenOption = typer.Option(
    None,
    "--token",
    envvar="SPARSEARCH_TOKEN",
    help="API token for --server",
)


def _backend(
    server: str | None, token: str | None, db: str | None, artifacts: Path | None = None
) -> Any:
    from sparsearch.client import LocalBackend, RemoteBackend

    if server:
        return RemoteBackend(server, token)
    return LocalBackend(_open(_settings(db, artifacts)))


# The job options `search` (local) and `submit` (to a server) share.
FlashOption = typer.Option("32KiB", help="Flash limit (24KiB = 24*1024 B, 24KB = 24000 B)")
RamOption = typer.Option("8KiB", help="RAM limit (same units)")
MacsOption = typer.Option(None, help="Optional limit on multiply-accumulates")
TrialsOption = typer.Option(8, help="Trained trials (completed + failed)")
ParallelOption = typer.Option(2, help="Trials trained at once on Ray")
EpochsOption = typer.Option(6, help="Training epochs per trial")
SeedOption = typer.Option(0, help="Seed of the optimizer, data split and training")
AccountingOption = typer.Option("dense", help="dense (.tflite size) | sparse (non-zeros)")


@app.command()
def search(
    dataset: str = typer.Option("digits", help="digits | fashion-mnist | idx:DIR | npz:FILE"),
    flash: str = FlashOption,
    ram: str = RamOption,
    macs: str | None = MacsOption,
    trials: int = TrialsOption,
    parallel: int = ParallelOption,
    epochs: int = EpochsOption,
    seed: int = SeedOption,
    flash_accounting: str = AccountingOption,
    train_limit: int | None = typer.Option(None, help="Use a stratified training subset"),
    resume: str | None = typer.Option(None, help="Continue an interrupted job by id"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Run a multi-objective architecture + pruning search on this machine."""
    try:
        settings = _settings(db, artifacts)
        if resume is None:
            from sparsearch.jobconfig import JobConfig

            cfg = JobConfig.create(
                dataset=dataset,
                flash_bytes=parse_size(flash, what="--flash"),
                ram_bytes=parse_size(ram, what="--ram"),
                macs=parse_size(macs, what="--macs") if macs else None,
                trials=trials,
                parallel=parallel,
                epochs=epochs,
                seed=seed,
                flash_accounting=flash_accounting,
                train_limit=train_limit,
            )
            from sparsearch.worker.data import load_dataset

            # Load (and so validate) the data before a job row exists: bad data creates nothing.
            data = load_dataset(cfg.dataset, seed=cfg.seed, train_limit=cfg.train_limit)
        else:
            data = None
        storage = _open(settings)
        job = (
            storage.get_job(resume)
            if resume
            else storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())
        )
    except SparsearchError as e:
        _fail(e)
    lim, bud = job.config["limits"], job.config["budget"]
    err.print(
        escape(
            f"job {job.id}: {job.config['dataset']}, flash ≤ {lim['flash_bytes']} B, "
            f"RAM ≤ {lim['ram_bytes']} B, {bud['trials']} trials ({bud['parallel']} parallel, "
            f"{bud['epochs']} epochs), database {_masked(settings.database_url)}"
        ),
        highlight=False,
    )
    _run_job(storage, job, settings, data=data, as_json=as_json)


def _run_job(storage: Any, job: Any, settings: Any, *, data: Any, as_json: bool) -> None:
    from sparsearch.render import SearchProgress
    from sparsearch.search.driver import SearchDriver

    code = 0
    try:
        with SearchProgress(err, job.config["budget"]["trials"]) as bar:
            SearchDriver(
                storage,
                job.id,
                ray_address=settings.ray_address,
                ray_num_cpus=settings.ray_num_cpus,
                ray_object_store_mb=settings.ray_object_store_mb,
                on_progress=bar.update,
                data=data,
            ).run()
    except KeyboardInterrupt:
        err.print(
            escape(
                f"interrupted: resume with `sparsearch search --resume {job.id} "
                f"--db {_masked(settings.database_url)}`"
            ),
            highlight=False,
        )
        code = 130
    except SparsearchError as e:
        _print_error(e)
        code = 1
    doc = _job_document(storage, job.id)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        _print_front(doc)
    raise typer.Exit(code)


@app.command()
def jobs(
    status: str | None = typer.Option(None, help="Only jobs with this status"),
    limit: int = typer.Option(50),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """List search jobs (local database, or --server)."""
    from sparsearch.render import jobs_table
    from sparsearch.storage import JOB_STATUSES

    try:
        if status is not None and status not in JOB_STATUSES:
            raise ConfigError(
                f"unknown job status {status!r}", f"choose one of {', '.join(JOB_STATUSES)}"
            )
        if not 1 <= limit <= 1000:
            raise ConfigError(f"--limit must be from 1 to 1000, got {limit}")
        rows = _backend(server, token, db).list_jobs(status=status, limit=limit)
    except SparsearchError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        out.print(jobs_table(rows))


@app.command()
def pareto(
    job_id: str,
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Show a job's Pareto front (accuracy vs flash vs RAM)."""
    try:
        source = _backend(server, token, db)
        job, front = source.get_job(job_id), source.pareto(job_id)
    except SparsearchError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(front) + "\n")
    else:
        _print_front({**job, "pareto": front})


@app.command()
def pull(
    job_id: str,
    trial: int | None = typer.Option(None, help="Trial index (default: best on the front)"),
    fmt: str = typer.Option("onnx", "--format", help="state_dict | onnx"),
    output: Path = typer.Option(..., "-o", "--output", help="File to write"),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Write a trial's model artifact to a file (default: the most accurate front trial)."""
    try:
        if fmt not in PULL_FORMATS:
            raise ConfigError(f"unknown format {fmt!r}", f"choose one of {', '.join(PULL_FORMATS)}")
        if trial is not None and trial < 0:
            raise ConfigError(f"--trial must be >= 0, got {trial}", "trial indices start at 0")
        source = _backend(server, token, db, artifacts)
        if trial is None:
            trial = source.best(job_id)["index"]
        data = source.artifact(job_id, trial, fmt)
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(data)
        except OSError as e:
            raise ConfigError(
                f"cannot write {output}: {e.strerror or e}", "pass a writable file path with -o"
            ) from e
    except SparsearchError as e:
        _fail(e)
    err.print(
        escape(f"wrote {output} ({len(data)} B, {fmt}, job {job_id} trial {trial})"),
        highlight=False,
    )


@db_app.command("upgrade")
def db_upgrade(db: str | None = DbOption) -> None:
    """Apply database migrations (also done automatically on first use)."""
    from sparsearch.storage import upgrade

    try:
        settings = _settings(db)
        upgrade(settings.database_url)
    except SparsearchError as e:
        _fail(e)
    err.print(escape(f"database {_masked(settings.database_url)} is up to date"), highlight=False)


def main() -> None:  # pragma: no cover - console entry
    app()


# Service commands (serve, scheduler, token) and job commands that also work against a server
# (submit, status) live in their own modules; importing them registers them on `app`.
from sparsearch import cli_client as _cli_client  # noqa: E402, F401
from sparsearch import cli_service as _cli_service  # noqa: E402, F401
