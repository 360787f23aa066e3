"""Failed authentications back a client (its remote address) off, on SQLite and PostgreSQL:
past ``SPARSEARCH_AUTH_FAILURES_ALLOWED`` failures every attempt with a token, right or wrong,
is a 429 with ``Retry-After`` until the backoff ends; the backoff doubles with each further
failure up to its cap; failures are forgotten after a quiet spell; a client that never fails
is never slowed; and every API process (an app over the same database) applies the same
backoff. The backoff's clock is set by the tests: no sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sparsearch.api.app import create_app
from sparsearch.config import Settings
from sparsearch.storage.models import utcnow

ALLOWED = 3
FIRST = 10  # seconds
CAP = 35
FORGET = 600
WRONG = [
    {"Authorization": "Bearer ssk_" + "x" * 43},  # well-formed, no such token
    {"Authorization": "Bearer nope"},  # malformed
    {"Authorization": "Basic YTpi"},  # not a bearer token at all
]


class Clock:
    """The backoff's clock, moved on by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "auth_failures_allowed": ALLOWED,
            "auth_backoff_seconds": FIRST,
            "auth_backoff_max_seconds": CAP,
            "auth_forget_seconds": FORGET,
        }
    )


@pytest.fixture
def clock(app: Any) -> Clock:
    c = Clock()
    app.state.auth_backoff.clock = c
    return c


def _fail(client: TestClient, times: int) -> None:
    for i in range(times):
        r = client.get("/v1/jobs", headers=WRONG[i % len(WRONG)])
        assert r.status_code == 401, (i, r.text)


def _backed_off(r: Any, seconds: int) -> None:
    assert r.status_code == 429, r.text
    assert r.headers["Retry-After"] == str(seconds)
    assert "too many failed authentications" in r.json()["detail"]


def test_wrong_tokens_then_the_right_one_is_429_until_the_backoff_ends(client, alice, clock):
    assert client.get("/v1/jobs", headers=alice).status_code == 200
    _fail(client, ALLOWED)
    refused = client.get("/v1/jobs", headers=alice)
    _backed_off(refused, FIRST)
    # right or wrong, the same answer: the backoff tells nothing about the token
    wrong = client.get("/v1/jobs", headers=WRONG[0])
    _backed_off(wrong, FIRST)
    assert wrong.json() == refused.json()
    _backed_off(client.post("/v1/jobs", json={}, headers=alice), FIRST)  # every route
    clock.advance(FIRST - 4)
    _backed_off(client.get("/v1/jobs", headers=alice), 4)
    # nothing tried during the backoff counted: once it ends the right token works
    clock.advance(4)
    assert client.get("/v1/jobs", headers=alice).status_code == 200

    # each further failure doubles the backoff, up to its cap
    for seconds in (2 * FIRST, CAP, CAP):
        _fail(client, 1)
        _backed_off(client.get("/v1/jobs", headers=alice), seconds)
        clock.advance(seconds)
    assert client.get("/v1/jobs", headers=alice).status_code == 200


def test_a_client_that_never_fails_is_never_slowed(app, alice, clock):
    with (
        TestClient(app, client=("10.0.0.1", 4000)) as attacker,
        TestClient(app, client=("10.0.0.2", 4000)) as user,
    ):
        _fail(attacker, ALLOWED)
        _backed_off(attacker.get("/v1/jobs", headers=alice), FIRST)
        for _ in range(3 * ALLOWED):
            assert user.get("/v1/jobs", headers=alice).status_code == 200
        # requests without a token are no attempt: a 401 as ever, never counted
        for _ in range(3 * ALLOWED):
            assert user.get("/v1/jobs").status_code == 401
        assert user.get("/v1/jobs", headers=alice).status_code == 200


def test_fewer_failures_than_allowed_never_back_off_and_are_forgotten(client, alice, clock):
    _fail(client, ALLOWED - 1)
    assert client.get("/v1/jobs", headers=alice).status_code == 200  # a success resets nothing
    clock.advance(FORGET)
    _fail(client, ALLOWED - 1)  # counted afresh
    assert client.get("/v1/jobs", headers=alice).status_code == 200
    _fail(client, 1)  # ALLOWED within the spell
    _backed_off(client.get("/v1/jobs", headers=alice), FIRST)


def test_every_process_applies_the_same_backoff(settings, storage, alice, clock):
    """Two apps over one database stand for two ``serve --workers`` processes."""
    first, second = create_app(settings, storage=storage), create_app(settings, storage=storage)
    second.state.auth_backoff.clock = first.state.auth_backoff.clock = clock
    with TestClient(first) as a, TestClient(second) as b:
        for i in range(ALLOWED):
            assert (a if i % 2 else b).get("/v1/jobs", headers=WRONG[0]).status_code == 401
        _backed_off(a.get("/v1/jobs", headers=alice), FIRST)
        _backed_off(b.get("/v1/jobs", headers=alice), FIRST)
        clock.advance(FIRST)
        assert b.get("/v1/jobs", headers=alice).status_code == 200


def test_auth_off_has_no_backoff(settings, storage):
    app = create_app(settings.model_copy(update={"auth": "off"}), storage=storage)
    with TestClient(app) as c:
        for _ in range(2 * ALLOWED):
            assert c.get("/v1/jobs", headers=WRONG[0]).status_code == 200


def test_failures_made_at_once_are_each_counted(storage):
    """Forty failures of one client from eight threads (as from several processes): each is
    counted once, so exactly one of them is the fortieth, which starts the backoff."""
    from concurrent.futures import ThreadPoolExecutor

    def policy(failures: int) -> float:
        return 100.0 if failures == 40 else 0.0

    def fail(_: int) -> Any:
        return storage.record_auth_failure("10.9.9.9", policy, timedelta(hours=1))

    with ThreadPoolExecutor(8) as pool:
        ends = list(pool.map(fail, range(40)))
    assert sum(end is not None for end in ends) == 1
    assert storage.auth_blocked_until("10.9.9.9") is not None
    assert storage.auth_blocked_until("10.9.9.8") is None
