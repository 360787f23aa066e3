"""/healthz: is the database reachable, is a scheduler alive."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sparsearch.api.deps import SettingsDep, StorageDep
from sparsearch.api.schemas import Health
from sparsearch.errors import StorageError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(storage: StorageDep, settings: SettingsDep) -> Health | JSONResponse:
    try:
        storage.ping()
        scheduler = storage.scheduler_state(stale_after=settings.stale_after_seconds)
    except StorageError:
        body = Health(database="unreachable", scheduler="unknown")
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(database="ok", scheduler=scheduler)
