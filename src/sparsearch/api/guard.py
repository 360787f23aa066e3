"""The request guard: a pure ASGI middleware in front of every route that authenticates and caps
request bodies before any byte of a body is read.

- **Authentication first.** A request to a protected path (``/v1/...``) needs a valid bearer
  token (``SPARSEARCH_AUTH=off``: every request is the owner ``local``); a GET or HEAD without
  one may instead carry the dashboard's session cookie (``ui/session.py``). The guard looks the
  token up before the app runs; without a valid one the request gets a 401 and its body is
  never read, whatever its size. The owner is left in the scope (``OWNER_SCOPE_KEY``) for
  ``deps.current_owner``, so a token is looked up once per request. ``/healthz``,
  ``/metrics`` and the docs are public. A client backed off after repeated failures
  (``auth_backoff.py``) gets a 429 with ``Retry-After`` for any token it presents.
- **Dashboard forms too.** Any other state-changing request (the dashboard's forms) is
  checked by the dashboard's ``state.form_guard`` (``ui/form_guard.py``: the session and the
  CSRF cookie) before its body is read; its refusal (a redirect to sign in, a 403 page) is
  raised like the ones below.
- **Body caps.** Every request body is capped: uploads (``POST /v1/datasets``) at
  ``SPARSEARCH_MAX_UPLOAD_MB`` plus the multipart framing, everything else (JSON) at
  ``SPARSEARCH_MAX_BODY_KB``. A ``Content-Length`` over the cap is a 413 before a byte is
  read; otherwise the bytes are counted as the app receives them (chunked bodies declare no
  length) and the 413 is answered as soon as the count passes the cap, before anything more
  is read. Either way the answer is Problem JSON naming the limit and the setting.

A refusal decided up front is raised inside the app (``Refused``), where the router has chosen
the route (the latency metric's label) and the app's handlers render it; FastAPI reads (for
forms: spools) the whole body before it resolves any dependency, so neither check could be a
dependency or live in the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparsearch.api.auth_backoff import AuthBackoff, TooManyFailures, client_of
from sparsearch.api.schemas import Problem
from sparsearch.config import Settings
from sparsearch.errors import StorageError

KIB = 1 << 10
MIB = 1 << 20
#: Room for the multipart framing and the ``name`` field on top of the upload cap.
FORM_OVERHEAD = 64 * KIB
#: Where the guard leaves the authenticated owner for ``deps.current_owner``.
OWNER_SCOPE_KEY = "sparsearch.owner"
#: Where the guard leaves a refusal (``Refused``) for ``deps.current_owner``.
REFUSAL_SCOPE_KEY = "sparsearch.refusal"
#: Paths under this prefix need a token; the rest (``/healthz``, ``/metrics``, docs) do not.
PROTECTED_PREFIX = "/v1/"
#: Routes whose body is an upload (``SPARSEARCH_MAX_UPLOAD_MB``), as (method, path).
UPLOAD_ROUTES = frozenset({("POST", "/v1/datasets"), ("POST", "/datasets")})  # API, dashboard
LOCAL_OWNER = "local"
#: Methods on which ``/v1`` also accepts the dashboard's session cookie (never a write: the
#: dashboard's state-changing forms carry CSRF tokens and go to its own routes).
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class BodyCap:
    """How many body bytes a request may send, and the 413 that says so."""

    limit: int
    detail: str
    hint: str


def upload_cap(settings: Settings) -> int:
    """Largest accepted upload in bytes (``max_upload_mb`` MiB)."""
    return settings.max_upload_mb * MIB


def json_cap(settings: Settings) -> int:
    """Largest accepted body of any other request in bytes (``max_body_kb`` KiB)."""
    return settings.max_body_kb * KIB


def upload_too_large(settings: Settings) -> BodyCap:
    cap = upload_cap(settings)
    return BodyCap(
        cap + FORM_OVERHEAD,
        f"the upload is larger than this server's limit of {cap // MIB} MiB ({cap:,} bytes, "
        "SPARSEARCH_MAX_UPLOAD_MB)",
        "store images as uint8 and use numpy.savez_compressed, or ask the operator to raise "
        "SPARSEARCH_MAX_UPLOAD_MB",
    )


def body_cap(settings: Settings, method: str, path: str) -> BodyCap:
    """The cap on a request's body: the upload cap for uploads, else the JSON body cap."""
    if (method, path) in UPLOAD_ROUTES:
        return upload_too_large(settings)
    cap = json_cap(settings)
    return BodyCap(
        cap,
        f"the request body is larger than this server's limit of {cap // KIB} KiB "
        f"({cap:,} bytes, SPARSEARCH_MAX_BODY_KB)",
        "send a smaller body (a job is a few hundred bytes of JSON; datasets are uploaded with "
        "POST /v1/datasets), or ask the operator to raise SPARSEARCH_MAX_BODY_KB",
    )


class Refused(HTTPException):
    """A refusal the guard decided before the app ran (401, 413, or 503 when tokens cannot be
    read), raised by the app at the first point it would read the body (from ``receive``:
    FastAPI re-raises HTTPExceptions met while it parses a body) or resolve the owner
    (``deps.current_owner``). So the app's handlers render it as Problem JSON, and the router
    has chosen the route (the latency metric's label) without reading a byte of the body."""

    def __init__(self, status: int, detail: str, hint: str | None = None) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status, detail, headers=headers)
        self.hint = hint


