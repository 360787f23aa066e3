"""The reader pool of the API's hot reads (``engine.build_reader``) on PostgreSQL: autocommit
connections of their own, pinged only after sitting idle, so a server-side disconnect costs
at most one failed read and never a wrong answer."""

from __future__ import annotations

import pytest

from sparsearch.errors import StorageError
from sparsearch.storage import Storage, engine

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("backend", ["postgres"], indirect=True),
]


def _reader_pid(storage: Storage) -> int:
    with storage._reader.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def _kill(storage: Storage, pid: int) -> None:
    with storage._engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar_one()


@pytest.fixture
def job_id(storage: Storage) -> str:
    job = storage.create_job(dataset="digits", config={}, owner="o")
    storage.add_trial(
        job.id, 0, status="running", params={}, generator="sobol", gen_seconds=0.1,
        estimates={}, feasible=True, pruning={},
    )  # fmt: skip
    return job.id


def test_reader_is_its_own_autocommit_pool(storage: Storage) -> None:
    assert storage._reader is not storage._engine
    with storage._reader.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is True
    with storage._engine.connect() as conn:  # writes keep their transactions
        assert conn.connection.dbapi_connection.autocommit is False


def test_idle_connection_killed_by_the_server_is_replaced_before_a_read(
    storage: Storage, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = _reader_pid(storage)
    _kill(storage, pid)
    monkeypatch.setattr(engine, "READER_IDLE_PING_S", 0.0)  # every pooled connection is "idle"
    trials, total = storage.trial_page(job_id, owner="o")
    assert ([t.index for t in trials], total) == ([0], 1)
    assert _reader_pid(storage) != pid


def test_busy_connection_killed_by_the_server_fails_one_read_then_recovers(
    storage: Storage, job_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Within READER_IDLE_PING_S of its last use a connection is not pinged: the read on the
    # dead connection fails with the usual connection error (never a stack trace or a wrong
    # answer), and the pool replaces its connections for the next one.
    monkeypatch.setattr(engine, "READER_IDLE_PING_S", 3600.0)
    pid = _reader_pid(storage)
    _kill(storage, pid)
    with pytest.raises(StorageError, match="failed while listing trials"):
        storage.trial_page(job_id, owner="o")
    trials, total = storage.trial_page(job_id, owner="o")
    assert ([t.index for t in trials], total) == ([0], 1)
    assert _reader_pid(storage) != pid
