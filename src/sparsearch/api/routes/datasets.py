"""/v1/datasets: upload an ``.npz`` (x_train, y_train, x_test, y_test), list, inspect, delete.

An upload is checked before anything is stored (``datasets.validate_npz_bytes``: size caps,
no pickles, layouts, dtypes, labels); a job then names it by id. The body is capped while it
streams in (``SPARSEARCH_MAX_UPLOAD_MB``): FastAPI parses a multipart form (spooling every
byte) before the endpoint runs, so the cap is enforced by ``guard.RequestGuard``, which caps
every request body, before the form is parsed; the endpoint checks the file's own size.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Response, UploadFile

from sparsearch.api.deps import OwnerDep, SettingsDep, StorageDep
from sparsearch.api.guard import MIB, BodyTooLarge, upload_cap, upload_too_large
from sparsearch.api.schemas import DatasetPublic, Page, PageLimit, PageOffset, Problem
from sparsearch.storage.records import DATASET_ID_PATTERN

_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable: no NUL, no control characters


router = APIRouter(prefix="/v1/datasets", tags=["datasets"])

DatasetIdPath = Annotated[str, Path(pattern=DATASET_ID_PATTERN, max_length=15)]


def _public(info: Any) -> DatasetPublic:
    return DatasetPublic(**asdict(info))


def _default_name(filename: str | None) -> str:
    """The uploaded file's base name when it is a usable name, else ``dataset.npz``."""
    base = PurePath((filename or "").replace("\\", "/")).name.strip()[:128]
    return base if base and base.isprintable() else "dataset.npz"


@router.post(
    "",
    status_code=201,
    response_model=DatasetPublic,
    responses={
        413: {"model": Problem, "description": "The upload is over the server's size limit"},
        422: {"model": Problem, "description": "Not a valid dataset: the detail says what to fix"},
    },
)
def upload_dataset(
    file: Annotated[
        UploadFile,
        File(description="An .npz with x_train, y_train, x_test, y_test (numpy.savez)"),
    ],
    response: Response,
    storage: StorageDep,
    settings: SettingsDep,
    owner: OwnerDep,
    name: Annotated[
        str | None,
        Form(
            min_length=1,
            max_length=128,
            pattern=_NAME_PATTERN,
            description="A name for the dataset (default: the file's name)",
        ),
    ] = None,
) -> DatasetPublic:
    from sparsearch.datasets import validate_npz_bytes

    cap = upload_cap(settings)  # the guard capped the whole form; this is the file's own cap
    data = file.file.read(cap + 1)
    if len(data) > cap:
        raise BodyTooLarge(upload_too_large(settings))
    summary = validate_npz_bytes(data, max_decompressed=settings.max_dataset_mb * MIB)
    info = storage.create_dataset(
        owner=owner,
        name=name if name is not None else _default_name(file.filename),
        data=data,
        summary=summary,
    )
    response.headers["Location"] = f"/v1/datasets/{info.id}"
    return _public(info)


@router.get("", response_model=Page[DatasetPublic])
def list_datasets(
    storage: StorageDep, owner: OwnerDep, limit: PageLimit = 50, offset: PageOffset = 0
) -> Page[DatasetPublic]:
    items = storage.list_datasets(owner=owner, limit=limit, offset=offset)
    return Page[DatasetPublic](
        data=[_public(d) for d in items], count=storage.count_datasets(owner=owner)
    )


_MISSING = {404: {"model": Problem, "description": "No such dataset (for this owner)"}}


@router.get("/{dataset_id}", response_model=DatasetPublic, responses=_MISSING)
def get_dataset(dataset_id: DatasetIdPath, storage: StorageDep, owner: OwnerDep) -> DatasetPublic:
    return _public(storage.get_dataset(dataset_id, owner=owner))


@router.delete(
    "/{dataset_id}",
    status_code=204,
    responses={
        **_MISSING,
        409: {"model": Problem, "description": "An unfinished job uses the dataset"},
    },
)
def delete_dataset(dataset_id: DatasetIdPath, storage: StorageDep, owner: OwnerDep) -> Response:
    storage.delete_dataset(dataset_id, owner=owner)
    return Response(status_code=204)
