"""Backoff after repeated failed authentications, per client (its remote address).

Every failed authentication counts: a bearer token that names no valid token (malformed ones
and other ``Authorization`` schemes included) and a wrong token at the dashboard's sign-in
form. A request that presents no credentials is no attempt, and neither is a session cookie
(signed by the server: it cannot be guessed, and an expired one is normal). Past
``SPARSEARCH_AUTH_FAILURES_ALLOWED`` failures the client is backed off for
``SPARSEARCH_AUTH_BACKOFF_SECONDS``, doubled by each further failure up to
``SPARSEARCH_AUTH_BACKOFF_MAX_SECONDS``; a client quiet for ``SPARSEARCH_AUTH_FORGET_SECONDS``
(counted from the end of its backoff) starts afresh. A success resets nothing, or a client
holding one valid token could interleave it with guesses at others.

During the backoff every attempt of that client, right or wrong, is a 429 with
``Retry-After``, answered before the token is looked at, so it tells nothing about the token.
A client that never fails is never slowed.

The counters live in the database (``Storage.record_auth_failure``), not in process memory:
``serve --workers`` runs several processes, and counters per process would give a guesser a
budget per process and let the right token through in a process that has not seen the
failures. The price is one primary-key read per request that presents a token.

Clients are told apart by the address the server sees: behind a reverse proxy, run the server
with the proxy's forwarded address trusted (uvicorn's ``--forwarded-allow-ips``), or every
client shares the proxy's address and its backoff.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException
from starlette.types import Scope

from sparsearch.config import Settings


@dataclass(frozen=True)
class BackoffPolicy:
    """How long a client is backed off after a number of failures (the settings)."""

    allowed: int
    first_seconds: float
    max_seconds: float
    forget_seconds: float

    @classmethod
    def of(cls, settings: Settings) -> BackoffPolicy:
        return cls(
            settings.auth_failures_allowed,
            settings.auth_backoff_seconds,
            settings.auth_backoff_max_seconds,
            settings.auth_forget_seconds,
        )

    def seconds_after(self, failures: int) -> float:
        """The backoff after ``failures`` failures in a row: none below ``allowed``, then the
        first backoff, doubled per failure past it, at most ``max_seconds``."""
        if failures < self.allowed:
            return 0.0
        doublings = min(failures - self.allowed, 63)  # 2**63 s is past any cap
        return min(self.max_seconds, self.first_seconds * 2.0**doublings)


class TooManyFailures(HTTPException):
    """429: the client is backed off for ``retry_after`` more seconds (whole, at least 1)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            429,
            f"too many failed authentications from this address; try again in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after
        self.hint = (
            "check the token (`sparsearch token list` shows its first characters); each "
            "further failure doubles the wait"
        )


class AuthBackoff:
    """The backoff of one app (see the module docstring). Its methods are blocking (database
    reads and writes): call them from a worker thread."""

    def __init__(self, settings: Settings, storage: Any) -> None:
        self.policy = BackoffPolicy.of(settings)
        self.storage = storage
        self.off = settings.auth == "off"
        #: The time backoffs are measured by (tests move it on).
        self.clock: Callable[[], datetime] = _utcnow

    def retry_after(self, client: str) -> int | None:
        """Seconds until ``client`` may try again, while it is backed off; None otherwise."""
        if self.off:
            return None
        now = self.clock()
        until = self.storage.auth_blocked_until(client, now)
        return None if until is None else _whole_seconds(until - now)

    def check(self, client: str) -> None:
        """Raise TooManyFailures while ``client`` is backed off."""
        seconds = self.retry_after(client)
        if seconds is not None:
            raise TooManyFailures(seconds)

    def failed(self, client: str) -> None:
        """Count a failed authentication of ``client`` (which may start its backoff)."""
        if self.off:
            return
        self.storage.record_auth_failure(
            client,
            self.policy.seconds_after,
            timedelta(seconds=self.policy.forget_seconds),
            self.clock(),
        )


def client_of(scope: Scope) -> str:
    """The client's address as the server sees it ("" when unknown, e.g. a Unix socket)."""
    client = scope.get("client")
    return str(client[0]) if client else ""


def _whole_seconds(left: timedelta) -> int:
    return max(1, math.ceil(left.total_seconds()))


def _utcnow() -> datetime:
    return datetime.now(UTC)
