"""Dashboard sign-in on SQLite and PostgreSQL: the token form and its session cookie (flags,
lifetime, signature, revocation, sign-out), CSRF on every state-changing form, no open
redirects, the signing key shared through the database, auth off, and the cookie on /v1
(reads only)."""

from __future__ import annotations

import time

from api_helpers import seed_job
from itsdangerous import TimestampSigner
from ui_helpers import (
    SESSION,
    browser,
    csrf_of,
    form_csrf,
    location,
    login_next,
    page,
    queued_job,
    set_cookies,
    sign_in,
)

from sparsearch.api.app import create_app

SECRET_A = "a" * 40
SECRET_B = "b" * 40


def _visit(app, cookie: str, path: str = "/"):
    """GET ``path`` from a new browser that holds only the session cookie ``cookie``."""
    c = browser(app)
    c.cookies.set(SESSION, cookie)
    return c.get(path)


def _signed_out(app, cookie: str, job_id: str) -> None:
    """``cookie`` opens neither a page nor the API."""
    assert login_next(_visit(app, cookie)) == "/"
    assert _visit(app, cookie, f"/v1/jobs/{job_id}").status_code == 401


def _signed_in(app, cookie: str, job_id: str) -> None:
    assert _visit(app, cookie).status_code == 200
    assert _visit(app, cookie, f"/v1/jobs/{job_id}").status_code == 200


# -- signing in ------------------------------------------------------------------------------


def test_sign_in_returns_to_the_page_asked_for_with_a_strict_http_only_cookie(
    settings, storage, alice_token, alice_job
):
    app = create_app(settings.model_copy(update={"session_hours": 2.0}), storage=storage)
    path = f"/jobs/{alice_job}?flash=24KiB&ram=6KiB"
    with browser(app) as c:
        assert login_next(c.get(path)) == path
        assert login_next(c.get("/new")) == "/new"

        r = sign_in(c, alice_token[1], path)
        assert location(r) == path
        cookie = set_cookies(r)[SESSION]
        assert cookie["httponly"] is True
        assert cookie["samesite"].lower() == "strict"
        assert cookie["max-age"] == str(2 * 3600)
        assert not cookie["secure"]  # plain http: a Secure cookie would never come back
        assert cookie["path"] == "/"

        shown = c.get(path)
        assert shown.status_code == 200
        assert page(shown).by_id("job-id").text() == alice_job


def test_cookies_are_secure_exactly_over_https(app, alice_token):
    for scheme in ("http", "https"):
        with browser(app, base_url=f"{scheme}://testserver") as c:
            r = sign_in(c, alice_token[1])
            assert location(r) == "/"
            cookies = set_cookies(r)
            assert bool(cookies[SESSION]["secure"]) is (scheme == "https"), scheme
            assert c.get("/").status_code == 200  # the browser sends it back
            csrf = set_cookies(c.get("/login"))  # a new browser's first page
            assert all(bool(m["secure"]) is (scheme == "https") for m in csrf.values())


def test_a_wrong_token_is_a_401_page_and_no_session(client, alice_token):
    for token, says in [("ssk_" + "x" * 40, "not valid"), ("", "Paste your API token")]:
        r = sign_in(client, token)
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("text/html")
        assert says in page(r).find(role="alert").text()
        assert SESSION not in set_cookies(r)
        assert SESSION not in client.cookies
    assert login_next(client.get("/")) == "/"
    assert location(sign_in(client, alice_token[1])) == "/"  # the same browser, right token


OFF_SITE = ["//evil.com", "https://evil.com", "/\\evil.com", "\\\\evil.com", "evil.com"]


def test_next_off_this_site_is_ignored(app, storage, alice_token):
    for target in OFF_SITE:
        job = queued_job(storage, "alice")
        with browser(app) as c:
            form = page(c.get("/login", params={"next": target}))
            assert form.find("input", name="next").attrs["value"] == "/", target
            assert location(sign_in(c, alice_token[1], target)) == "/", target
            assert location(c.get("/login", params={"next": target})) == "/", target
            # the cancel button's way back is checked the same way
            r = c.post(f"/jobs/{job}/cancel", data={"csrf": form_csrf(c), "back": target})
            assert location(r) == f"/jobs/{job}", target


