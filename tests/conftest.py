"""Shared database fixtures: every storage test runs on SQLite and on PostgreSQL.

PostgreSQL tests read ``SPARSEARCH_TEST_DATABASE_URL`` (e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/test``); they never write to that database but
create their own ``sparsearch_test_<random>`` databases next to it and drop them afterwards.
Without the variable they skip — except under ``CI=true``, where they fail.

Fixtures:
- ``backend``: ``"sqlite"`` or ``"postgres"`` (parametrizes every test that uses the ones below)
- ``db_url``: URL of a fresh, empty database (no schema) for this test
- ``storage``: an opened :class:`~sparsearch.storage.Storage` with no rows and its own
  artifact directory (PostgreSQL: one migrated database per session, emptied per test)
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sparsearch.storage import Storage, open_storage
from sparsearch.storage.engine import parse_url
from sparsearch.storage.models import Base

PG_ENV = "SPARSEARCH_TEST_DATABASE_URL"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _postgres_admin_url() -> str:
    url = os.environ.get(PG_ENV, "").strip()
    if not url:
        msg = (
            f"{PG_ENV} is not set (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); "
            "PostgreSQL tests cannot run"
        )
        if _in_ci():
            pytest.fail(f"{msg}, and CI=true forbids skipping them", pytrace=False)
        pytest.skip(msg)
    return url


def _create_database(admin_url: str) -> str:
    admin = parse_url(admin_url)
    name = f"sparsearch_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return admin.set(database=name).render_as_string(hide_password=False)


def _drop_database(admin_url: str, url: str) -> None:
    name = parse_url(url).database
    engine = create_engine(parse_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The configured PostgreSQL URL (only used to create and drop test databases)."""
    return _postgres_admin_url()


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


@pytest.fixture
def storage(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    artifact_dir = tmp_path / "artifacts"
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'storage.db'}"
    else:
        url = request.getfixturevalue("postgres_session_url")
    st = open_storage(url, artifact_dir)
    if backend == "postgres":
        engine = create_engine(parse_url(url), poolclass=NullPool)
        try:
            with engine.begin() as conn:
                tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            engine.dispose()
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
