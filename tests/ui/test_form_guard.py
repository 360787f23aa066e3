"""Every dashboard form (every POST outside /v1) checks the session, the CSRF cookie and the
declared length before a byte of its body is read, on SQLite and PostgreSQL: without a session
it redirects to sign-in, without the CSRF cookie it is a 403 page, over its cap a 413 page, and
the body was never received.

As in ``tests/api/test_body_limits.py`` the requests go straight to the ASGI app with a
``receive`` that counts the chunks it hands out (``tests/asgi_stream.py``), so "not read" is an
exact count."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from ui_helpers import SESSION, browser, location, sign_in

from asgi_stream import stream
from sparsearch.api.ui.session import CSRF_COOKIE

CHUNK = 64 * 1024
CHUNKS = 1200  # 75 MiB offered: more than the upload cap (64 MiB)
MULTIPART = "multipart/form-data; boundary=xyz"
FORM = "application/x-www-form-urlencoded"

#: The dashboard's forms that need a signed-in browser, and the body each takes.
SIGNED_IN_FORMS = [
    ("/datasets", MULTIPART),
    ("/new", FORM),
    ("/jobs/{job}/cancel", FORM),
    ("/jobs/{job}/delete", FORM),
]


def post(app, path: str, cookies: dict[str, str], content_type: str, length: int | None = None):
    """POST ``CHUNKS`` chunks to ``path`` (with ``Content-Length: length`` if given) straight to
    the ASGI app; (status, headers, body, chunks the app received)."""
    headers = [("content-type", content_type), ("accept", "text/html")]
    if cookies:
        headers.append(("cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())))
    if length is not None:
        headers.append(("content-length", str(length)))
    r = stream(app, "POST", path, headers, CHUNKS, b"x" * CHUNK)
    return r.status, r.headers, r.body.decode(errors="replace"), r.pulled


def _sign_in_target(status: int, headers: dict[str, str]) -> str:
    """The ``next`` of a redirect to the sign-in page."""
    assert status == 303, status
    url = urlsplit(headers["location"])
    assert url.path == "/login", headers["location"]
    return parse_qs(url.query)["next"][0]


@pytest.fixture
def cookies(app, alice_token) -> dict[str, str]:
    """A signed-in browser's session and CSRF cookies."""
    with browser(app) as c:
        assert location(sign_in(c, alice_token[1])) == "/"
        return {SESSION: c.cookies[SESSION], CSRF_COOKIE: c.cookies[CSRF_COOKIE]}


@pytest.mark.parametrize("path, content_type", SIGNED_IN_FORMS)
def test_without_a_session_a_form_redirects_to_sign_in_unread(
    app, storage, cookies, alice_job, path, content_type
):
    path = path.format(job=alice_job)
    no_session = {CSRF_COOKIE: cookies[CSRF_COOKIE]}
    forged = {**cookies, SESSION: cookies[SESSION][:-4] + "AAAA"}
    for sent in ({}, no_session, forged):
        for length in (None, CHUNK * CHUNKS):
            status, headers, _, pulled = post(app, path, sent, content_type, length)
            assert _sign_in_target(status, headers) == path
            assert pulled == 0, (sent.keys(), length)
    assert storage.count_jobs(None, owner="alice") == 1
    assert storage.get_job(alice_job).status == "completed"


@pytest.mark.parametrize("path, content_type", SIGNED_IN_FORMS)
def test_a_signed_out_session_is_refused_unread(
    app, storage, cookies, alice_job, path, content_type
):
    with browser(app) as c:
        for name, value in cookies.items():
            c.cookies.set(name, value)
        form = c.get("/").text
        csrf = form.split('name="csrf" value="')[1].split('"')[0]
        assert location(c.post("/logout", data={"csrf": csrf})) == "/login"
    path = path.format(job=alice_job)
    status, headers, _, pulled = post(app, path, cookies, content_type)
    assert _sign_in_target(status, headers) == path
    assert pulled == 0


@pytest.mark.parametrize("path, content_type", SIGNED_IN_FORMS)
def test_without_the_csrf_cookie_a_form_is_403_unread(app, cookies, alice_job, path, content_type):
    status, _, body, pulled = post(
        app, path.format(job=alice_job), {SESSION: cookies[SESSION]}, content_type
    )
    assert (status, pulled) == (403, 0)
    assert "This form has expired" in body


@pytest.mark.parametrize("path, content_type", SIGNED_IN_FORMS)
def test_a_declared_length_over_the_cap_is_413_unread(app, cookies, alice_job, path, content_type):
    status, _, body, pulled = post(
        app, path.format(job=alice_job), cookies, content_type, length=CHUNK * CHUNKS
    )
    assert (status, pulled) == (413, 0)
    assert "Upload too large" in body or "larger than" in body


def test_sign_in_and_sign_out_forms_are_refused_unread(app, cookies):
    browser_only = {CSRF_COOKIE: cookies[CSRF_COOKIE]}
    # signing in: the CSRF cookie is needed, and the body is a short form
    status, _, body, pulled = post(app, "/login", {}, FORM)
    assert (status, pulled) == (403, 0)
    status, _, _, pulled = post(app, "/login", browser_only, FORM, length=CHUNK * CHUNKS)
    assert (status, pulled) == (413, 0)
    # signing out without a session: back to the sign-in page, the cookie cleared, unread
    for sent in ({}, browser_only):
        status, headers, _, pulled = post(app, "/logout", sent, FORM, length=CHUNK * CHUNKS)
        assert (status, headers["location"], pulled) == (303, "/login", 0)
        assert headers["set-cookie"].startswith(f'{SESSION}=""')
