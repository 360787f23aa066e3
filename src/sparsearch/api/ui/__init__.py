"""The dashboard: server-rendered pages under ``/`` and their static assets under ``/static``,
served by the API app itself (no second server, no CDN: every asset ships in the package).
Pages are left out of the OpenAPI schema."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from sparsearch.api.ui import auth, forms, pages
from sparsearch.api.ui.form_guard import FormGuard
from sparsearch.api.ui.render import (
    HERE,
    PageError,
    SignInBackoff,
    SignInRequired,
    error_page,
    read_session,
    sign_in_redirect,
    wants_html,
)
from sparsearch.api.ui.session import Sessions

__all__ = ["html_error", "install_ui", "wants_html"]


def install_ui(app: FastAPI) -> None:
    """Mount the pages and assets on ``app`` (its state holds ``settings`` and ``storage``)."""
    app.state.sessions = Sessions(app.state.settings, app.state.storage)
    # called by api.guard.RequestGuard before a form's body is read
    app.state.form_guard = FormGuard(app.state.sessions, app.state.auth_backoff)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    for module in (auth, pages, forms):
        app.include_router(module.router)

    @app.exception_handler(SignInRequired)
    async def _sign_in(_: Request, exc: SignInRequired) -> Response:
        return sign_in_redirect(exc.next_url)

    @app.exception_handler(SignInBackoff)
    async def _sign_in_backoff(request: Request, exc: SignInBackoff) -> Response:
        return auth.backoff_page(request, exc)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return error_page(request, exc, await read_session(request))


async def html_error(request: Request, status: int, detail: str) -> Response:
    """An HTTP error (an unknown path, a body over its cap) as an HTML page for a browser."""
    titles = {404: "Page not found", 405: "Not allowed here", 413: "Upload too large"}
    title = titles.get(status, "Request refused")
    return error_page(request, PageError(status, title, detail), await read_session(request))