# -- CSRF ------------------------------------------------------------------------------------


def test_sign_in_and_sign_out_need_the_csrf_field_of_this_browser(app, alice_token):
    with browser(app) as other:
        someone_elses = csrf_of(other.get("/login"))
    c = browser(app)
    before_sign_in = csrf_of(c.get("/login"))
    for csrf in ["", "0" * 64, someone_elses]:
        r = c.post("/login", data={"token": alice_token[1], "csrf": csrf, "next": "/"})
        assert r.status_code == 403, csrf
        assert r.headers["content-type"].startswith("text/html")
        assert SESSION not in set_cookies(r)
    assert login_next(c.get("/")) == "/"
    r = c.post("/login", data={"token": alice_token[1], "csrf": before_sign_in, "next": "/"})
    assert location(r) == "/"

    # signing in changed the session: the field from before it is stale now
    for csrf in ["", "0" * 64, before_sign_in]:
        r = c.post("/logout", data={"csrf": csrf})
        assert r.status_code == 403, csrf
        assert SESSION not in set_cookies(r)
        assert c.get("/").status_code == 200  # still signed in


def test_forms_that_change_jobs_need_the_csrf_field(app, storage, alice_token, alice_job):
    c = browser(app)
    before_sign_in = csrf_of(c.get("/login"))
    assert location(sign_in(c, alice_token[1])) == "/"
    queued = queued_job(storage, "alice")
    form = {"dataset": "digits", "flash": "32KiB", "ram": "8KiB", "trials": "3"}
    form |= {"parallel": "1", "epochs": "2", "seed": "0"}
    for csrf in ["", "0" * 64, before_sign_in]:
        r = c.post("/new", data={**form, "csrf": csrf})
        assert r.status_code == 403, csrf
        assert "expired" in page(r).find(role="alert").text()
        assert c.post(f"/jobs/{queued}/cancel", data={"csrf": csrf}).status_code == 403
        assert c.post(f"/jobs/{alice_job}/delete", data={"csrf": csrf}).status_code == 403
    assert storage.count_jobs(None, owner="alice") == 2  # no new job, none deleted
    info = storage.get_job(queued)
    assert (info.status, info.cancel_requested) == ("queued", False)
    assert storage.get_job(alice_job).status == "completed"

    # the page's own field does each
    assert location(c.post("/new", data={**form, "csrf": form_csrf(c, "/new")}))
    csrf = form_csrf(c)
    assert location(c.post(f"/jobs/{queued}/cancel", data={"csrf": csrf})) == f"/jobs/{queued}"
    assert storage.get_job(queued).status == "cancelled"
    assert location(c.post(f"/jobs/{alice_job}/delete", data={"csrf": csrf})) == "/"
    left = {j.id for j in storage.list_jobs(owner="alice", limit=10)}
    assert len(left) == 2 and queued in left and alice_job not in left


# -- the session's end -----------------------------------------------------------------------


def test_sign_out_and_revoking_the_token_end_the_session(
    alice, app, storage, alice_token, alice_job
):
    cookie = alice.cookies[SESSION]
    _signed_in(app, cookie, alice_job)
    r = alice.post("/logout", data={"csrf": form_csrf(alice)})
    assert location(r) == "/login"
    cleared = set_cookies(r)[SESSION]
    assert cleared.value == "" and cleared["max-age"] == "0"
    assert SESSION not in alice.cookies
    assert login_next(alice.get("/")) == "/"

    assert location(sign_in(alice, alice_token[1])) == "/"
    cookie = alice.cookies[SESSION]
    _signed_in(app, cookie, alice_job)
    storage.revoke_token(alice_token[0].id)
    assert login_next(alice.get(f"/jobs/{alice_job}")) == f"/jobs/{alice_job}"
    _signed_out(app, cookie, alice_job)


