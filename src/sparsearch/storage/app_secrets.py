"""Server secrets (part of ``Storage``): values the server generates once, such as the
dashboard's cookie-signing key, kept in the database so that every API process and every
restart uses the same one."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from ..errors import StorageError
from . import _convert as cv
from ._base import StorageBase
from .models import AppSecret
from .records import ConflictError


class AppSecretsMixin(StorageBase):
    def secret(self, name: str, make: Callable[[], str]) -> str:
        """The value stored under ``name``; when there is none, store ``make()`` and return it.

        Safe across processes: when several store a first value at once, one insert wins and
        every caller returns the winner's value (a loser's unique violation is caught and the
        stored value read again). ``make`` is called outside any transaction, and only when
        the name is absent. ValueError for a name that is not 1-64 printable characters;
        TypeError when ``make()`` returns anything but a non-empty string."""
        name = cv.check_name(name, what="secret name", max_len=64)
        stored = self._stored_secret(name)
        if stored is not None:
            return stored
        value = make()
        if not isinstance(value, str) or not value:
            raise TypeError(f"secret {name!r}: make() must return a non-empty str, not {value!r}")
        try:
            # The INSERT is the transaction's first statement: on SQLite it takes the write
            # lock (waiting for other writers) and then sees any value committed meanwhile.
            with self._tx("storing a secret", conflict=f"secret {name!r} exists") as s:
                s.add(AppSecret(name=name, value=value))
            return value
        except ConflictError:
            stored = self._stored_secret(name)
            if stored is None:  # a unique violation, yet no row: nothing sane to return
                raise StorageError(
                    f"secret {name!r} could neither be stored nor read", "try again"
                ) from None
            return stored

    def _stored_secret(self, name: str) -> str | None:
        with self._read("reading a secret") as conn:
            return conn.scalar(select(AppSecret.value).where(AppSecret.name == name))
