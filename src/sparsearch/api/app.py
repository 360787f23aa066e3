"""The FastAPI app factory: settings and storage are built here, never at import time."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sparsearch.api.guard import RequestGuard
from sparsearch.api.metrics import install_metrics
from sparsearch.api.routes import artifacts, datasets, finalize, health, jobs, trials
from sparsearch.api.schemas import Problem
from sparsearch.api.ui import html_error, install_ui, wants_html
from sparsearch.api.views import field_errors
from sparsearch.config import Settings
from sparsearch.errors import (
    ConfigError,
    DatasetError,
    NotFoundError,
    PruningError,
    SpaceError,
    SparsearchError,
    StorageError,
)

log = logging.getLogger(__name__)

#: Threads per API process for the (sync) routes, unless ``SPARSEARCH_API_THREADS`` says
#: otherwise. SQLite reads are CPU work in this process: threads past ~2 only contend for the
#: GIL, and under a 200 req/s load 4 or 8 threads tipped into a backlog they never left.
#: PostgreSQL reads mostly wait on the server, so more threads overlap those waits
#: (benchmarks/api_load.py, 20 s runs: 2 or 4 threads saturated more often than 8; noisy).
API_THREADS = {"sqlite": 2, "postgresql": 8}

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or invalid bearer token"},
    404: {"model": Problem, "description": "No such job, trial or artifact (for this owner)"},
    413: {
        "model": Problem,
        "description": "The request body is over the server's limit (SPARSEARCH_MAX_BODY_KB; "
        "uploads: SPARSEARCH_MAX_UPLOAD_MB)",
    },
    422: {"model": Problem, "description": "Invalid request: the detail says what to fix"},
}


def _status_of(exc: SparsearchError) -> int:
    from sparsearch.storage import ConflictError

    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ConfigError | SpaceError | DatasetError | PruningError):
        return 422
    if isinstance(exc, StorageError):
        return 503
    return 400


def _problem(status: int, detail: str, hint: str | None = None, **extra: Any) -> JSONResponse:
    body = Problem(detail=detail, hint=hint, **extra).model_dump(exclude_none=True)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SparsearchError)
    async def _domain(_: Request, exc: SparsearchError) -> JSONResponse:
        return _problem(_status_of(exc), exc.message, exc.hint)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        found = field_errors(list(exc.errors()))
        detail = "; ".join(f"{e['where']}: {e['msg']}" for e in found)
        errors = [{k: e[k] for k in ("loc", "msg", "type")} for e in found]
        return _problem(422, detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_html(request):  # a browser on a page path: an HTML page, not Problem JSON
            return await html_error(request, exc.status_code, str(exc.detail))
        response = _problem(exc.status_code, str(exc.detail), getattr(exc, "hint", None))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(ValueError)
    async def _value(_: Request, exc: ValueError) -> JSONResponse:
        # Storage validates its arguments with ValueError; the API validates first, so this is
        # a last line of defence that still answers with a message rather than a 500.
        return _problem(422, str(exc))


def create_app(settings: Settings | None = None, *, storage: Any = None) -> FastAPI:
    """Build the app. ``storage`` may be passed in (tests); otherwise it is opened from
    ``settings`` here, so a bad database URL fails at start-up with a clear message."""
    settings = settings or Settings()
    owns_storage = storage is None
    if storage is None:
        from sparsearch.storage import open_storage

        storage = open_storage(settings.database_url, settings.artifact_dir)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # type: ignore[no-untyped-def]
        import anyio.to_thread

        # Sync routes run in anyio's thread pool (40 threads by default; see API_THREADS).
        threads = settings.api_threads or API_THREADS.get(storage.dialect, 8)
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        yield
        if owns_storage:
            storage.close()

    app = FastAPI(
        title="sparsearch",
        version="0.1.0",
        description="Multi-objective architecture + pruning search for microcontrollers: submit "
        "jobs, inspect Pareto fronts (accuracy vs flash vs RAM), download models.",
        lifespan=lifespan,
        responses=_ERROR_RESPONSES,
    )
    app.state.settings = settings
    app.state.storage = storage
    install_error_handlers(app)
    # Token check and body caps before any body is read; inside the latency middleware, which
    # thereby also observes the 401s and 413s it answers.
    app.add_middleware(RequestGuard, state=app.state)
    install_metrics(app, storage)  # /metrics, request latency middleware
    for module in (jobs, trials, artifacts, finalize, datasets, health):
        app.include_router(module.router)
    install_ui(app)  # the dashboard: pages under /, assets under /static
    return app
