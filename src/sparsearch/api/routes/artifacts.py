"""/v1/jobs/{id}/trials/{index}/artifacts: list and download a trial's model files."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Query, Response

from sparsearch.api.deps import OwnerDep, StorageDep
from sparsearch.api.routes.jobs import JobId
from sparsearch.api.routes.trials import TrialIndex
from sparsearch.api.schemas import ArtifactPublic
from sparsearch.vocabulary import ARTIFACT_KINDS

router = APIRouter(prefix="/v1/jobs/{job_id}/trials/{index}/artifacts", tags=["artifacts"])

#: Downloadable kinds and their media types: a closed set; anything else is a 404.
MEDIA_TYPES = {k.name: k.media_type for k in ARTIFACT_KINDS.values()}


@router.get("", response_model=list[ArtifactPublic])
def list_artifacts(
    job_id: JobId, index: TrialIndex, storage: StorageDep, owner: OwnerDep
) -> list[ArtifactPublic]:
    storage.get_job(job_id, owner=owner)
    storage.get_trial(job_id, index)
    return [
        ArtifactPublic(
            kind=a.kind,
            filename=a.filename,
            size_bytes=a.size_bytes,
            sha256=a.sha256,
            url=f"/v1/jobs/{job_id}/trials/{index}/artifacts/{a.kind}"
            + f"?final={'true' if a.final else 'false'}",
            final=a.final,
        )
        for a in storage.list_artifacts(job_id, index)
        if a.kind in MEDIA_TYPES
    ]


@router.get(
    "/{kind}",
    response_class=Response,
    responses={
        200: {"content": {t: {} for t in set(MEDIA_TYPES.values())}},
        404: {"description": "Unknown kind or no such artifact"},
    },
)
def download(
    job_id: JobId,
    index: TrialIndex,
    kind: str,
    storage: StorageDep,
    owner: OwnerDep,
    final: bool | None = Query(
        default=None,
        description="true: the file of the trial's final training (finalize); false: of its "
        "search run; unset: the final one when the trial has one, else the search run's",
    ),
) -> Response:
    storage.get_job(job_id, owner=owner)
    if kind not in MEDIA_TYPES:
        raise HTTPException(
            404, f"unknown artifact kind; available kinds: {', '.join(MEDIA_TYPES)}"
        )
    found = {a.final: a for a in storage.list_artifacts(job_id, index) if a.kind == kind}
    info = found.get(True, found.get(False)) if final is None else found.get(final)
    if info is None:
        storage.get_trial(job_id, index)  # 404 for a missing trial first
        what = "final " if final else ""
        raise HTTPException(404, f"trial {index} of job {job_id} has no {what}{kind} artifact")
    data = storage.read_artifact(job_id, index, kind, final=info.final)
    filename = f"job-{job_id}-trial-{index}-{info.filename}"
    return Response(
        data,
        media_type=MEDIA_TYPES[kind],
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Content-SHA256": info.sha256,
            "ETag": f'"{info.sha256}"',
        },
    )
