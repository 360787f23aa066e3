"""The FastAPI app factory: settings and storage are built here, never at import time."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.routing import Match, Mount

from sparsearch.api.auth_backoff import AuthBackoff
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
    429: {
        "model": Problem,
        "description": "Too many failed authentications from this address: try again after "
        "Retry-After seconds (SPARSEARCH_AUTH_FAILURES_ALLOWED)",
    },
}
#: Listed on every operation that takes a body (``_list_body_errors``).
_BAD_BODY: dict[str, Any] = {
    "description": "The body could not be parsed (JSON that is not UTF-8, a broken "
    "multipart form): the hint says what to send",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
_JSON_HINT = (
    "send the body as UTF-8 JSON with `Content-Type: application/json`; the operation's "
    "schema in /openapi.json (or /docs) lists its fields"
)
#: Methods in the order ``Allow`` names them.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


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
        syntax = _json_syntax_error(exc)
        if syntax is not None:
            return _problem(422, syntax, _JSON_HINT, errors=errors)
        return _problem(422, detail or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})
        detail, hint = str(exc.detail), getattr(exc, "hint", None)
        if exc.status_code == 405:
            allowed = _allowed_methods(request, headers.get("Allow", ""))
            if request.method == "OPTIONS":
                return Response(status_code=204, headers={"Allow": allowed})
            headers["Allow"] = allowed
            detail = f"{request.method} is not allowed on {request.url.path}"
            hint = f"this path takes {allowed}"
        elif (unparsable := _unparsable_body(request, exc)) is not None:
            detail, hint = unparsable
        if wants_html(request):  # a browser on a page path: an HTML page, not Problem JSON
            page = await html_error(request, exc.status_code, detail)
            page.headers.update(headers)
            return page
        response = _problem(exc.status_code, detail, hint)
        for key, value in headers.items():
            response.headers[key] = value
        return response

    @app.exception_handler(ValueError)
    async def _value(_: Request, exc: ValueError) -> JSONResponse:
        # Storage validates its arguments with ValueError; the API validates first, so this is
        # a last line of defence that still answers with a message rather than a 500.
        return _problem(422, str(exc))


def _allowed_methods(request: Request, allow: str) -> str:
    """``Allow`` for a path: every method some route takes on it, and OPTIONS, which the error
    handler answers. Starlette's 405 names only the methods of the first route that matched
    the path (``GET /v1/jobs`` and ``POST /v1/jobs`` are two routes); each method is tried
    against every route instead, and ``allow`` (Starlette's) is kept for a mount."""
    methods = {m.strip() for m in allow.split(",") if m.strip()}
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        routes = (r for r in request.app.router.routes if not isinstance(r, Mount))
        if any(route.matches(scope)[0] == Match.FULL for route in routes):
            methods.add(method)
    methods.discard("OPTIONS")
    return ", ".join([m for m in _METHODS if m in methods] + ["OPTIONS"])


def _unparsable_body(request: Request, exc: StarletteHTTPException) -> tuple[str, str] | None:
    """``(detail, hint)`` for a body the framework could not parse, which it answers with a
    bare 400 (FastAPI: JSON that is not UTF-8, among others; Starlette: a broken multipart
    form); None for any other error."""
    cause = exc.__cause__ or exc.__context__
    if exc.status_code != 400 or cause is None or isinstance(cause, StarletteHTTPException):
        return None
    form = request.headers.get("content-type", "").startswith("multipart/")
    if isinstance(cause, MultiPartException) or form:
        dependant = getattr(request.scope.get("route"), "dependant", None)
        parts = " and ".join(f"`{p.alias}`" for p in getattr(dependant, "body_params", ()))
        reason = cause.message if isinstance(cause, MultiPartException) else str(cause)
        return (
            f"malformed multipart/form-data body: {reason}",
            f"send multipart/form-data with the parts {parts or 'the operation lists'} (see "
            "/docs), and let your HTTP client write the boundary (`curl -F file=@data.npz`)",
        )
    if isinstance(cause, UnicodeDecodeError):
        reason = f"not UTF-8 ({cause.reason} at byte {cause.start})"
    else:
        reason = str(cause)
    return f"malformed JSON body: {reason or type(cause).__name__}", _JSON_HINT


def _json_syntax_error(exc: RequestValidationError) -> str | None:
    """The 422 detail for a JSON body with a syntax error: what json.loads said, and where."""
    for e in exc.errors():
        if e.get("type") != "json_invalid":
            continue
        doc, pos = exc.body if isinstance(exc.body, str) else "", e["loc"][-1]
        what = f"body: not valid JSON: {e.get('ctx', {}).get('error', 'decode error')}"
        if not isinstance(pos, int) or not 0 <= pos <= len(doc):
            return what
        line, column = doc.count("\n", 0, pos) + 1, pos - doc.rfind("\n", 0, pos)
        return f"{what} at line {line} column {column}"
    return None


def _list_body_errors(app: FastAPI) -> None:
    """List the 400 of an unparsable body (``_BAD_BODY``) on every operation that takes one,
    in the OpenAPI schema FastAPI builds (once, on first request)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            for item in build()["paths"].values():
                for operation in item.values():
                    if "requestBody" in operation:
                        operation["responses"].setdefault("400", _BAD_BODY)
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


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
    app.state.auth_backoff = AuthBackoff(settings, storage)  # failed sign-ins
    install_error_handlers(app)
    _list_body_errors(app)
    # Token check and body caps before any body is read; inside the latency middleware, which
    # thereby also observes the 401s and 413s it answers.
    app.add_middleware(RequestGuard, state=app.state)
    install_metrics(app, storage)  # /metrics, request latency middleware
    for module in (jobs, trials, artifacts, finalize, datasets, health):
        app.include_router(module.router)
    install_ui(app)  # the dashboard: pages under /, assets under /static
    return app
