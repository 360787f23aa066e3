"""Rendering pages: the templates, the signed-in session of a page request, HTML error pages.

Every page response carries the browser's CSRF cookie (set on first visit), a CSP that allows
only this server's own scripts and styles, and ``no-store`` (pages show an owner's data).
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from sparsearch.api.auth_backoff import TooManyFailures
from sparsearch.api.ui import formats
from sparsearch.api.ui.session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Session,
    Sessions,
    browser_id,
    set_browser_cookie,
)
from sparsearch.errors import NotFoundError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters.update(formats.FILTERS)
templates.env.globals.update(formats.GLOBALS)

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


#: Where the request guard leaves the session it read for a form (``form_guard``), so the
#: route does not read it again.
SESSION_SCOPE_KEY = "sparsearch.ui.session"


# Both are HTTPExceptions so that one raised while FastAPI reads a form (by the request
# guard's ``receive``: ``form_guard``) reaches its handler instead of becoming a 400.
class PageError(HTTPException):
    """A page that cannot be shown: rendered as an HTML error page with ``status``."""

    def __init__(self, status: int, title: str, message: str = "") -> None:
        super().__init__(status, message or title)
        self.status, self.title, self.message = status, title, message


class SignInBackoff(TooManyFailures):
    """A sign-in while the client is backed off (``auth_backoff``): the sign-in form, 429."""


class SignInRequired(HTTPException):
    """The page needs a signed-in browser: redirect to ``/login?next=...``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(303, next_url)
        self.next_url = next_url


def sessions_of(request: Request) -> Sessions:
    return request.app.state.sessions  # type: ignore[no-any-return]


async def read_session(request: Request) -> Session | None:
    if SESSION_SCOPE_KEY in request.scope:  # read by the request guard (a form)
        return request.scope[SESSION_SCOPE_KEY]  # type: ignore[no-any-return]
    sessions = sessions_of(request)
    cookie = request.cookies.get(SESSION_COOKIE)
    if sessions.auth_off:
        return sessions.read(cookie)
    if not cookie:
        return None
    return await anyio.to_thread.run_sync(sessions.read, cookie)


async def page_session(request: Request) -> Session:
    """Dependency of every signed-in page: the session, or a redirect to sign in."""
    session = await read_session(request)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(target)
    return session


def safe_next(target: str | None) -> str:
    """A same-site path to go to after sign-in ("/" for anything else: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def job_id_or_404(job_id: str) -> str:
    if not _JOB_ID.match(job_id):
        raise PageError(404, "No such job", f"There is no job {job_id[:64]!r}.")
    return job_id


def owned(call: Any, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, a storage read scoped to an owner; NotFoundError (another
    owner's job, or none) becomes a 404 page that says no more than the API's 404 does."""
    try:
        return call(*args, **kwargs)
    except NotFoundError as e:
        raise PageError(404, "Not found", e.message) from None


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    session: Session | None = None,
    status: int = 200,
) -> HTMLResponse:
    sessions = sessions_of(request)
    browser = browser_id(request)
    new_browser = browser is None
    if browser is None:
        browser = secrets.token_urlsafe(24)
    csrf = sessions.csrf_token(browser, session)
    response = templates.TemplateResponse(
        request,
        template,
        {
            "session": session,
            "auth_off": sessions.auth_off,
            "csrf": csrf,
            "csrf_field": CSRF_FIELD,
            **context,
        },
        status_code=status,
    )
    if new_browser:
        set_browser_cookie(response, request, browser)
    return secure_headers(response)


def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


async def check_csrf(request: Request, session: Session | None, sent: str | None) -> None:
    """PageError 403 unless ``sent`` is this browser's and session's CSRF token."""
    if not sessions_of(request).csrf_ok(browser_id(request), session, sent):
        raise form_expired()


def form_expired() -> PageError:
    return PageError(
        403,
        "This form has expired",
        "The form was not sent from this page of this sign-in (its security token is "
        "missing or stale). Go back, reload the page and send it again.",
    )


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def sign_in_redirect(next_url: str) -> RedirectResponse:
    return redirect(f"/login?next={quote(next_url, safe='/')}")


def error_page(request: Request, exc: PageError, session: Session | None) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": exc.title, "message": exc.message, "status": exc.status},
        session=session,
        status=exc.status,
    )


def wants_html(request: Request) -> bool:
    """A browser navigating to a page (not an API client): for HTML 404s outside ``/v1``."""
    path = request.url.path
    if path.startswith(("/v1/", "/static/")) or path in ("/healthz", "/metrics"):
        return False
    return "text/html" in request.headers.get("accept", "")
