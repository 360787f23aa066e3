"""``/login`` and ``/logout``: a server-rendered form (works without JavaScript) that exchanges an
API token for a session cookie (``session.py``). A wrong token counts towards the client's
backoff (``api/auth_backoff.py``); while it lasts the form answers 429 and says so
(``form_guard`` refuses the sign-in before reading it)."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from sparsearch.api.auth_backoff import client_of
from sparsearch.api.ui.render import (
    SignInBackoff,
    check_csrf,
    read_session,
    redirect,
    render,
    safe_next,
    secure_headers,
    sessions_of,
)
from sparsearch.api.ui.session import clear_session_cookie, set_session_cookie

router = APIRouter(include_in_schema=False)


@router.get("/login")
async def login_page(request: Request, next: str = "/") -> Response:
    if sessions_of(request).auth_off or await read_session(request) is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", {"next": safe_next(next), "error": None})


@router.post("/login")
async def login(
    request: Request,
    token: Annotated[str, Form(max_length=256)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> Response:
    sessions = sessions_of(request)
    target = safe_next(next)
    if sessions.auth_off:
        return redirect(target)
    await check_csrf(request, None, csrf)
    token = token.strip()
    info = await anyio.to_thread.run_sync(request.app.state.storage.token_login, token)
    if info is None:
        if token:  # a wrong token, not an empty form: it counts towards a backoff
            backoff = request.app.state.auth_backoff
            await anyio.to_thread.run_sync(backoff.failed, client_of(request.scope))
        error = (
            "That token is not valid: it is mistyped, revoked, or from another server. "
            "Paste a token from `sparsearch token create --owner NAME`."
            if token
            else "Paste your API token (it starts with ssk_)."
        )
        return render(request, "login.html", {"next": target, "error": error}, status=401)
    value, _ = await anyio.to_thread.run_sync(sessions.issue, info.id, info.owner)
    response = redirect(target)
    set_session_cookie(response, request, value, sessions.max_age)
    return secure_headers(response)


@router.post("/logout")
async def logout(request: Request) -> Response:
    session = await read_session(request)
    if session is not None:  # an expired or ended session may always sign out, unread
        form = await request.form()
        await check_csrf(request, session, _field(form.get("csrf")))
        await anyio.to_thread.run_sync(sessions_of(request).end, session)
    response = redirect("/login")
    clear_session_cookie(response, request)
    return secure_headers(response)


def _field(value: object) -> str:
    """A form's text field ("" for a file or a missing one)."""
    return value if isinstance(value, str) else ""


def backoff_page(request: Request, exc: SignInBackoff) -> Response:
    """The sign-in form while this client is backed off: 429, ``Retry-After``, and why."""
    wait = exc.retry_after
    when = f"{wait} seconds" if wait < 120 else f"{-(-wait // 60)} minutes"
    error = (
        f"Too many failed sign-ins from your address: try again in {when}. Check that you "
        "paste the whole token (it starts with ssk_)."
    )
    response = render(request, "login.html", {"next": "/", "error": error}, status=429)
    response.headers["Retry-After"] = str(wait)
    return response
