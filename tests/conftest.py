"""Shared database fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL tests use ``SPARSEARCH_TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``). Without it they look, once per session
and with a 2 s timeout, for a server on ``SPARSEARCH_TEST_PG_PROBE`` (``host:port``, default
``127.0.0.1:5432``; ``off`` to not look) that lets user ``postgres`` in without a password
(database ``test``, else ``postgres``), and use it. They never write to that database but
create their own ``sparsearch_test_<random>`` databases next to it and drop them afterwards.
With no server they skip — except under ``CI=true``, where they fail. The terminal summary
says which server was used, or why they were skipped.

Ctrl-C still runs the teardown. A run that dies without it (SIGTERM, SIGKILL) cannot drop its
databases; the next run does: each test database is commented as ours and held open by a
connection of its run for its whole life, so one of ours that nobody is connected to is an
orphan (and a plain ``DROP DATABASE`` refuses one that somebody is).

Fixtures:
- ``backend``: ``"sqlite"`` or ``"postgres"`` (parametrizes every test that uses the ones below)
- ``db_url``: URL of a fresh, empty database (no schema) for this test
- ``storage``: an opened :class:`~sparsearch.storage.Storage` with no rows and its own
  artifact directory (PostgreSQL: one migrated database per session, emptied per test)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sparsearch.storage import Storage, open_storage
from sparsearch.storage.engine import mask_url, parse_url
from sparsearch.storage.models import Base

PG_ENV = "SPARSEARCH_TEST_DATABASE_URL"
PROBE_ENV = "SPARSEARCH_TEST_PG_PROBE"
PROBE_DEFAULT = "127.0.0.1:5432"
PROBE_TIMEOUT_S = 2  # libpq's smallest connect_timeout
PROBE_USER = "postgres"
PROBE_DATABASES = ("test", "postgres")
TEST_DB_PREFIX = "sparsearch_test_"
SKIP_PREFIX = "PostgreSQL tests cannot run"
#: The comment every test database gets; only databases with it are ever swept as orphans.
TEST_DB_COMMENT = "sparsearch test database (tests/conftest.py); dropped when its run ends"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@dataclass
class _Postgres:
    """Which PostgreSQL this session's tests use (``url``), or why none (``reason``)."""

    url: str | None = None
    source: str = ""
    reason: str = ""
    #: Test databases of earlier runs that died without their teardown, dropped by this one.
    swept: tuple[str, ...] = ()


_PG: _Postgres | None = None  # resolved at most once per session, on first need


def _probe(target: str) -> _Postgres:
    """Look for a server on ``target`` (``host:port``) that lets ``postgres`` in."""
    host, _, port_text = target.rpartition(":")
    unset = f"{PG_ENV} is unset"
    if not host or not port_text.isdigit():
        return _Postgres(reason=f"{PROBE_ENV}={target!r} is not host:port and {unset}")
    port = int(port_text)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return _Postgres(reason=f"no server answered on {target} and {unset}")
    import psycopg

    error = ""
    for dbname in PROBE_DATABASES:
        try:
            psycopg.connect(
                host=host, port=port, user=PROBE_USER, dbname=dbname,
                connect_timeout=PROBE_TIMEOUT_S,
            ).close()  # fmt: skip
        except psycopg.Error as e:
            error = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            continue
        url = f"postgresql+psycopg://{PROBE_USER}@{host}:{port}/{dbname}"
        return _Postgres(url=url, source=f"found on {target}; {unset}")
    return _Postgres(
        reason=f"the server on {target} did not let {PROBE_USER!r} in ({error}) and {unset}"
    )


def _postgres() -> _Postgres:
    global _PG
    if _PG is None:
        url = os.environ.get(PG_ENV, "").strip()
        probe = os.environ.get(PROBE_ENV, "").strip() or PROBE_DEFAULT
        if url:
            _PG = _Postgres(url=url, source=PG_ENV)
        elif probe.lower() == "off":
            _PG = _Postgres(reason=f"{PROBE_ENV}=off and {PG_ENV} is unset")
        else:
            _PG = _probe(probe)
    return _PG


