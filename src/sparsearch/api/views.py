"""Turning storage records into API models (the one place that knows both shapes)."""

from __future__ import annotations

from typing import Any

from sparsearch.api.schemas import JobPublic, Progress
from sparsearch.vocabulary import accounted_flash_field


def job_public(job: Any, counts: dict[str, int]) -> JobPublic:
    cfg = job.config
    completed, failed = counts.get("completed", 0), counts.get("failed", 0)
    return JobPublic(
        id=job.id,
        status=job.status,
        owner=job.owner,
        dataset=cfg["dataset"],
        limits=cfg["limits"],
        budget=cfg["budget"],
        seed=cfg.get("seed", 0),
        flash_accounting=cfg.get("flash_accounting", "dense"),
        progress=Progress(
            budget=cfg["budget"]["trials"],
            trained=completed + failed,
            completed=completed,
            running=counts.get("running", 0) + counts.get("queued", 0),
            failed=failed,
            infeasible=counts.get("infeasible", 0),
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
    }
