"""Turning storage records into API models (the one place that knows both shapes)."""

from __future__ import annotations

from typing import Any

from sparsearch.api.schemas import JobPublic, Progress


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
