"""Turning storage records into API models, and API requests into the engine's configs (the
one place that knows both shapes)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sparsearch.api.schemas import JobCreate, JobPublic, Progress, SpaceIn
from sparsearch.jobconfig import JobConfig, default_space
from sparsearch.space.params import SpaceConfig
from sparsearch.vocabulary import TFLM_RUNTIME_FLASH, accounted_flash_field, target_of


def field_errors(errors: list[Any]) -> list[dict[str, Any]]:
    """Pydantic's validation errors as the API's 422 lists them: ``loc`` (strings, without the
    ``body`` prefix in ``where``), ``msg``, ``type``; one shape for the API and the dashboard."""
    found = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        where = ".".join(p for p in loc if p != "body") or "body"
        found.append(
            {
                "loc": loc,
                "where": where,
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return found


def space_config(
    space: SpaceIn | None, *, flash_accounting: str, pruning_methods: list[str] | None = None
) -> SpaceConfig:
    """A job's search space: the default of its flash accounting with ``space``'s overrides
    (and ``pruning_methods``). ConfigError (-> 422, exit 2) for values SpaceConfig rejects. The
    one conversion of ``JobCreate.space``: the API and the CLI's ``--space FILE`` use it."""
    result = default_space(flash_accounting)
    overrides = space.model_dump(exclude_none=True) if space else {}
    if pruning_methods is not None:
        overrides["pruning_methods"] = tuple(dict.fromkeys(pruning_methods))
    if overrides:
        fields = {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in overrides.items()}
        result = replace(result, **fields)
    return result


def job_config(body: JobCreate) -> JobConfig:
    """JobCreate -> the engine's JobConfig; ConfigError (-> 422) for combinations it rejects."""
    return JobConfig.create(
        dataset=body.dataset,
        flash_bytes=body.limits.flash_bytes,
        ram_bytes=body.limits.ram_bytes,
        macs=body.limits.macs,
        instructions=body.limits.instructions,
        ram_margin_bytes=body.limits.ram_margin_bytes,
        trials=body.budget.trials,
        parallel=body.budget.parallel,
        epochs=body.budget.epochs,
        seed=body.seed,
        flash_accounting=body.flash_accounting,
        space=space_config(
            body.space,
            flash_accounting=body.flash_accounting,
            pruning_methods=body.pruning_methods,
        ),
        strategy=body.strategy,
        target=body.target,
        early_stopping=body.early_stopping,
    )


def job_public(job: Any, counts: dict[str, int]) -> JobPublic:
    """``counts``: the job's entry of ``Storage.trial_counts`` (completed and failed count
    charged trials only: their sum is what counts against the budget)."""
    cfg = job.config
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    return JobPublic(
        id=job.id,
        status=job.status,
        owner=job.owner,
        dataset=cfg["dataset"],
        # Jobs stored before the instructions limit have none.
        limits={**cfg["limits"], "instructions": cfg["limits"].get("instructions")},
        budget=cfg["budget"],
        seed=cfg.get("seed", 0),
        flash_accounting=cfg.get("flash_accounting", "dense"),
        strategy=job.strategy,
        target=target_of(cfg),
        early_stopping=bool(cfg.get("early_stopping", False)),
        finalizes=(cfg.get("finalize") or {}).get("job_id"),
        progress=Progress(
            budget=cfg["budget"]["trials"],
            trained=completed + failed,
            completed=completed,
            running=counts.get("running", 0) + counts.get("queued", 0),
            failed=failed,
            infeasible=counts.get("infeasible", 0),
            uncharged=counts.get("uncharged", 0),
            screened=getattr(job, "screened", 0),
            over_limit=counts.get("over_limit", 0),
            stopped=counts.get("stopped", 0),
        ),
        best_accuracy=job.best_accuracy,
        hypervolume=job.hypervolume,
        error=job.error,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


def jobs_public(storage: Any, jobs: list[Any]) -> list[JobPublic]:
    counts = storage.trial_counts([j.id for j in jobs]) if jobs else {}
    return [job_public(j, counts.get(j.id, {})) for j in jobs]


def front_trial(trial: Any, flash_accounting: str) -> dict[str, Any]:
    """A front trial's document (``FrontTrialPublic``): the trial's fields as stored, then the
    job's flash accounting and the flash its limit applies to. Values are the record's own
    (datetimes unconverted): for orjson on the hot path; ``front_trial_json`` for plain JSON."""
    return {**vars(trial), **_accounted(trial, flash_accounting)}


def front_trial_json(trial: Any, flash_accounting: str) -> dict[str, Any]:
    """``front_trial`` as JSON-safe values (``TrialInfo.to_json`` plus the two fields)."""
    return {**trial.to_json(), **_accounted(trial, flash_accounting)}


def _accounted(trial: Any, flash_accounting: str) -> dict[str, Any]:
    return {
        "flash_accounting": flash_accounting,
        "accounted_flash_bytes": getattr(trial, accounted_flash_field(flash_accounting)),
        "runtime_flash": TFLM_RUNTIME_FLASH.to_json(),
    }
