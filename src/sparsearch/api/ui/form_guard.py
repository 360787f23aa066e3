"""The dashboard's forms are checked before their bodies are read.

FastAPI reads (for an upload: spools) a form's whole body before it resolves any dependency,
so a route cannot refuse a request before reading it. The request guard (``api/guard.py``)
therefore calls :class:`FormGuard` for every state-changing request outside ``/v1`` before the
app runs, and raises the refusal it returns at the first read of the body, where the page's
handlers render it:

- without a valid session (none, forged, expired, signed out): a redirect to sign in — except
  for ``/login``, and ``/logout``, which reads no body without a session;
- without the browser's CSRF cookie: the "form has expired" page (403), as the route's own
  CSRF check would answer once it had read the body;
- a sign-in while the client is backed off after failed ones (``api/auth_backoff.py``): the
  sign-in form with a 429 and ``Retry-After``, for the right token as for a wrong one.

The session it read is left in the scope, so the route does not read it again. The guard then
checks the declared length against the body cap.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from sparsearch.api.auth_backoff import AuthBackoff, client_of
from sparsearch.api.ui.render import (
    SESSION_SCOPE_KEY,
    SignInBackoff,
    SignInRequired,
    form_expired,
)
from sparsearch.api.ui.session import CSRF_COOKIE, SESSION_COOKIE, Sessions, valid_browser_id

#: Forms a browser may send without a session.
SIGNED_OUT_FORMS = frozenset({"/login", "/logout"})


class FormGuard:
    """Checks a dashboard form before its body is read (see the module docstring)."""

    def __init__(self, sessions: Sessions, backoff: AuthBackoff) -> None:
        self.sessions = sessions
        self.backoff = backoff

    async def __call__(self, scope: Scope, headers: Headers) -> HTTPException | None:
        """The refusal of the form request ``scope`` (None: it may be read). Leaves the
        session in the scope."""
        path: str = scope.get("path", "")
        cookies = cookie_parser(headers.get("cookie", ""))
        session = await self._session(cookies.get(SESSION_COOKIE, ""))
        scope[SESSION_SCOPE_KEY] = session
        if path == "/login" and self.sessions.auth_off:
            return None  # no sign-in to make: the route goes straight on
        if session is None and path not in SIGNED_OUT_FORMS:
            return SignInRequired(_target(scope))
        if session is None and path == "/logout":
            return None  # nothing to sign out of: the route reads no body
        if valid_browser_id(cookies.get(CSRF_COOKIE, "")) is None:
            return form_expired()
        if path == "/login":
            wait = await anyio.to_thread.run_sync(self.backoff.retry_after, client_of(scope))
            if wait is not None:
                return SignInBackoff(wait)
        return None

    async def _session(self, cookie: str) -> Any:
        if self.sessions.auth_off or not cookie:
            return self.sessions.read(cookie)  # no database read: no thread hop
        return await anyio.to_thread.run_sync(self.sessions.read, cookie)


def _target(scope: Scope) -> str:
    """Where to come back to after signing in (as ``render.page_session`` says it)."""
    query = scope.get("query_string", b"").decode("latin-1")
    return scope.get("path", "/") + (f"?{query}" if query else "")