def test_old_or_altered_cookies_open_nothing(app, settings, alice_token, alice_job, monkeypatch):
    """Cookies signed 11 and 13 hours ago (12 h sessions), and a cookie altered anywhere."""
    assert settings.session_hours == 12
    cookies = {}
    for hours in (11, 13):
        with monkeypatch.context() as m:
            then = int(time.time()) - hours * 3600
            m.setattr(TimestampSigner, "get_timestamp", lambda self, then=then: then)
            with browser(app) as c:
                assert location(sign_in(c, alice_token[1])) == "/"
                cookies[hours] = c.cookies[SESSION]
    _signed_in(app, cookies[11], alice_job)
    _signed_out(app, cookies[13], alice_job)

    cookie = cookies[11]
    # each character of the payload and the middle of the signature carries data (the last
    # base64 character of a signature may have spare bits)
    payload, stamp, signature = cookie.split(".")
    for i in (0, len(payload) // 2, len(payload) + len(stamp) + 1 + len(signature) // 2):
        swapped = "A" if cookie[i] != "A" else "B"
        _signed_out(app, cookie[:i] + swapped + cookie[i + 1 :], alice_job)
    _signed_out(app, "", alice_job)
    _signed_out(app, cookie + "x" * 2000, alice_job)


# -- the signing key -------------------------------------------------------------------------


def test_the_signing_key_is_shared_through_the_database_unless_set(settings, storage, alice_token):
    assert settings.session_secret is None
    job = seed_job(storage, "alice")

    def cookie_of(app) -> str:
        with browser(app) as c:
            assert location(sign_in(c, alice_token[1])) == "/"
            return c.cookies[SESSION]

    first, second = create_app(settings, storage=storage), create_app(settings, storage=storage)
    _signed_in(second, cookie_of(first), job)
    _signed_in(first, cookie_of(second), job)

    def with_secret(secret: str):
        return create_app(settings.model_copy(update={"session_secret": secret}), storage=storage)

    cookie = cookie_of(with_secret(SECRET_A))
    _signed_in(with_secret(SECRET_A), cookie, job)
    _signed_out(with_secret(SECRET_B), cookie, job)
    _signed_out(first, cookie, job)  # the key in the database signs nothing of SECRET_A's
    _signed_out(with_secret(SECRET_A), cookie_of(first), job)


# -- auth off; the cookie on /v1 -------------------------------------------------------------


def test_auth_off_opens_the_pages_as_local(settings, storage):
    job = seed_job(storage, "local")
    hidden = seed_job(storage, "alice")
    app = create_app(settings.model_copy(update={"auth": "off"}), storage=storage)
    with browser(app) as c:
        r = c.get("/")
        assert r.status_code == 200
        doc = page(r)
        assert doc.find(title="Signed in as").text() == "local"
        assert doc.find_all("a", href=f"/jobs/{job}")
        assert not doc.find_all("a", href=f"/jobs/{hidden}")
        assert c.get(f"/jobs/{job}").status_code == 200
        assert location(c.get("/login")) == "/"
        assert location(c.get("/login", params={"next": f"/jobs/{job}"})) == f"/jobs/{job}"


def test_the_session_cookie_reads_the_api_but_never_writes(alice, storage, api_alice):
    job = queued_job(storage, "alice")
    r = alice.get(f"/v1/jobs/{job}")
    assert r.status_code == 200
    assert r.json() == alice.get(f"/v1/jobs/{job}", headers=api_alice).json()
    assert alice.get("/v1/jobs").json()["count"] == 1

    assert alice.post(f"/v1/jobs/{job}/cancel").status_code == 401
    assert alice.delete(f"/v1/jobs/{job}").status_code == 401
    body = {"dataset": "digits", "limits": {"flash_bytes": 9000, "ram_bytes": 3000}}
    assert alice.post("/v1/jobs", json=body | {"budget": {"trials": 2}}).status_code == 401
    info = storage.get_job(job)
    assert (info.status, info.cancel_requested) == ("queued", False)
    assert storage.count_jobs(None, owner="alice") == 1
    # the same request with the token does it
    assert alice.post(f"/v1/jobs/{job}/cancel", headers=api_alice).status_code == 200
