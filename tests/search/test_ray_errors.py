"""A Ray cluster that cannot be used is a ClusterError (message and hint naming the setting to
fix) within seconds, in ``init_ray``'s check and in the scheduler, without starting any Ray.
The live cases (a real cluster refusing a process, the CLI's output) are in
test_ray_cluster.py."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sparsearch.config import Settings
from sparsearch.errors import ClusterError
from sparsearch.jobconfig import JobConfig
from sparsearch.service.scheduler import Scheduler
from sparsearch.storage import open_storage
from sparsearch.worker import remote


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_an_unreachable_address_is_refused_at_once() -> None:
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot reach the Ray cluster at {address}") as e:
        remote.check_cluster(address)
    assert time.monotonic() - started < 10
    assert "SPARSEARCH_RAY_ADDRESS" in e.value.message and e.value.hint
    assert "SPARSEARCH_RAY_ADDRESS" in e.value.hint


def test_an_unknown_host_and_a_malformed_address() -> None:
    with pytest.raises(ClusterError, match="unknown host"):
        remote.check_cluster("no-such-host.invalid:6379")
    with pytest.raises(ClusterError, match="is not a Ray address"):
        remote.check_cluster("127.0.0.1")


def test_an_open_port_that_is_not_ray_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "PROBE_TIMEOUT_S", 3.0)
    with socket.socket() as server:  # accepts connections (the backlog), never answers
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(ClusterError, match="no Ray cluster answered") as e:
            remote.check_cluster(address)
    assert time.monotonic() - started < 30
    assert "SPARSEARCH_RAY_ADDRESS" in (e.value.hint or "")


# -- the scheduler -----------------------------------------------------------------------------


@pytest.fixture()
def scheduler(tmp_path: Path) -> Iterator[Scheduler]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        artifact_dir=tmp_path / "artifacts",
        ray_address=f"127.0.0.1:{closed_port()}",
        heartbeat_seconds=0.2,
        scheduler_poll_seconds=0.1,
    )
    storage = open_storage(settings.database_url, settings.artifact_dir)
    sched = Scheduler(settings, storage)
    try:
        yield sched
    finally:
        sched.close()
        storage.close()


def _queue(storage) -> str:
    cfg = JobConfig.create(
        dataset="digits", flash_bytes=24 * 1024, ram_bytes=6 * 1024, trials=2, parallel=2,
        epochs=1, seed=0,
    )  # fmt: skip
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict()).id


def test_scheduler_claims_nothing_while_the_cluster_is_unreachable(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import ray

    # As in a fresh scheduler process (this test process may run the session's Ray already):
    # the real init_ray, whose check fails before ray.init would run.
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    job_id = _queue(scheduler.storage)
    caplog.set_level(logging.ERROR, logger="sparsearch.service.scheduler")
    started = time.monotonic()
    assert scheduler.run_once() is False
    assert time.monotonic() - started < 10
    assert scheduler.storage.get_job(job_id).status == "queued"  # not claimed, not failed
    [record] = [r for r in caplog.records if r.name == "sparsearch.service.scheduler"]
    text = record.getMessage()
    address = scheduler.settings.ray_address
    assert record.levelno == logging.ERROR
    assert f"cannot reach the Ray cluster at {address}" in text and "SPARSEARCH_RAY_ADDRESS" in text
    assert "hint:" in text and record.exc_info is None  # a message, not a traceback


def test_a_cluster_error_after_the_claim_leaves_the_job_interrupted(
    scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refused(*args, **kwargs):
        raise ClusterError("the Ray cluster at x refused this process", "set RAY_AUTH_MODE=token")

    monkeypatch.setattr(Scheduler, "_join_cluster", lambda self: True)
    monkeypatch.setattr(remote, "init_ray", refused)
    job_id = _queue(scheduler.storage)
    caplog.set_level(logging.ERROR, logger="sparsearch.service.scheduler")
    assert scheduler.run_once() is True
    job = scheduler.storage.get_job(job_id)
    assert job.status == "interrupted" and job.error is None  # resumed once the cluster is back
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "refused this process" in text and "RAY_AUTH_MODE=token" in text
    assert f"job {job_id} left interrupted" in text
