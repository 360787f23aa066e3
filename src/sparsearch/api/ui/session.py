"""Dashboard sign-in: signed session cookies and CSRF tokens.

- **Session cookie.** Signing in exchanges an API token for a cookie that holds the token's id,
  its owner and a random nonce, signed (itsdangerous, HMAC-SHA256) with a key that is a setting
  (``SPARSEARCH_SESSION_SECRET``) or, when unset, generated once and stored in the database, so
  every ``serve --workers`` process and every restart agrees. The signature carries its time:
  a cookie older than ``SPARSEARCH_SESSION_HOURS`` is refused.
- **Sessions end on the server.** Each sign-in is a row in the database (the sha256 of its
  nonce, its token, its expiry); every request re-checks that the row exists, has not expired
  and that its token is unrevoked (one primary-key read). Signing out deletes the row, so a
  copy of the cookie stops working at once, in every process; revoking a token ends all of its
  sessions. (A session table rather than a per-token counter: signing out of one browser
  leaves the token's other sign-ins alone, and the rows say who is signed in.)
  The cookie is ``HttpOnly; SameSite=Strict`` (``Secure`` when the request came over HTTPS).
- **CSRF.** Every state-changing form carries a token: the HMAC of a random per-browser cookie
  (``sparsearch_csrf``) and of the session's nonce (empty before sign-in). A cross-site form
  can neither read that cookie nor compute the HMAC, and SameSite=Strict keeps the cookies off
  cross-site requests besides. A new sign-in changes the nonce, so a form rendered before it
  stops working.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from sparsearch.config import Settings

SESSION_COOKIE = "sparsearch_session"
CSRF_COOKIE = "sparsearch_csrf"
CSRF_FIELD = "csrf"
#: Name of the generated signing key in the database (``Storage.secret``).
KEY_NAME = "dashboard_session_key"
_SALT = "sparsearch.dashboard.session"


@dataclass(frozen=True)
class Session:
    """A signed-in browser: the token it signed in with and its owner."""

    token_id: int | None  # None: auth is off (the ``local`` owner, no sign-in)
    owner: str
    nonce: str


class Sessions:
    """Issues and reads the session cookie and CSRF tokens of one app (one per process; the
    key is read from the settings or the database on first use)."""

    cookie_name = SESSION_COOKIE

    def __init__(self, settings: Settings, storage: Any) -> None:
        self.settings = settings
        self.storage = storage
        #: The time sessions expire by (tests move it on).
        self.clock: Callable[[], datetime] = _utcnow
        self._key: str | None = settings.session_secret
        self._lock = threading.Lock()

    @property
    def auth_off(self) -> bool:
        return self.settings.auth == "off"

    @property
    def max_age(self) -> int:
        return int(self.settings.session_hours * 3600)

    def key(self) -> str:
        """The signing key: the setting, else the database's (generated on first use)."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self.storage.secret(KEY_NAME, lambda: secrets.token_urlsafe(48))
        return self._key

    def _serializer(self) -> URLSafeTimedSerializer:
        return URLSafeTimedSerializer(self.key(), salt=_SALT)

    def issue(self, token_id: int, owner: str) -> tuple[str, Session]:
        """Start a session for a sign-in with ``token_id``: its cookie value and the session.
        Blocking (a database write): call it from a worker thread."""
        session = Session(token_id, owner, secrets.token_urlsafe(32))
        expires = self.clock() + timedelta(seconds=self.max_age)
        self.storage.start_session(token_id, session.nonce, expires)
        value = self._serializer().dumps({"t": token_id, "o": owner, "n": session.nonce})
        return value, session

    def end(self, session: Session) -> None:
        """Sign out: the session's cookie (and any copy of it) opens nothing any more.
        Blocking (a database write): call it from a worker thread."""
        if session.token_id is not None:
            self.storage.end_session(session.nonce)

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie: validly signed, not expired, not signed out, and its token
        still unrevoked and still its owner's; None otherwise. With auth off, always the
        ``local`` session. Blocking (a database read): call it from a worker thread."""
        if self.auth_off:
            return Session(None, "local", "")
        if not cookie or len(cookie) > 1024:
            return None
        try:
            data = self._serializer().loads(cookie, max_age=self.max_age)
            token_id, owner, nonce = int(data["t"]), str(data["o"]), str(data["n"])
        except (BadSignature, KeyError, TypeError, ValueError):
            return None
        if self.storage.session_owner(token_id, nonce, self.clock()) != owner:
            return None  # signed out, expired, or its token revoked since the sign-in
        return Session(token_id, owner, nonce)

    def csrf_token(self, browser: str, session: Session | None) -> str:
        """The CSRF token of a browser (its ``sparsearch_csrf`` cookie) and session."""
        message = f"{browser}|{session.nonce if session else ''}".encode()
        return hmac.new(self.key().encode(), message, hashlib.sha256).hexdigest()

    def csrf_ok(self, browser: str | None, session: Session | None, sent: str | None) -> bool:
        if not browser or not sent:
            return False
        return hmac.compare_digest(self.csrf_token(browser, session), sent)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def browser_id(request: Request) -> str | None:
    """The browser's CSRF cookie, when it has a well-formed one."""
    return valid_browser_id(request.cookies.get(CSRF_COOKIE, ""))


def valid_browser_id(value: str) -> str | None:
    """A CSRF cookie's value when it is well-formed, else None."""
    return value if 16 <= len(value) <= 64 and value.isascii() else None


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_browser_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        CSRF_COOKIE,
        value,
        max_age=400 * 24 * 3600,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


def set_session_cookie(response: Response, request: Request, value: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path="/",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
