"""/v1/jobs: submit, list, inspect, cancel and delete search jobs, and follow their hypervolume."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Response

from sparsearch.api.deps import OwnerDep, SettingsDep, StorageDep
from sparsearch.api.schemas import (
    HypervolumePoint,
    JobCreate,
    JobPublic,
    Page,
    PageLimit,
    PageOffset,
    Problem,
)
from sparsearch.api.views import job_config, job_public, jobs_public
from sparsearch.storage.queries import JOB_SORT_KEYS
from sparsearch.storage.records import is_dataset_id
from sparsearch.vocabulary import JOB_STATUSES

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", max_length=64)]
JobStatus = Literal[JOB_STATUSES]  # type: ignore[valid-type]
JobSort = Literal[tuple(k for key in JOB_SORT_KEYS for k in (key, f"-{key}"))]  # type: ignore[misc]


def _check_uploaded(storage: Any, dataset_id: str, owner: str) -> None:
    """A job may name only its owner's uploads: any other id is a 422 on the body."""
    from sparsearch.errors import NotFoundError

    try:
        storage.get_dataset(dataset_id, owner=owner)
    except NotFoundError:
        raise HTTPException(
            422,
            f"dataset: unknown dataset id {dataset_id!r}; upload the data with "
            "POST /v1/datasets and use the id it returns (GET /v1/datasets lists yours)",
        ) from None


@router.post(
    "",
    status_code=201,
    response_model=JobPublic,
    responses={409: {"model": Problem, "description": "Too many active jobs for this owner"}},
)
def create_job(
    body: JobCreate, response: Response, storage: StorageDep, settings: SettingsDep, owner: OwnerDep
) -> JobPublic:
    if body.budget.trials > settings.max_trials:
        raise HTTPException(
            422,
            f"budget.trials {body.budget.trials} is above this server's "
            f"maximum of {settings.max_trials}",
        )
    cfg = job_config(body)
    if is_dataset_id(body.dataset):
        _check_uploaded(storage, body.dataset, owner)
    return job_public(store_job(storage, settings, owner, cfg, response), {})


def store_job(storage: Any, settings: Any, owner: str, cfg: Any, response: Response) -> Any:
    """Insert a queued job of ``owner`` within their quota of active jobs (checked and inserted
    in one atomic step; a ConflictError is a 409) and point ``Location`` at it."""
    job = storage.create_job(
        dataset=cfg.dataset,
        config=cfg.to_dict(),
        owner=owner,
        max_active=settings.max_active_jobs_per_owner,
    )
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get("", response_model=Page[JobPublic])
def list_jobs(
    storage: StorageDep,
    owner: OwnerDep,
    status: JobStatus | None = None,
    sort: JobSort = "-created_at",
    limit: PageLimit = 50,
    offset: PageOffset = 0,
) -> Page[JobPublic]:
    jobs = storage.list_jobs(owner=owner, status=status, sort=sort, limit=limit, offset=offset)
    return Page[JobPublic](
        data=jobs_public(storage, jobs), count=storage.count_jobs(owner=owner, status=status)
    )


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: JobId, storage: StorageDep, owner: OwnerDep) -> JobPublic:
    return jobs_public(storage, [storage.get_job(job_id, owner=owner)])[0]


@router.get("/{job_id}/hypervolume", response_model=Page[HypervolumePoint])
def hypervolume_trace(
    job_id: JobId, storage: StorageDep, owner: OwnerDep
) -> Page[HypervolumePoint]:
    """The job's hypervolume as its search went: one point each time its front was
    refreshed, at the number of trials then counted against the budget (`trained`: charged
    completed + failed, as in `progress`), in increasing `trained`. A refresh at a count
    already traced (a resumed job, a re-measured front) replaces that point, so there is at
    most one per count. `hypervolume` is the normalized hypervolume of the front then, and
    `best_accuracy` its best objective accuracy (int8 where measured). Empty before the
    first refresh; all points at once (at most the budget + a few, never paged)."""
    points = [
        HypervolumePoint(trained=at, hypervolume=hv, best_accuracy=best)
        for at, hv, best in storage.hypervolume_trace(job_id, owner=owner)
    ]
    return Page[HypervolumePoint](data=points, count=len(points))


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    responses={409: {"description": "The job has already finished"}},
)
def cancel_job(job_id: JobId, storage: StorageDep, owner: OwnerDep) -> JobPublic:
    return jobs_public(storage, [storage.request_cancel(job_id, owner=owner)])[0]


@router.delete(
    "/{job_id}",
    status_code=204,
    responses={409: {"description": "The job is running; cancel it first"}},
)
def delete_job(job_id: JobId, storage: StorageDep, owner: OwnerDep) -> Response:
    storage.delete_job(job_id, owner=owner)
    return Response(status_code=204)
