"""Opening databases: URLs, migrations, locking, SQLite pragmas (fresh DB per test: ``db_url``)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from schema_helpers import assert_at_head
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sparsearch.errors import StorageError
from sparsearch.storage import head_revision, mask_url, open_storage, upgrade
from sparsearch.storage.engine import parse_url

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from sparsearch.storage import open_storage
    url, artifacts, ready, go = sys.argv[1:5]
    Path(ready).touch()
    deadline = time.monotonic() + 60
    while not Path(go).exists():
        if time.monotonic() > deadline:
            sys.exit(3)
        time.sleep(0.002)
    storage = open_storage(url, artifacts)
    print(storage.create_job(dataset="digits", config={}).id)
    storage.close()
    """
)


def _engine(url: str):
    return create_engine(parse_url(url), poolclass=NullPool)


def test_migrations_match_models(db_url: str) -> None:
    assert upgrade(db_url) == head_revision()
    tables = assert_at_head(db_url, {"ix_trials_job_id_status": "trials"})
    assert {"jobs", "trials", "artifacts", "alembic_version"} <= tables
    assert upgrade(db_url) == head_revision()  # idempotent


def test_open_without_migrate_refuses_outdated_schema(db_url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(db_url, tmp_path / "a", migrate=False)
    assert "sparsearch db upgrade" in (info.value.hint or "")
    upgrade(db_url)
    open_storage(db_url, tmp_path / "a", migrate=False).close()


def test_newer_schema_is_refused(db_url: str, tmp_path: Path) -> None:
    upgrade(db_url)
    engine = _engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future'"))
    finally:
        engine.dispose()
    with pytest.raises(StorageError, match="cannot migrate") as info:
        open_storage(db_url, tmp_path / "a")
    assert "newer sparsearch" in (info.value.hint or "")


def test_concurrent_first_open(db_url: str, tmp_path: Path) -> None:
    """Two processes open the same fresh database at once: both succeed, schema built once."""
    go = tmp_path / "go"
    procs, ready = [], []
    for i in range(2):
        ready.append(tmp_path / f"ready{i}")
        args = [sys.executable, "-c", CHILD, db_url, str(tmp_path / "art"), str(ready[i]), str(go)]
        procs.append(
            subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    try:
        deadline = time.monotonic() + 90
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline, "child processes did not start"
            assert all(p.poll() is None for p in procs), "a child process died early"
            time.sleep(0.01)
        go.touch()
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    job_ids = {out.strip() for out, _ in outputs}
    assert len(job_ids) == 2
    with open_storage(db_url, tmp_path / "art") as storage:
        assert {j.id for j in storage.list_jobs()} == job_ids


def test_sqlite_pragmas_and_parent_folder(tmp_path: Path) -> None:
    path = tmp_path / "new" / "nested" / "sparsearch.db"
    storage = open_storage(f"sqlite:///{path}", tmp_path / "art")
    try:
        assert path.exists()
        with storage._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        storage.close()
    raw = sqlite3.connect(path)  # WAL is persistent: any client sees it
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_in_memory_sqlite(tmp_path: Path) -> None:
    with open_storage("sqlite://", tmp_path / "art") as storage:
        job = storage.create_job(dataset="digits", config={})
        assert storage.get_job(job.id).id == job.id


def test_unreachable_postgres_fails_fast_with_masked_url(tmp_path: Path) -> None:
    start = time.monotonic()
    with pytest.raises(StorageError) as info:
        open_storage("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/x", tmp_path / "a")
    assert time.monotonic() - start < 10
    err = info.value
    assert "127.0.0.1:1" in err.message and "s3cret" not in str(err)
    assert "SPARSEARCH_DATABASE_URL" in (err.hint or "")
    with pytest.raises(StorageError, match="127.0.0.1:1"):
        open_storage("postgresql+psycopg://postgres@127.0.0.1:1/x", tmp_path / "a")


@pytest.mark.parametrize(
    "url", ["", "not a url", "mysql://u:pw@localhost/db", "postgresql+asyncpg://u@h/db"]
)
def test_invalid_urls_are_storage_errors(url: str, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(url, tmp_path / "a")
    assert info.value.hint and "pw" not in str(info.value)


def test_url_normalisation_and_masking() -> None:
    for scheme in ("postgresql", "postgres"):
        assert parse_url(f"{scheme}://u@h/db").drivername == "postgresql+psycopg"
    assert parse_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert mask_url("postgresql://u:hunter2@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert "hunter2" not in mask_url("garbage://u:hunter2@@h")
    assert os.fspath(parse_url("sqlite:///rel/x.db").database) == "rel/x.db"
