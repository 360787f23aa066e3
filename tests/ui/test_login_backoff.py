"""The sign-in form backs a client off after repeated wrong tokens, on SQLite and PostgreSQL:
the form then answers 429 with ``Retry-After`` and says why in words, for the right token too,
without reading the form; wrong bearer tokens and wrong sign-ins count together."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from ui_helpers import SESSION, browser, csrf_of, location, page, set_cookies, sign_in

from sparsearch.config import Settings
from sparsearch.storage.models import utcnow

ALLOWED = 3
FIRST = 30  # seconds
WRONG = "ssk_" + "x" * 43


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"auth_failures_allowed": ALLOWED, "auth_backoff_seconds": FIRST}
    )


@pytest.fixture
def clock(app: Any) -> Clock:
    c = Clock()
    app.state.auth_backoff.clock = c
    return c


def test_wrong_sign_ins_then_the_right_one_is_a_429_page_that_says_why(app, alice_token, clock):
    with browser(app) as c:
        for token in [WRONG, "ssk_short", WRONG]:
            assert sign_in(c, token).status_code == 401
        r = sign_in(c, alice_token[1])
        assert r.status_code == 429
        assert r.headers["Retry-After"] == str(FIRST)
        assert r.headers["content-type"].startswith("text/html")
        said = page(r).find(role="alert").text()
        assert "Too many failed sign-ins" in said and f"{FIRST} seconds" in said
        assert SESSION not in set_cookies(r) and SESSION not in c.cookies
        assert csrf_of(r)  # the form is there, to try again later
        assert sign_in(c, WRONG).status_code == 429  # the same for a wrong token

        clock.now += timedelta(seconds=FIRST)
        assert location(sign_in(c, alice_token[1])) == "/"
        assert c.get("/").status_code == 200


def test_an_empty_form_is_no_attempt(app, alice_token, clock):
    with browser(app) as c:
        for _ in range(2 * ALLOWED):
            assert sign_in(c, "").status_code == 401
        assert location(sign_in(c, alice_token[1])) == "/"


def test_bearer_failures_count_at_the_sign_in_form_too(app, alice_token, clock):
    with browser(app) as c:
        for _ in range(ALLOWED):
            r = c.get("/v1/jobs", headers={"Authorization": f"Bearer {WRONG}"})
            assert r.status_code == 401
        assert sign_in(c, alice_token[1]).status_code == 429


def test_a_signed_in_browser_keeps_working_during_a_backoff(app, alice_token, clock):
    """A session cookie is no authentication attempt: the backoff stops guessing, not work."""
    with browser(app) as c:
        assert location(sign_in(c, alice_token[1])) == "/"
        wrong = {"Authorization": f"Bearer {WRONG}"}
        for _ in range(ALLOWED):
            assert c.get("/v1/jobs", headers=wrong).status_code == 401
        assert c.get("/").status_code == 200
        assert c.get("/v1/jobs").status_code == 200
