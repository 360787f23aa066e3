"""/v1/jobs/{id}/trials, /pareto and /best: a job's trials and its Pareto front."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Path, Query, Response

from sparsearch.api.deps import OwnerDep, StorageDep
from sparsearch.api.routes.jobs import JobId, Limit, Offset
from sparsearch.api.schemas import MAX_BYTES, Page, TrialPublic
from sparsearch.storage.queries import TRIAL_SORT_KEYS
from sparsearch.storage.records import TrialInfo

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["trials"])

TrialIndex = Annotated[int, Path(ge=0, le=10**9)]
TrialStatus = Literal["queued", "running", "completed", "failed", "infeasible"]
# The storage's sort keys, as an enum in the OpenAPI schema (each also descending with "-").
TrialSort = Literal[tuple(k for key in TRIAL_SORT_KEYS for k in (key, f"-{key}"))]  # type: ignore[misc]
CSV_COLUMNS = (
    "index",
    "accuracy",
    "test_accuracy",
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "macs",
    "nnz_flash_bytes",
    "pruning_method",
    "pruning_level",
)


def _json(page: tuple[list[TrialInfo], int]) -> Response:
    """The hot read path: records straight to JSON bytes. orjson writes the frozen TrialInfo
    dataclasses directly (the same document as ``TrialInfo.to_json``, which
    ``tests/api/test_trials_json.py`` holds it to); validating each trial through pydantic,
    or copying it through ``to_json``, cost more than the query. The schemathesis test holds
    these bodies to the ``Page[TrialPublic]`` schema declared on the routes."""
    trials, count = page
    return Response(orjson.dumps({"data": trials, "count": count}), media_type="application/json")


def _page(
    storage,
    job_id: str,
    owner: str,
    *,
    status=None,
    pareto=None,
    sort: str,
    limit: int,
    offset: int,
) -> tuple[list[TrialInfo], int]:
    """A page of the owner's job's trials (404 for another owner's job) and the total count,
    in one transaction."""
    return storage.trial_page(
        job_id, owner=owner, status=status, pareto=pareto, sort=sort, limit=limit, offset=offset
    )


@router.get("/trials", response_model=Page[TrialPublic])
def list_trials(
    job_id: JobId,
    storage: StorageDep,
    owner: OwnerDep,
    status: TrialStatus | None = None,
    sort: TrialSort = "index",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Response:
    return _json(
        _page(storage, job_id, owner, status=status, sort=sort, limit=limit, offset=offset)
    )


@router.get("/trials/{index}", response_model=TrialPublic)
def get_trial(
    job_id: JobId, index: TrialIndex, storage: StorageDep, owner: OwnerDep
) -> TrialPublic:
    storage.get_job(job_id, owner=owner)
    return TrialPublic(**storage.get_trial(job_id, index).to_json())


@router.get(
    "/pareto", response_model=Page[TrialPublic], responses={200: {"content": {"text/csv": {}}}}
)
def pareto(
    job_id: JobId,
    storage: StorageDep,
    owner: OwnerDep,
    format: Literal["json", "csv"] = "json",
    sort: TrialSort = "-accuracy",
    limit: Limit = 50,
    offset: Offset = 0,
) -> Page[TrialPublic] | Response:
    """The job's front (flags stored by the search; not recomputed per request)."""
    page = _page(storage, job_id, owner, pareto=True, sort=sort, limit=limit, offset=offset)
    if format == "json":
        return _json(page)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for t in page[0]:
        writer.writerow(
            [
                t.index,
                t.accuracy,
                t.test_accuracy,
                t.flash_bytes,
                t.ram_bytes,
                t.activation_bytes,
                t.macs,
                t.nnz_flash_bytes,
                t.pruning.get("method", "none"),
                t.pruning.get("level", 0.0),
            ]
        )
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-pareto.csv"'},
    )


@router.get(
    "/best",
    response_model=TrialPublic,
    responses={404: {"description": "No front trial fits the given limits"}},
)
def best(
    job_id: JobId,
    storage: StorageDep,
    owner: OwnerDep,
    max_flash: Annotated[int | None, Query(ge=1, le=MAX_BYTES)] = None,
    max_ram: Annotated[int | None, Query(ge=1, le=MAX_BYTES)] = None,
) -> TrialPublic:
    """The most accurate front trial within (possibly tighter) flash and RAM limits."""
    job = storage.get_job(job_id, owner=owner)
    front = storage.list_trials(job_id, pareto=True, sort="-accuracy")
    fits = [
        t
        for t in front
        if (max_flash is None or t.flash_bytes <= max_flash)
        and (max_ram is None or t.ram_bytes <= max_ram)
    ]
    if not fits:
        if not front:
            reason = f"job {job_id} has no trial on its front yet (status {job.status})"
        else:
            reason = (
                f"no front trial fits flash <= {max_flash} B and RAM <= {max_ram} B; the "
                f"smallest need {min(t.flash_bytes for t in front)} B flash and "
                f"{min(t.ram_bytes for t in front)} B RAM"
            )
        raise HTTPException(404, reason)
    return TrialPublic(**fits[0].to_json())
