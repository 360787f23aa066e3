"""Sessions end on the server, on SQLite and PostgreSQL: a session cookie copied before sign-out
opens no page, reads nothing from /v1 and sends no form after it; signing out ends that one
sign-in only; a session past its expiry in the database is refused even with a valid
signature."""

from __future__ import annotations

from datetime import timedelta

from ui_helpers import (
    SESSION,
    browser,
    csrf_of,
    form_csrf,
    location,
    login_next,
    set_cookies,
    sign_in,
)

from sparsearch.api.ui.session import CSRF_COOKIE
from sparsearch.storage.models import utcnow

NEW_JOB = {"dataset": "digits", "flash": "32KiB", "ram": "8KiB", "trials": "3"}
NEW_JOB |= {"parallel": "1", "epochs": "2", "seed": "0"}


def _copy(app, cookies: dict[str, str]):
    """A new browser holding only ``cookies`` (what someone who copied them holds)."""
    c = browser(app)
    for name, value in cookies.items():
        c.cookies.set(name, value)
    return c


def _everything_refused(app, cookies, storage, job_id: str, forms: dict[str, str]) -> None:
    """Pages redirect to sign-in, /v1 reads are 401, form posts change nothing."""
    jobs_before = storage.count_jobs(None, owner="alice")
    with _copy(app, cookies) as c:
        assert login_next(c.get("/")) == "/"
        assert login_next(c.get(f"/jobs/{job_id}")) == f"/jobs/{job_id}"
        assert c.get(f"/v1/jobs/{job_id}").status_code == 401
        assert c.get("/v1/jobs").status_code == 401
        r = c.post("/new", data={**NEW_JOB, "csrf": forms["/new"]})
        assert login_next(r) == "/new"
        r = c.post(f"/jobs/{job_id}/delete", data={"csrf": forms["/"]})
        assert location(r).startswith("/login")
    assert storage.count_jobs(None, owner="alice") == jobs_before
    assert storage.get_job(job_id).status == "completed"  # not deleted


def _signed_in_copy(app, alice_token) -> tuple[dict[str, str], dict[str, str]]:
    """Sign in; the browser's cookies and the CSRF fields of its forms."""
    with browser(app) as c:
        assert location(sign_in(c, alice_token[1])) == "/"
        cookies = {SESSION: c.cookies[SESSION], CSRF_COOKIE: c.cookies[CSRF_COOKIE]}
        forms = {"/": form_csrf(c, "/"), "/new": form_csrf(c, "/new")}
        return cookies, forms


def test_a_cookie_copied_before_sign_out_opens_nothing_after_it(
    app, storage, alice_token, alice_job
):
    with browser(app) as c:
        assert location(sign_in(c, alice_token[1])) == "/"
        copied = {SESSION: c.cookies[SESSION], CSRF_COOKIE: c.cookies[CSRF_COOKIE]}
        forms = {"/": form_csrf(c, "/"), "/new": form_csrf(c, "/new")}
        # the copy works while the session lasts
        with _copy(app, copied) as thief:
            assert thief.get("/").status_code == 200
            assert thief.get(f"/v1/jobs/{alice_job}").status_code == 200
        assert location(c.post("/logout", data={"csrf": forms["/"]})) == "/login"
    _everything_refused(app, copied, storage, alice_job, forms)


def test_signing_out_ends_that_sign_in_only(app, storage, alice_token, alice_job):
    laptop, laptop_forms = _signed_in_copy(app, alice_token)
    phone, _ = _signed_in_copy(app, alice_token)  # the same token, another browser
    with _copy(app, laptop) as c:
        assert location(c.post("/logout", data={"csrf": laptop_forms["/"]})) == "/login"
    _everything_refused(app, laptop, storage, alice_job, laptop_forms)
    with _copy(app, phone) as c:
        assert c.get("/").status_code == 200
        assert c.get(f"/v1/jobs/{alice_job}").status_code == 200


def test_a_session_expired_in_the_database_is_refused_everywhere(
    app, storage, alice_token, alice_job
):
    """13 hours on by the server's clock, the session (12 h) has ended in the database, while
    its cookie's signature (checked against the real time) would still pass."""
    cookies, forms = _signed_in_copy(app, alice_token)
    app.state.sessions.clock = lambda: utcnow() + timedelta(hours=11)
    with _copy(app, cookies) as c:
        assert c.get("/").status_code == 200
    app.state.sessions.clock = lambda: utcnow() + timedelta(hours=13)
    _everything_refused(app, cookies, storage, alice_job, forms)


def test_sign_out_with_an_ended_session_still_clears_the_cookie(app, alice_token):
    cookies, forms = _signed_in_copy(app, alice_token)
    with _copy(app, cookies) as c:
        assert location(c.post("/logout", data={"csrf": forms["/"]})) == "/login"
    with _copy(app, cookies) as c:  # again, with the ended session: nothing to check, cleared
        r = c.post("/logout", data={"csrf": forms["/"]})
        assert location(r) == "/login"
        cleared = set_cookies(r)[SESSION]
        assert cleared.value == "" and cleared["max-age"] == "0"
        assert login_next(c.get("/")) == "/"
        assert csrf_of(c.get("/login"))  # the sign-in form is there to use
