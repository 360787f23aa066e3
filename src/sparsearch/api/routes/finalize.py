"""/v1/jobs/{id}/finalize: retrain chosen front trials for the model you ship.

``POST`` queues a finalize job (a job like any other: a scheduler claims and runs it, it can be
cancelled and resumes after a restart) and returns it; ``GET`` lists the trials with a final
training and its status (queued / running / completed / failed) and metrics.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field, Strict, StrictBool, StrictInt

from sparsearch.api.deps import OwnerDep, SettingsDep, StorageDep
from sparsearch.api.routes.jobs import JobId, store_job
from sparsearch.api.schemas import (
    TARGET_DESCRIPTION,
    JobPublic,
    Problem,
    Target,
    TrialIndex,
    _Strict,
)
from sparsearch.api.views import job_public
from sparsearch.jobconfig import MAX_EPOCHS, mark_queued, plan_finalize

router = APIRouter(prefix="/v1/jobs/{job_id}/finalize", tags=["finalize"])


class FinalizeIn(_Strict):
    trials: list[Annotated[TrialIndex, Strict()]] | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Completed trials to finalize (default: the most accurate front trial)",
    )
    front: StrictBool = Field(default=False, description="Finalize every trial on the front")
    epochs: Annotated[StrictInt, Field(ge=1, le=MAX_EPOCHS)] | None = Field(
        default=None, description="Training epochs on train + validation (default: 4x the job's)"
    )
    target: Target | None = Field(
        default=None, description=f"{TARGET_DESCRIPTION} (default: the job's own)"
    )


class FinalTrial(_Strict):
    index: int
    final: dict[str, Any] = Field(
        description="status (queued / running / completed / failed), the finalize job, epochs "
        "and, once completed, test_accuracy, int8_test_accuracy (whole test split, on TFLite "
        "Micro), flash_bytes, ram_bytes, feasible, deployment"
    )


@router.post(
    "",
    status_code=202,
    response_model=JobPublic,
    responses={
        409: {
            "model": Problem,
            "description": "Too many active jobs for this owner, or a chosen trial is being "
            "finalized by another finalize job (named; once it has ended, finalize again)",
        }
    },
)
def finalize(
    job_id: JobId,
    body: FinalizeIn,
    response: Response,
    storage: StorageDep,
    settings: SettingsDep,
    owner: OwnerDep,
) -> JobPublic:
    cfg, _ = plan_finalize(
        storage,
        job_id,
        trials=body.trials,
        front=body.front,
        epochs=body.epochs,
        owner=owner,
        target=body.target,
    )
    # A chosen trial that an unfinished finalize job retrains is a 409 naming that job
    # (checked with the insert, in one step: Storage.create_job).
    job = store_job(storage, settings, owner, cfg, response)
    mark_queued(storage, job)
    return job_public(job, {})


@router.get("", response_model=list[FinalTrial])
def final_trials(job_id: JobId, storage: StorageDep, owner: OwnerDep) -> list[FinalTrial]:
    storage.get_job(job_id, owner=owner)
    return [
        FinalTrial(index=t.index, final=t.final)
        for t in storage.list_trials(job_id)
        if t.final is not None
    ]
