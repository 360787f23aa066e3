"""Request dependencies: the storage, the settings and the authenticated owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sparsearch.config import Settings

LOCAL_OWNER = "local"
_bearer = HTTPBearer(auto_error=False, description="A token from `sparsearch token create`")


# Trivial dependencies are ``async`` so FastAPI runs them on the event loop: a sync one costs a
# thread-pool hop per request, which measured as a large share of a page's latency under load.
async def get_storage(request: Request) -> Any:
    return request.app.state.storage


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def current_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner of the request's bearer token; 401 with ``WWW-Authenticate`` otherwise."""
    settings: Settings = request.app.state.settings
    if settings.auth == "off":
        return LOCAL_OWNER
    token = credentials.credentials if credentials else ""
    owner = request.app.state.storage.authenticate(token) if token else None
    if owner is None:
        raise HTTPException(
            status_code=401,
            detail="missing or invalid token" if token else "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


StorageDep = Annotated[Any, Depends(get_storage)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OwnerDep = Annotated[str, Depends(current_owner)]
