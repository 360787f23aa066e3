"""/v1/datasets: upload an ``.npz`` (x_train, y_train, x_test, y_test), list, inspect, delete.

An upload is checked before anything is stored (``datasets.validate_npz_bytes``: size caps,
no pickles, layouts, dtypes, labels); a job then names it by id. The body is capped while it
streams in: FastAPI parses a multipart form (spooling every byte) before the endpoint runs, so
the cap is enforced by this router's route class, not by the endpoint alone.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import asdict
from pathlib import PurePath
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Path, Query, Request, Response, UploadFile
from fastapi.routing import APIRoute
from starlette.types import Message

from sparsearch.api.deps import OwnerDep, SettingsDep, StorageDep
from sparsearch.api.schemas import DatasetPublic, Page, Problem
from sparsearch.config import Settings
from sparsearch.storage.records import DATASET_ID_PATTERN

MIB = 1 << 20
#: Room for the multipart framing and the ``name`` field on top of the file cap.
FORM_OVERHEAD = 64 * 1024
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"  # printable: no NUL, no control characters


def upload_cap(settings: Settings) -> int:
    """Largest accepted upload in bytes (``max_upload_mb`` MiB)."""
    return settings.max_upload_mb * MIB


def _too_large(cap: int) -> HTTPException:
    return HTTPException(
        413,
        f"the upload is larger than this server's limit of {cap // MIB} MiB ({cap:,} bytes); "
        "store images as uint8 and use numpy.savez_compressed, or ask the operator to raise "
        "SPARSEARCH_MAX_UPLOAD_MB",
    )


class _CappedUploadRoute(APIRoute):
    """Refuses a POST body over the upload cap (plus form framing) with 413: at once when its
    Content-Length says so, otherwise as soon as that many bytes have arrived."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            if request.method != "POST":
                return await handler(request)
            cap = upload_cap(request.app.state.settings)
            limit = cap + FORM_OVERHEAD
            declared = request.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > limit:
                raise _too_large(cap)
            receive, seen = request.receive, 0

            async def counted() -> Message:
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > limit:
                        raise _too_large(cap)  # FastAPI re-raises HTTPExceptions from parsing
                return message

            return await handler(Request(request.scope, counted))

        return capped


router = APIRouter(prefix="/v1/datasets", tags=["datasets"], route_class=_CappedUploadRoute)

DatasetIdPath = Annotated[str, Path(pattern=DATASET_ID_PATTERN, max_length=15)]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10**9)]


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

    cap = upload_cap(settings)
    data = file.file.read(cap + 1)
    if len(data) > cap:
        raise _too_large(cap)
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
    storage: StorageDep, owner: OwnerDep, limit: Limit = 50, offset: Offset = 0
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
