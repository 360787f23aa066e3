"""``sparsearch search``: run a search on this machine, with a progress bar, then print the
front (or the ``--json`` document scripts read)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import typer

from sparsearch.cli.common import (
    AccountingOption,
    ArtifactsOption,
    DbOption,
    EpochsOption,
    FlashOption,
    MacsOption,
    ParallelOption,
    RamOption,
    SeedOption,
    TrialsOption,
    err,
    fail,
    masked,
    open_from,
    out,
    print_error,
    say,
    settings_from,
)
from sparsearch.errors import SparsearchError
from sparsearch.units import parse_size


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
        settings = settings_from(db, artifacts)
        if resume is None:
            from sparsearch.datasets import load_dataset
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
            # Load (and so validate) the data before a job row exists: bad data creates nothing.
            data = load_dataset(cfg.dataset, seed=cfg.seed, train_limit=cfg.train_limit)
        else:
            data = None
        storage = open_from(settings)
        job = (
            storage.get_job(resume)
            if resume
            else storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())
        )
    except SparsearchError as e:
        fail(e)
    lim, bud = job.config["limits"], job.config["budget"]
    say(
        f"job {job.id}: {job.config['dataset']}, flash ≤ {lim['flash_bytes']} B, "
        f"RAM ≤ {lim['ram_bytes']} B, {bud['trials']} trials ({bud['parallel']} parallel, "
        f"{bud['epochs']} epochs), database {masked(settings.database_url)}"
    )
    run_job(storage, job, settings, data=data, as_json=as_json)


def run_job(storage: Any, job: Any, settings: Any, *, data: Any, as_json: bool) -> None:
    """Drive ``job`` to its end with a progress bar; exit 130 on Ctrl-C, 143 on SIGTERM (both
    leave the job ``interrupted``), 1 on a failed job."""
    from sparsearch.cli.render import SearchProgress
    from sparsearch.search.driver import SearchDriver

    code = 0
    previous = signal.signal(signal.SIGTERM, _terminate)
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
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): a graceful stop
        stopped = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        say(f"{stopped}: resume with {_resume_command(job.id, settings)}")
        code = 143 if isinstance(e, Terminated) else 130
    except SparsearchError as e:
        print_error(e.message, e.hint)
        code = 1
        if storage.get_job(job.id).status == "interrupted":  # e.g. the Ray cluster was away
            say(f"job {job.id} is interrupted; resume it with {_resume_command(job.id, settings)}")
    finally:
        signal.signal(signal.SIGTERM, previous)
    doc = job_document(storage, job.id)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        print_front(doc)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM to a running search: stopped as Ctrl-C stops it (the job ``interrupted``, its
    in-flight trials ``failed`` "interrupted"), exit status 143."""


def _terminate(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop: a second SIGTERM must not cut it
    raise Terminated


def _resume_command(job_id: str, settings: Any) -> str:
    return f"`sparsearch search --resume {job_id} --db {masked(settings.database_url)}`"


def job_document(storage: Any, job_id: str) -> dict[str, Any]:
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


def print_front(doc: dict[str, Any]) -> None:
    """Print a front table; ``doc`` needs job_id (or id), status, hypervolume, pareto, and may
    say flash_accounting (default dense: a sparse job's table shows the non-zero flash)."""
    from sparsearch.cli.render import front_table

    hv = doc["hypervolume"]
    title = (
        f"Pareto front of job {doc.get('job_id') or doc['id']} ({doc['status']}, "
        f"hypervolume {0.0 if hv is None else hv:.3f})"
    )
    front = sorted(doc["pareto"], key=lambda t: -t["accuracy"])
    accounting = doc.get("flash_accounting") or "dense"
    out.print(front_table(front, title=title, flash_accounting=accounting))
    if not front:
        out.print("no feasible completed trial yet")
