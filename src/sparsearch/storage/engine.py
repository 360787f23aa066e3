"""Engines for SQLite and PostgreSQL, and the translation of driver errors into StorageError."""

from __future__ import annotations

import json
import logging
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from ..errors import StorageError

log = logging.getLogger(__name__)

CONNECT_HINT = "is the server running? check SPARSEARCH_DATABASE_URL / --db"
URL_HINT = (
    "use sqlite:///path/to/file.db or postgresql+psycopg://user:password@host:5432/dbname "
    "(SPARSEARCH_DATABASE_URL / --db)"
)
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5
# Pooled connections kept open. It covers the API's threads (``SPARSEARCH_API_THREADS`` is
# capped at it): past the pool size every checkout opens and closes a new connection (a fork
# on PostgreSQL), which measured as most of a page's cost under load.
POOL_SIZE = 10
# The reader engine (``build_reader``) pings a pooled connection on checkout only when it sat
# unused this long: a busy API skips the round trip, an idle one still finds out that the
# server restarted before it runs a query.
READER_IDLE_PING_S = 5.0
_LAST_CHECKIN = "sparsearch_last_checkin"


def _json_loads(text: str | bytes) -> Any:
    """JSON columns are read with orjson (several times faster than ``json``; a page of trials
    decodes ~100 documents); anything orjson refuses but ``json`` accepts (``NaN``, which
    ``json.dumps`` writes) still reads."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_ENGINE_OPTIONS: dict[str, Any] = {"pool_size": POOL_SIZE, "json_deserializer": _json_loads}


def parse_url(url: str | URL) -> URL:
    """Parse and normalise a database URL (``postgresql://`` → ``postgresql+psycopg://``)."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except (ArgumentError, ValueError) as e:
        raise StorageError(f"invalid database URL {mask_url(str(url))!r}", URL_HINT) from e
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_driver_name() != "psycopg":
            raise StorageError(
                f"unsupported PostgreSQL driver in {mask_url(parsed)!r}",
                "use postgresql+psycopg://",
            )
    elif backend != "sqlite":
        raise StorageError(
            f"unsupported database {backend!r} in URL {mask_url(parsed)!r}", URL_HINT
        )
    return parsed


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***`` (safe for messages and logs)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # Unparseable: hide whatever sits between "://user:" and "@".
        head, sep, rest = url.partition("://")
        if sep and "@" in rest:
            creds, _, host = rest.rpartition("@")
            user = creds.split(":", 1)[0]
            return f"{head}://{user}:***@{host}" if ":" in creds else url
        return url


def is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL (None for in-memory)."""
    if is_memory_sqlite(url) or url.query.get("mode") == "memory":
        return None
    database = url.database or ""
    if database.startswith("file:"):  # sqlite:///file:path?uri=true
        return Path(database[len("file:") :].split("?", 1)[0])
    return Path(database)


def build_engine(url: str | URL) -> Engine:
    """An engine for ``url`` (parsed, normalised); does not connect yet."""
    parsed = parse_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            return _sqlite_engine(parsed)
        return _pg_engine(parsed, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError, TypeError) as e:
        raise StorageError(f"cannot use database URL {mask_url(parsed)!r}: {e}", URL_HINT) from e


def build_reader(engine: Engine) -> Engine:
    """The engine for autocommit reads (the API's hot path) beside ``engine``.

    On PostgreSQL, a second pool whose connections are in autocommit mode for good, pinged
    only after ``READER_IDLE_PING_S`` unused. Switching a connection of the main pool to
    autocommit and back on each checkout, plus the pre-ping, measured 0.44 ms of client CPU a
    checkout against 0.18 ms (``benchmarks/api_load.py`` checks out twice a request). The cost:
    a connection that died while busy fails one read (a StorageError, the pool then starts
    afresh) instead of being replaced before it. SQLite's driver already runs SELECTs outside
    a transaction: the engine itself."""
    if engine.dialect.name == "sqlite":
        return engine
    reader = _pg_engine(engine.url, isolation_level="AUTOCOMMIT")
    event.listen(reader, "checkin", _note_checkin)
    event.listen(reader, "checkout", _ping_if_idle)
    return reader


def _pg_engine(url: URL, **options: Any) -> Engine:
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return create_engine(url, connect_args=connect_args, **options, **_ENGINE_OPTIONS)


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info[_LAST_CHECKIN] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Checkout hook: ``SELECT 1`` on a connection idle ``READER_IDLE_PING_S`` or longer; a
    failed ping makes the pool replace the connection (SQLAlchemy's DisconnectionError)."""
    last = record.info.get(_LAST_CHECKIN)
    if last is None or time.monotonic() - last < READER_IDLE_PING_S:
        return  # just connected, or in use moments ago
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as e:  # any driver error: the connection is no use; the pool reconnects
        raise DisconnectionError(f"stale pooled connection: {first_line(e)}") from e


def _sqlite_engine(url: URL) -> Engine:
    path = sqlite_file(url)
    if path is None:
        # One shared connection, or every session would see its own empty database.
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False},
            json_deserializer=_json_loads,
        )
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create the folder for SQLite database {path}: {e}", URL_HINT
            ) from e
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **_ENGINE_OPTIONS
        )
    event.listen(engine, "connect", _sqlite_on_connect)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL is persistent, so this only writes once per file; switching needs an exclusive
        # lock and SQLite reports "locked" at once (no busy wait) while another process
        # creates the file, hence the retry loop.
        deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    cursor.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01 + random.random() * 0.04)
    finally:
        cursor.close()


def check_connection(engine: Engine) -> None:
    """Connect once; an unreachable or invalid database becomes a StorageError."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as e:
        raise connection_error(engine.url, e) from e


def connection_error(url: URL, e: BaseException) -> StorageError:
    reason = first_line(getattr(e, "orig", None) or e)
    return StorageError(f"cannot connect to database {mask_url(url)}: {reason}", CONNECT_HINT)


def first_line(e: BaseException) -> str:
    text_ = str(e).strip()
    return text_.splitlines()[0] if text_ else type(e).__name__
