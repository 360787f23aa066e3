"""API tokens (part of ``Storage``): only the sha256 of a token is stored.

A token is ``ssk_`` + 43 URL-safe characters (256 random bits). Looking a token up by the
sha256 of what the client sent leaks nothing useful through timing: an attacker would have to
choose inputs whose hashes share a prefix with a stored hash, which reveals nothing about the
plaintext.

Also what authentication keeps on the server: the dashboard's sign-ins (one row each, so
signing out ends a session everywhere, whatever process serves the next request) and each
client's failed authentications (the backoff every API process applies).
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update

from ..errors import NotFoundError
from . import _convert as cv
from ._base import StorageBase
from .models import AuthFailure, DashboardSession, Token, utcnow
from .records import ConflictError, TokenInfo

TOKEN_PREFIX = "ssk_"
#: Characters of a token kept for display (``ssk_`` + 8).
DISPLAY_CHARS = 12
#: ``last_used_at`` is written at most this often per token (not on every request).
LAST_USED_RESOLUTION = timedelta(seconds=60)
# Longer than any token we issue; anything longer is refused before hashing.
_MAX_TOKEN_CHARS = 256
# Token ids are 32-bit integers on PostgreSQL: a larger one names no token (and would be
# a driver error).
_MAX_TOKEN_ID = 2**31 - 1
#: The columns of a ``TokenInfo`` (never the hash).
_RECORD_COLUMNS = tuple(getattr(Token, f.name) for f in dataclasses.fields(TokenInfo))


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode("ascii")).hexdigest()


def _token_missing(token_id: object) -> NotFoundError:
    return NotFoundError(f"token {token_id!r} does not exist", "list the tokens to see their ids")


class TokensMixin(StorageBase):
    def create_token(self, owner: str, name: str = "default") -> tuple[TokenInfo, str]:
        """A new token for ``owner``: its record and the plaintext (shown once, never stored).

        ValueError for an invalid owner (1-64 of ``A-Za-z0-9_.@-``) or name (1-128 printable
        characters).
        """
        owner = cv.check_owner(owner)
        name = cv.check_name(name)
        plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = Token(
            owner=owner,
            name=name,
            token_hash=hash_token(plaintext),
            prefix=plaintext[:DISPLAY_CHARS],
        )
        with self._tx("creating a token", conflict="token collision; try again") as s:
            s.add(row)
            s.flush()
            return cv.token_info(row), plaintext

    def list_tokens(self, owner: str | None = None) -> list[TokenInfo]:
        """Tokens (revoked ones too), oldest first."""
        query = select(Token).order_by(Token.id)
        if owner is not None:
            query = query.where(Token.owner == owner)
        with self._tx("listing tokens") as s:
            return [cv.token_info(r) for r in s.scalars(query)]

    def revoke_token(self, token_id: int, *, owner: str | None = None) -> TokenInfo:
        """Revoke a token (idempotent: the first revocation time is kept).

        NotFoundError if it does not exist (or, with ``owner``, belongs to someone else).
        """
        try:
            key = operator.index(token_id)
        except TypeError:
            raise _token_missing(token_id) from None
        with self._tx("revoking a token") as s:
            row = s.get(Token, key)
            if row is None or (owner is not None and row.owner != owner):
                raise _token_missing(token_id)
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.flush()
            return cv.token_info(row)

    def authenticate(self, plaintext: str) -> str | None:
        """The owner of a valid, unrevoked token; None for anything else (never raises for bad
        input; a database failure is still a StorageError)."""
        info = self.token_login(plaintext)
        return None if info is None else info.owner

    def token_login(self, plaintext: str) -> TokenInfo | None:
        """The record of a valid, unrevoked token (``last_used_at`` brought up to date, at
        most every ``LAST_USED_RESOLUTION``); None for anything else, as in ``authenticate``
        (whose check this is). The dashboard starts a session with the id
        (``start_session``) and asks ``session_owner`` on each request."""
        if (
            not isinstance(plaintext, str)
            or not plaintext.startswith(TOKEN_PREFIX)
            or len(plaintext) > _MAX_TOKEN_CHARS
            or not plaintext.isascii()
        ):
            return None
        digest = hash_token(plaintext)
        with self._read("checking a token") as s:
            row = s.execute(
                select(*_RECORD_COLUMNS).where(
                    Token.token_hash == digest, Token.revoked_at.is_(None)
                )
            ).first()
            if row is None:
                return None
            info = TokenInfo(**row._asdict())
            now = utcnow()
            cutoff = now - LAST_USED_RESOLUTION
            if info.last_used_at is None or info.last_used_at < cutoff:
                s.execute(
                    update(Token)
                    .where(
                        Token.id == info.id,
                        or_(Token.last_used_at.is_(None), Token.last_used_at < cutoff),
                    )
                    .values(last_used_at=now)
                    .execution_options(synchronize_session=False)
                )
                info = dataclasses.replace(info, last_used_at=now)
            return info

    def token_owner(self, token_id: int) -> str | None:
        """The owner of token ``token_id`` while it exists and is not revoked, else None (also
        for an id that is no integer or out of range): one primary-key read, so that a
        revoked token's dashboard sessions end at their next request."""
        if isinstance(token_id, bool):
            return None
        try:
            key = operator.index(token_id)
        except TypeError:
            return None
        if not 1 <= key <= _MAX_TOKEN_ID:
            return None
        with self._read("checking a token") as s:
            owner = s.scalar(select(Token.owner).where(Token.id == key, Token.revoked_at.is_(None)))
            return None if owner is None else str(owner)

    # -- dashboard sessions ----------------------------------------------------------------

    def start_session(self, token_id: int, secret: str, expires_at: datetime) -> None:
        """Record a dashboard sign-in with ``token_id`` whose cookie carries ``secret`` (only
        its sha256 is stored), valid until ``expires_at``; sessions expired before now are
        swept. ValueError for a secret that is not 32-256 ASCII characters; NotFoundError for
        a token that does not exist."""
        digest = _session_digest(secret)
        if digest is None:
            raise ValueError("a session secret is 32-256 ASCII characters")
        with self._tx("starting a session", conflict="session collision; sign in again") as s:
            s.execute(delete(DashboardSession).where(DashboardSession.expires_at <= utcnow()))
            if s.get(Token, token_id) is None:
                raise _token_missing(token_id)
            s.add(DashboardSession(id=digest, token_id=token_id, expires_at=expires_at))

    def session_owner(self, token_id: int, secret: str, now: datetime | None = None) -> str | None:
        """The owner of a dashboard session while it exists (not signed out), has not expired
        (by ``now``, default the current time) and its token ``token_id`` is unrevoked; None
        otherwise, also for malformed input. One primary-key read, on every request."""
        digest = _session_digest(secret)
        if digest is None or isinstance(token_id, bool) or not isinstance(token_id, int):
            return None
        if not 1 <= token_id <= _MAX_TOKEN_ID:
            return None
        with self._read("checking a session") as s:
            owner = s.scalar(
                select(Token.owner)
                .join(DashboardSession, DashboardSession.token_id == Token.id)
                .where(
                    DashboardSession.id == digest,
                    DashboardSession.token_id == token_id,
                    DashboardSession.expires_at > (now or utcnow()),
                    Token.revoked_at.is_(None),
                )
            )
            return None if owner is None else str(owner)

    def end_session(self, secret: str) -> bool:
        """End the dashboard session of ``secret`` (sign-out); False if there was none."""
        digest = _session_digest(secret)
        if digest is None:
            return False
        with self._read("ending a session") as s:
            done = s.execute(delete(DashboardSession).where(DashboardSession.id == digest))
            return bool(done.rowcount)

    # -- failed authentications ------------------------------------------------------------

    def auth_blocked_until(self, client: str, now: datetime | None = None) -> datetime | None:
        """When ``client``'s backoff ends, while it lasts at ``now``; None when it has none."""
        with self._read("checking failed sign-ins") as s:
            until = s.scalar(
                select(AuthFailure.blocked_until).where(AuthFailure.client == _client(client))
            )
        return until if until is not None and until > (now or utcnow()) else None

    def record_auth_failure(
        self,
        client: str,
        backoff: Callable[[int], float],
        forget_after: timedelta,
        now: datetime | None = None,
    ) -> datetime | None:
        """Count a failed authentication of ``client`` and return when the backoff it earned
        ends (None: none). ``backoff(failures)`` is the policy: the seconds to back off after
        that many failures (0: none). A client is forgotten ``forget_after`` past its last
        failure or the end of its backoff, whichever is later; its next failure counts 1.

        Safe across processes: counting is one transaction (SQLite: its first statement takes
        the write lock; PostgreSQL: the row is locked), and two first failures racing to
        insert are retried once as an update."""
        now = now or utcnow()
        try:
            return self._count_failure(_client(client), backoff, forget_after, now)
        except ConflictError:  # another process inserted this client's first failure
            return self._count_failure(_client(client), backoff, forget_after, now)

    def _count_failure(
        self, key: str, backoff: Callable[[int], float], forget_after: timedelta, now: datetime
    ) -> datetime | None:
        with self._tx("recording a failed sign-in", conflict="racing first failure") as s:
            # The first statement (on SQLite it takes the write lock) forgets quiet clients,
            # this one too when it was quiet: its count starts afresh.
            s.execute(delete(AuthFailure).where(AuthFailure.forget_at <= now))
            row = s.get(AuthFailure, key, with_for_update=True)
            if row is None:
                row = AuthFailure(client=key, failures=0, blocked_until=None)
                s.add(row)
            row.failures += 1
            row.last_failure_at = now
            seconds = backoff(row.failures)
            if seconds > 0:
                row.blocked_until = now + timedelta(seconds=seconds)
            row.forget_at = max(now, row.blocked_until or now) + forget_after
            until = row.blocked_until
            return until if until is not None and until > now else None


#: Length of a client key (an IPv6 address with its zone fits).
_CLIENT_CHARS = 64


def _client(client: str) -> str:
    return (client or "-")[:_CLIENT_CHARS]


def _session_digest(secret: object) -> str | None:
    if not isinstance(secret, str) or not 32 <= len(secret) <= 256 or not secret.isascii():
        return None
    return hashlib.sha256(secret.encode("ascii")).hexdigest()
