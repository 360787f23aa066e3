"""/v1/jobs/{id}/trials, /pareto and /best: a job's trials and its Pareto front.

Front answers carry the job's ``flash_accounting`` and each trial's ``accounted_flash_bytes``
(``vocabulary.accounted_flash_field``): under sparse accounting the flash limit, the front
and ``/best?max_flash=`` count non-zero weights, while ``flash_bytes`` stays the dense size."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, HTTPException, Query, Response

from sparsearch.api.deps import OwnerDep, StorageDep
from sparsearch.api.routes.jobs import JobId
from sparsearch.api.schemas import (
    ByteCount,
    FrontTrialPublic,
    Page,
    PageLimit,
    PageOffset,
    TrialIndex,
    TrialPublic,
)
from sparsearch.api.views import front_trial, front_trial_json
from sparsearch.storage.queries import TRIAL_SORT_KEYS
from sparsearch.storage.records import TrialInfo
from sparsearch.vocabulary import TARGET_METRICS, TRIAL_STATUSES, accounted_flash_field

router = APIRouter(prefix="/v1/jobs/{job_id}", tags=["trials"])

TrialStatus = Literal[TRIAL_STATUSES]  # type: ignore[valid-type]
# The storage's sort keys, as an enum in the OpenAPI schema (each also descending with "-").
TrialSort = Literal[tuple(k for key in TRIAL_SORT_KEYS for k in (key, f"-{key}"))]  # type: ignore[misc]
#: The front's CSV: the trial fields of these names as the JSON front has them (booleans
#: ``true``/``false``, null empty), then the pruning, the job's flash accounting and both
#: deployment targets' numbers.
CSV_FIELDS = (
    "index",
    "accuracy",
    "test_accuracy",
    "int8_accuracy",  # the int8 model's where measured (TFLM = C): the accuracy the front ranks by
    "int8_test_accuracy",
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "macs",
    "nnz_flash_bytes",
    "param_count",
    "measured",  # whether flash / RAM / activation are measured (job's target) or estimated
)
#: Both deployment targets' measured numbers and why the C target's are missing, after the
#: columns above (added later: the earlier columns keep their places).
CSV_TARGET_FIELDS = (*TARGET_METRICS, "c_error")
CSV_COLUMNS = (
    *CSV_FIELDS,
    "pruning_method",
    "pruning_level",
    "flash_accounting",  # the job's: which number its flash limit counts
    "accounted_flash_bytes",  # that number (flash_bytes, or nnz_flash_bytes under sparse)
    *CSV_TARGET_FIELDS,
)
DEFAULT_PAGE = 50
JSON = "application/json"


def _json(page: tuple[list[TrialInfo], int]) -> Response:
    """The hot read path: records straight to JSON bytes. orjson writes the frozen TrialInfo
    dataclasses directly (the same document as ``TrialInfo.to_json``, which
    ``tests/api/test_trials_json.py`` holds it to); validating each trial through pydantic,
    or copying it through ``to_json``, cost more than the query. The schemathesis test holds
    these bodies to the ``Page[TrialPublic]`` schema declared on the routes."""
    trials, count = page
    return Response(orjson.dumps({"data": trials, "count": count}), media_type=JSON)


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
    limit: PageLimit = 50,
    offset: PageOffset = 0,
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


_FORMAT = Query(description="json: a page of the front; csv: the whole front, as a file")
_FRONT_LIMIT = Query(
    description="Page size (default 50 for json; csv: the whole front unless given)"
)


@router.get(
    "/pareto",
    response_model=Page[FrontTrialPublic],
    responses={200: {"content": {"text/csv": {}}}},
)
def pareto(
    job_id: JobId,
    storage: StorageDep,
    owner: OwnerDep,
    format: Annotated[Literal["json", "csv"], _FORMAT] = "json",
    sort: TrialSort = "-accuracy",
    limit: Annotated[PageLimit | None, _FRONT_LIMIT] = None,
    offset: PageOffset = 0,
) -> Response:
    """The job's front (flags stored by the search; not recomputed per request). Each trial
    carries the job's ``flash_accounting`` and its ``accounted_flash_bytes``, the number the
    flash limit and the front count (``flash_bytes`` is always the dense size)."""
    if format == "json":
        trials, count, accounting = storage.front_page(
            job_id, owner=owner, sort=sort, limit=limit or DEFAULT_PAGE, offset=offset
        )
        data = [front_trial(t, accounting) for t in trials]
        return Response(orjson.dumps({"data": data, "count": count}), media_type=JSON)
    if limit is None:
        accounting, trials = storage.front(job_id, owner=owner, sort=sort)
        trials = trials[offset:]
    else:
        trials, _, accounting = storage.front_page(
            job_id, owner=owner, sort=sort, limit=limit, offset=offset
        )
    return _csv(job_id, trials, accounting)


def _csv(job_id: str, trials: list[TrialInfo], accounting: str) -> Response:
    field = accounted_flash_field(accounting)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for t in trials:
        values = [getattr(t, name) for name in CSV_FIELDS]
        writer.writerow(
            [
                *(str(v).lower() if isinstance(v, bool) else v for v in values),
                t.pruning.get("method", "none"),
                t.pruning.get("level", 0.0),
                accounting,
                getattr(t, field),
                *(getattr(t, name) for name in CSV_TARGET_FIELDS),
            ]
        )
    return Response(
        buf.getvalue(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-pareto.csv"'},
    )


@router.get(
    "/best",
    response_model=FrontTrialPublic,
    responses={404: {"description": "No front trial fits the given limits"}},
)
def best(
    job_id: JobId,
    storage: StorageDep,
    owner: OwnerDep,
    max_flash: Annotated[
        ByteCount | None,
        Query(
            description="Flash limit in bytes, on the job's accounted flash (nnz_flash_bytes "
            "under sparse accounting, flash_bytes under dense)",
        ),
    ] = None,
    max_ram: Annotated[ByteCount | None, Query(description="RAM limit in bytes")] = None,
) -> FrontTrialPublic:
    """The most accurate front trial within (possibly tighter) flash and RAM limits; flash as
    the job's accounting counts it."""
    accounting, trial = storage.best_front_trial(
        job_id, owner=owner, max_flash=max_flash, max_ram=max_ram
    )
    if trial is not None:
        return FrontTrialPublic(**front_trial_json(trial, accounting))
    _, front = storage.front(job_id, owner=owner)
    if not front:
        status = storage.get_job(job_id, owner=owner).status
        raise HTTPException(404, f"job {job_id} has no trial on its front yet (status {status})")
    field = accounted_flash_field(accounting)
    flash = min((v for t in front if (v := getattr(t, field)) is not None), default=None)
    ram = min((t.ram_bytes for t in front if t.ram_bytes is not None), default=None)
    kind = " (non-zero weights: sparse accounting)" if accounting == "sparse" else ""
    asked = [f"flash <= {max_flash} B{kind}"] if max_flash is not None else []
    asked += [f"RAM <= {max_ram} B"] if max_ram is not None else []
    raise HTTPException(
        404,
        f"no front trial fits {' and '.join(asked)}; the smallest need {flash} B flash and "
        f"{ram} B RAM",
    )
