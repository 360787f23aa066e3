"""Alembic migrations shipped in the package, applied on first use under a cross-process lock.

No ``alembic.ini`` is needed: the configuration is built here. To write a new revision during
development::

    .venv/bin/python -m sparsearch.storage.migrations revision -m "what changed"

(autogenerates against a scratch SQLite database migrated to head).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from filelock import FileLock
from filelock import Timeout as FileLockTimeout
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from ..errors import StorageError
from .engine import build_engine, connection_error, first_line, mask_url, sqlite_file

log = logging.getLogger(__name__)

SCRIPT_LOCATION = Path(__file__).with_name("alembic")
#: pg_advisory_lock key for migrations ("sparsrch" as ASCII, fits a signed bigint).
PG_MIGRATION_LOCK_KEY = 0x7370617273726368
LOCK_TIMEOUT_S = 120
UPGRADE_HINT = "run `sparsearch db upgrade` (or open the database once with migrations enabled)"


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for the packaged scripts; ``connection`` is used by ``env.py``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise StorageError("no database migrations are packaged", "reinstall sparsearch")
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def ensure_schema(engine: Engine, *, migrate: bool = True) -> str:
    """Bring the schema to head (if ``migrate``) and return the revision; cheap when current."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    except SQLAlchemyError as e:
        raise connection_error(engine.url, e) from e
    if current == head:
        return head
    if not migrate:
        state = "empty" if current is None else f"at revision {current}"
        raise StorageError(
            f"database {mask_url(engine.url)} is {state}, this sparsearch needs {head}",
            UPGRADE_HINT,
        )
    with _migration_lock(engine):
        try:
            with _migration_connection(engine) as conn:
                # Re-check under the lock: another process may have just migrated.
                current = current_revision(conn)
                if current != head:
                    log.info("migrating %s from %s to %s", mask_url(engine.url), current, head)
                    command.upgrade(alembic_config(conn), "head")
        except CommandError as e:
            raise StorageError(
                f"cannot migrate database {mask_url(engine.url)} (at {current}): {e}",
                "the database was written by a newer sparsearch; upgrade sparsearch",
            ) from e
        except SQLAlchemyError as e:
            raise StorageError(
                f"migrating database {mask_url(engine.url)} failed: {first_line(e)}",
                "check the database user's rights (CREATE TABLE) and that the database is not "
                "an unrelated one",
            ) from e
    return head


def upgrade(url: str) -> str:
    """Migrate the database at ``url`` to the newest schema (``sparsearch db upgrade``)."""
    engine = build_engine(url)
    try:
        return ensure_schema(engine, migrate=True)
    finally:
        engine.dispose()


def migrate_to(url: str, revision: str, *, down: bool = False) -> None:
    """Upgrade (``down=True``: downgrade) the database at ``url`` to ``revision``; for
    development and migration tests (users only ever go to head via ``upgrade``)."""
    engine = build_engine(url)
    try:
        with _migration_lock(engine), _migration_connection(engine) as conn:
            (command.downgrade if down else command.upgrade)(alembic_config(conn), revision)
    finally:
        engine.dispose()


@contextlib.contextmanager
def _migration_connection(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for Alembic.

    On SQLite, foreign keys are off meanwhile: a batch migration rebuilds a table (copy, DROP,
    RENAME), and dropping ``jobs`` with them on would cascade-delete every trial. The pragma is
    a no-op inside a transaction, hence set before it; violations are checked before commit,
    and the pragma is back on before the connection returns to the pool.
    """
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys = OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise StorageError(
                            f"migration left {len(broken)} broken foreign key(s), e.g. "
                            f"{tuple(broken[0])}; nothing was changed",
                            "this is a bug in a sparsearch migration; please report it",
                        )
        finally:
            if sqlite:
                try:
                    conn.exec_driver_sql("PRAGMA foreign_keys = ON")
                    conn.commit()
                except SQLAlchemyError:
                    conn.invalidate()  # never hand out a connection without foreign keys


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "sqlite":
        path = sqlite_file(engine.url)
        if path is None:  # in-memory: private to this process
            yield
            return
        lock = FileLock(f"{path}.lock", timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except FileLockTimeout as e:
            raise StorageError(
                f"timed out after {LOCK_TIMEOUT_S} s waiting for the migration lock {path}.lock",
                "another sparsearch process is migrating or hung; stop it and retry",
            ) from e
        return
    with _pg_advisory_lock(engine):
        yield


@contextlib.contextmanager
def _pg_advisory_lock(engine: Engine) -> Iterator[None]:
    # A dedicated connection holds the session-level lock while another one migrates.
    try:
        lock_conn = engine.connect()
    except SQLAlchemyError as e:
        raise connection_error(engine.url, e) from e
    try:
        try:
            lock_conn.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'"))
            lock_conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": PG_MIGRATION_LOCK_KEY})
            lock_conn.commit()
        except DBAPIError as e:
            raise StorageError(
                f"cannot take the migration lock on {mask_url(engine.url)}: {first_line(e)}",
                "another sparsearch process is migrating or hung; stop it and retry",
            ) from e
        try:
            yield
        finally:
            with contextlib.suppress(SQLAlchemyError):
                lock_conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": PG_MIGRATION_LOCK_KEY}
                )
                lock_conn.commit()
    finally:
        lock_conn.close()


def _revision_cli(argv: list[str]) -> None:  # pragma: no cover - developer tool
    """``python -m sparsearch.storage.migrations revision -m MSG``: autogenerate a revision."""
    if len(argv) < 3 or argv[0] != "revision" or argv[1] != "-m":
        raise SystemExit("usage: python -m sparsearch.storage.migrations revision -m MESSAGE")
    with tempfile.TemporaryDirectory() as tmp:
        engine = build_engine(f"sqlite:///{tmp}/scratch.db")
        ensure_schema(engine)
        with engine.begin() as conn:
            command.revision(alembic_config(conn), message=" ".join(argv[2:]), autogenerate=True)
        engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    _revision_cli(sys.argv[1:])
