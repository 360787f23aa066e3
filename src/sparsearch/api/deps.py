"""Request dependencies: the storage, the settings and the authenticated owner."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sparsearch.api.guard import (
    LOCAL_OWNER,
    OWNER_SCOPE_KEY,
    REFUSAL_SCOPE_KEY,
    authenticate,
    unauthorized_detail,
)
from sparsearch.config import Settings

__all__ = ["LOCAL_OWNER", "OwnerDep", "SettingsDep", "StorageDep", "current_owner"]
_bearer = HTTPBearer(auto_error=False, description="A token from `sparsearch token create`")


# Trivial dependencies are ``async`` so FastAPI runs them on the event loop: a sync one costs a
# thread-pool hop per request, which measured as a large share of a page's latency under load.
async def get_storage(request: Request) -> Any:
    return request.app.state.storage


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def current_owner(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The owner of the request's bearer token; 401 with ``WWW-Authenticate`` otherwise.

    ``guard.RequestGuard`` authenticates every ``/v1`` request before its body is read and
    leaves the owner (or its refusal) in the scope; the lookup here is for a route outside
    the paths it protects.
    ``credentials`` declares the bearer scheme in the OpenAPI schema."""
    refusal = request.scope.get(REFUSAL_SCOPE_KEY)
    if refusal is not None:  # no valid token (or a body over its cap, or tokens unreadable)
        raise refusal
    owner = request.scope.get(OWNER_SCOPE_KEY)
    if owner is not None:
        return str(owner)
    import anyio.to_thread

    token = credentials.credentials if credentials else ""
    settings: Settings = request.app.state.settings
    owner = await anyio.to_thread.run_sync(authenticate, settings, request.app.state.storage, token)
    if owner is None:
        raise HTTPException(
            status_code=401,
            detail=unauthorized_detail(token),
            headers={"WWW-Authenticate": "Bearer"},
        )
    return owner


StorageDep = Annotated[Any, Depends(get_storage)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OwnerDep = Annotated[str, Depends(current_owner)]