def _postgres_admin_url() -> str:
    pg = _postgres()
    if pg.url is None:
        msg = (
            f"{SKIP_PREFIX}: {pg.reason} — set it (e.g. "
            "postgresql+psycopg://postgres@127.0.0.1:5432/test) to run them"
        )
        if _in_ci():
            pytest.fail(f"{msg}; CI=true forbids skipping them", pytrace=False)
        pytest.skip(msg)
    return pg.url


def _admin_engine(admin_url: str) -> Any:
    return create_engine(parse_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)


#: Per test database, the connection that holds it open while its run lives (see above).
_KEEPERS: dict[str, Any] = {}


def _create_database(admin_url: str) -> str:
    import psycopg

    admin = parse_url(admin_url)
    name = f"{TEST_DB_PREFIX}{uuid.uuid4().hex[:12]}"
    url = admin.set(database=name).render_as_string(hide_password=False)
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
            # Held open before the comment marks it sweepable: a commented database always
            # has its keeper while its run is alive.
            _KEEPERS[name] = psycopg.connect(
                parse_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                autocommit=True,
                connect_timeout=10,
                application_name="sparsearch tests (keeper)",
            )
            conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{TEST_DB_COMMENT}'"))
    finally:
        engine.dispose()
    return url


def _drop_database(admin_url: str, url: str) -> None:
    name = parse_url(url).database
    keeper = _KEEPERS.pop(name, None)
    if keeper is not None:
        keeper.close()
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def _sweep_orphans(admin_url: str) -> list[str]:
    """Drop the test databases of runs that died without their teardown; returns their names.

    Only databases carrying our comment and with no connection are candidates (a live run's
    keeper is one), and the plain ``DROP DATABASE`` fails for any that was opened meanwhile.
    """
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    dropped: list[str] = []
    engine = _admin_engine(admin_url)
    try:
        with engine.connect() as conn:
            names = conn.execute(
                text(
                    "SELECT datname FROM pg_database d WHERE datname LIKE :prefix "
                    "AND shobj_description(oid, 'pg_database') = :comment "
                    "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)"
                ),
                {"prefix": TEST_DB_PREFIX + "%", "comment": TEST_DB_COMMENT},
            ).scalars()
            for name in list(names):
                try:
                    conn.execute(text(f'DROP DATABASE "{name}"'))
                except DBAPIError:  # in use: its run is alive (or someone looks at it)
                    continue
                dropped.append(name)
    except SQLAlchemyError:  # a sweep that cannot run must not fail the tests
        pass
    finally:
        engine.dispose()
    return dropped


# -- markers and pytest-xdist ----------------------------------------------------------------


_SHARED_SCOPES = ("module", "package", "class")