class BodyTooLarge(Refused):
    """A body over its cap (``BodyCap``): 413 with the limit and the setting to raise."""

    def __init__(self, cap: BodyCap) -> None:
        super().__init__(413, cap.detail, cap.hint)


def bearer_token(headers: Headers) -> str:
    """The token of an ``Authorization: Bearer <token>`` header ("" if none), parsed as
    FastAPI's ``HTTPBearer`` does."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def authenticate(settings: Settings, storage: Any, token: str) -> str | None:
    """The owner of ``token`` (``local`` when auth is off); None for a missing or invalid one.
    Blocking (a database read): run it in a worker thread."""
    if settings.auth == "off":
        return LOCAL_OWNER
    return storage.authenticate(token) if token else None


def unauthorized_detail(token: str) -> str:
    return "missing or invalid token" if token else "missing bearer token"


def _problem(status: int, detail: str, hint: str | None = None) -> JSONResponse:
    body = Problem(detail=detail, hint=hint).model_dump(exclude_none=True)
    return JSONResponse(body, status_code=status)


async def _no_body() -> Message:  # what a guard-made response may receive: nothing
    return {"type": "http.disconnect"}


class RequestGuard:
    """Pure ASGI middleware: authentication, then the body cap (see the module docstring).
    ``state`` is the app's state (``settings``, ``storage``), read per request.

    A refusal decided before the app runs (no valid token; a Content-Length over the cap) is
    left in the scope (``REFUSAL_SCOPE_KEY``) and raised by the app as soon as it asks for the
    body or the owner; the body's bytes are counted as the app receives them."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings: Settings = self.state.settings
        headers = Headers(scope=scope)
        path, method = scope.get("path", ""), scope.get("method", "GET").upper()
        cap = body_cap(settings, method, path)
        refusal: HTTPException | None = None
        if path.startswith(PROTECTED_PREFIX):
            token = bearer_token(headers)
            session = ""
            if not token and method in SAFE_METHODS:
                cookies = cookie_parser(headers.get("cookie", ""))
                session = cookies.get(self.state.sessions.cookie_name, "")
            try:
                if session:  # the dashboard's own reads (its session cookie): GET/HEAD only
                    owner = await _cookie_owner(self.state, session)
                elif headers.get("authorization") and settings.auth == "on":  # an attempt
                    owner = await _attempt(self.state, client_of(scope), token)
                else:
                    owner = await _authenticate(settings, self.state.storage, token)
            except StorageError as e:
                owner, refusal = None, Refused(503, e.message, e.hint)
            except TooManyFailures as e:
                owner, refusal = None, e
            if refusal is None and owner is None:
                refusal = Refused(401, unauthorized_detail(token))
            if owner is not None:
                scope[OWNER_SCOPE_KEY] = owner
        elif method not in SAFE_METHODS:
            refusal = await _form_refusal(self.state, scope, headers)
        declared = headers.get("content-length", "")
        if refusal is None and declared.isdigit() and int(declared) > cap.limit:
            refusal = BodyTooLarge(cap)
        if refusal is not None:
            scope[REFUSAL_SCOPE_KEY] = refusal

        seen, over, started = 0, False, False

        async def guarded_receive() -> Message:
            nonlocal seen, over
            if refusal is not None:
                raise refusal
            if over:
                raise BodyTooLarge(cap)
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap.limit:
                    over = True
                    raise BodyTooLarge(cap)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over and not started:  # whatever the app made of the refused body: ours below
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await _problem(413, cap.detail, cap.hint)(scope, _no_body, send)


async def _form_refusal(state: Any, scope: Scope, headers: Headers) -> HTTPException | None:
    """The dashboard's refusal of a form request before its body is read (None: read it)."""
    form_guard = getattr(state, "form_guard", None)
    if form_guard is None:  # an app without the dashboard
        return None
    try:
        return await form_guard(scope, headers)  # type: ignore[no-any-return]
    except StorageError as e:
        return Refused(503, e.message, e.hint)


async def _cookie_owner(state: Any, cookie: str) -> str | None:
    """The owner of a dashboard session cookie (None: invalid, expired or revoked)."""
    import anyio.to_thread

    session = await anyio.to_thread.run_sync(state.sessions.read, cookie)
    return None if session is None else session.owner


async def _attempt(state: Any, client: str, token: str) -> str | None:
    """The owner of ``token`` presented by ``client``, counting a failure (None); raises
    TooManyFailures while the client is backed off, before the token is looked at."""
    import anyio.to_thread

    backoff: AuthBackoff = state.auth_backoff

    def attempt() -> str | None:
        backoff.check(client)
        owner = authenticate(state.settings, state.storage, token)
        if owner is None:
            backoff.failed(client)
        return owner

    return await anyio.to_thread.run_sync(attempt)


async def _authenticate(settings: Settings, storage: Any, token: str) -> str | None:
    if settings.auth == "off" or not token:
        return authenticate(settings, storage, token)  # no database read: no thread hop
    import anyio.to_thread

    return await anyio.to_thread.run_sync(authenticate, settings, storage, token)
