"""``sparsearch finalize`` (retrain chosen front trials for the model you ship) and
``sparsearch export`` (the .tflite and C source of trials stored before deployment existed)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

from sparsearch.cli.common import (
    ArtifactsOption,
    DbOption,
    FinalizeTargetOption,
    ServerOption,
    TargetName,
    TokenOption,
    check_int,
    fail,
    open_from,
    out,
    say,
    settings_from,
)
from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.jobconfig import MAX_EPOCHS

#: A list of trial indices: ASCII digits and commas (``int()`` would also take ``٣`` or ``1_0``).
_TRIAL_LIST = re.compile(r"^[0-9]+(,[0-9]+)*$", re.ASCII)


def _trial_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    compact = text.replace(" ", "").strip(",")
    if not _TRIAL_LIST.match(compact):
        raise ConfigError(
            f"--trials {text!r} is not a list of trial indices",
            "write it like --trials 3,7 (ASCII digits, indices start at 0)",
        )
    values = [int(v) for v in compact.split(",")]
    for value in values:
        check_int(value, "--trials", hint="trial indices start at 0")
    return values


def finalize(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    trials: str | None = typer.Option(
        None, metavar="N,N", help="Trial indices to finalize, e.g. 3,7"
    ),
    front: bool = typer.Option(False, "--front", help="Finalize every trial on the front"),
    epochs: int | None = typer.Option(
        None, metavar="N", help="Training epochs (default: 4x the search's), on train + validation"
    ),
    target: TargetName | None = FinalizeTargetOption,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Retrain chosen front trials longer, for the model you ship.

    Retrains them from scratch on the whole training split (train + validation) for more
    epochs, exports and measures them on TFLite Micro, and stores them as the trials' final
    models (which `pull` then takes). Default: the most accurate front trial. Runs here on Ray,
    or on a server's scheduler with --server; resumable with `search --resume` like a job."""
    from sparsearch.cli.search import run_job
    from sparsearch.service.holder import JobHolder

    holder: Any = None
    try:
        chosen = _trial_list(trials)
        check_int(epochs, "--epochs", low=1, high=MAX_EPOCHS)
        if server:
            _finalize_remote(server, token, job_id, chosen, front, epochs, target, as_json)
            return
        settings = settings_from(db, artifacts)
        storage = open_from(settings)
        from sparsearch.jobconfig import mark_queued, plan_finalize

        cfg, indices = plan_finalize(
            storage, job_id, trials=chosen, front=front, epochs=epochs, target=target
        )
        holder = JobHolder(storage, settings)
        job = holder.create(dataset=cfg.dataset, config=cfg.to_dict())
        mark_queued(storage, job)
    except SparsearchError as e:
        if holder is not None:
            holder.close()
        fail(e)
    say(
        f"job {job.id}: final training of job {job_id} trial(s) "
        f"{', '.join(map(str, indices))} for {cfg.budget.epochs} epochs on train + validation, "
        f"target {cfg.target}"
    )
    with holder:
        run_job(storage, job, settings, data=None, as_json=as_json, holder=holder)


def _finalize_remote(
    server: str,
    token: str | None,
    job_id: str,
    trials: list[int] | None,
    front: bool,
    epochs: int | None,
    target: str | None,
    as_json: bool,
) -> None:
    from sparsearch.client import RemoteBackend

    body: dict[str, Any] = {"front": front}
    if trials is not None:
        body["trials"] = trials
    if epochs is not None:
        body["epochs"] = epochs
    if target is not None:
        body["target"] = target
    job = RemoteBackend(server, token).finalize(job_id, body)
    if as_json:
        sys.stdout.write(json.dumps(job) + "\n")
    say(f"queued finalize job {job['id']}; follow it with `sparsearch status {job['id']} --watch`")
    if not as_json:
        out.print(job["id"])


def export(
    job_id: str = typer.Argument(..., metavar="JOB", help="Job id (see `sparsearch jobs`)"),
    trial: int | None = typer.Option(
        None, metavar="N", help="Trial index (default: every completed trial not measured yet)"
    ),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Export and measure trials stored before deployment existed.

    Writes their int8 .tflite and C source from the stored weights, with flash, RAM and int8
    accuracy measured on TFLite Micro. Without --trial, every completed trial not measured yet;
    --trial N exports N again."""
    from sparsearch.search.export import export_stored

    try:
        check_int(trial, "--trial", hint="trial indices start at 0")
        storage = open_from(settings_from(db, artifacts))
        done = export_stored(storage, job_id, trial, on_trial=lambda msg: say(msg))
    except SparsearchError as e:
        fail(e)
    say(f"exported {done} trial(s) of job {job_id}")