def _shares_a_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` uses a module-, package- or class-scoped fixture (set up once for
    several tests, e.g. a model trained once for a whole file)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d[-1].scope in _SHARED_SCOPES for d in defs if d)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers and an order that suit ``make test`` (pytest-xdist, ``--dist loadgroup``).

    - Tests that use the session's Ray (``ray_address``, directly or through a fixture) are
      marked ``ray``, so ``make test-quick`` (``-m "not slow and not ray"``) leaves them out.
    - A test that shares a module-scoped fixture joins its file's ``xdist_group``: the file's
      expensive set-up then runs once, in one worker, instead of once per worker.
    - ``slow`` and ``ray`` tests come first (a stable sort), so the long ones start at once
      and the many short ones fill the gaps, instead of a long one ending the run alone.
    """
    for item in items:
        if "ray_address" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.ray)
        if _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))

    def waits(item: pytest.Item) -> bool:
        return item.get_closest_marker("slow") is not None or (
            item.get_closest_marker("ray") is not None
        )

    items.sort(key=lambda item: not waits(item))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Under pytest-xdist a worker hands its PostgreSQL outcome to the controller, which
    prints the summary line (workers print none)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and _PG is not None:
        workeroutput["sparsearch_pg"] = dataclasses.asdict(_PG)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """pytest-xdist (controller): merge what each worker learnt about PostgreSQL."""
    global _PG
    found = getattr(node, "workeroutput", {}).get("sparsearch_pg")
    if found is None:
        return
    reported = _Postgres(**{**found, "swept": tuple(found["swept"])})
    if _PG is None:
        _PG = reported
    else:
        _PG.swept = tuple(sorted({*_PG.swept, *reported.swept}))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line on PostgreSQL: the server the tests used, or why they were skipped."""
    if _PG is None:  # no test asked for PostgreSQL
        return
    if _PG.url is not None:
        swept = (
            f"; dropped {len(_PG.swept)} test database(s) left by runs killed before their "
            f"teardown: {', '.join(_PG.swept)}"
            if _PG.swept
            else ""
        )
        terminalreporter.write_line(
            f"PostgreSQL tests used {mask_url(_PG.url)} ({_PG.source}){swept}", bold=True
        )
        return
    if _in_ci():
        terminalreporter.write_line(
            f"PostgreSQL tests failed: {_PG.reason} — CI=true forbids skipping them",
            red=True,
            bold=True,
        )
        return
    skipped = sum(
        1
        for r in terminalreporter.stats.get("skipped", [])
        if isinstance(r.longrepr, tuple) and SKIP_PREFIX in str(r.longrepr[-1])
    )
    terminalreporter.write_line(
        f"PostgreSQL tests skipped ({skipped}): {_PG.reason} — set it to run them",
        yellow=True,
        bold=True,
    )


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL URL in use (only used to create and drop test databases)."""
    url = _postgres_admin_url()
    _postgres().swept = tuple(_sweep_orphans(url))
    return url


@pytest.fixture(scope="session")
def postgres_session_url(postgres_admin_url: str) -> Iterator[str]:
    """A database created for this test session, dropped at its end."""
    url = _create_database(postgres_admin_url)
    yield url
    _drop_database(postgres_admin_url, url)


@pytest.fixture
def fresh_postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A database created for one test (for tests of a fresh, unmigrated database)."""
    url = _create_database(postgres_admin_url)
    yield url
    _drop_database(postgres_admin_url, url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'sparsearch.db'}"
    return request.getfixturevalue("fresh_postgres_url")


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly migrated SQLite database, made once per session: each test's ``storage``
    starts from a copy (a copy is ~2 ms, running the migrations ~45 ms)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "storage.db"
    open_storage(f"sqlite:///{path}", path.parent / "artifacts").close()
    return path


def _empty_postgres(url: str) -> None:
    """Every row of the session's database deleted and its id sequences restarted, as a fresh
    migrated database has them (a DELETE per table is ~6x faster than TRUNCATE on tables this
    small)."""
    engine = create_engine(parse_url(url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for table in reversed(Base.metadata.sorted_tables):  # children before parents
                conn.execute(table.delete())
            sequences = conn.execute(
                text("SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences")
            ).scalars()
            for sequence in sequences:
                conn.execute(text("SELECT setval(:s, 1, false)"), {"s": sequence})
    finally:
        engine.dispose()


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    artifact_dir = tmp_path / "artifacts"
    if backend == "sqlite":
        path = tmp_path / "storage.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("postgres_session_url")
    st = open_storage(url, artifact_dir)
    if backend == "postgres":
        _empty_postgres(url)
    try:
        yield st
    finally:
        st.close()


# -- Ray -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A real local Ray (2 CPUs), started once per session and shared by every test folder.

    Subprocesses join it with ``SPARSEARCH_RAY_ADDRESS=<this address>`` instead of starting
    their own."""
    import ray

    from sparsearch.worker.remote import init_ray

    started = init_ray("", num_cpus=2, object_store_mb=200)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()
