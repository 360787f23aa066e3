"""``create_job`` of a finalize job refuses (``FinalizeConflictError``, a ConflictError) while a
chosen trial is being finalized by an active job; checked and inserted in one atomic step, so
racing creators never both pass (SQLite and PostgreSQL). The local CLI says so too."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from sparsearch.cli import app
from sparsearch.jobconfig import JobConfig
from sparsearch.storage import ConflictError
from sparsearch.storage.jobs import FinalizeConflictError


def _source(storage, owner="local"):
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner)
    for i in range(3):
        storage.add_trial(
            job.id, i, status="completed", params={"n_blocks": i + 1}, generator="x",
            gen_seconds=0.0, estimates={}, feasible=True, pruning={},
        )  # fmt: skip
    return job, cfg


def _finalize_config(cfg, source_id, trials):
    params = [{"n_blocks": i + 1} for i in trials]
    return cfg.finalizing(source_id, trials, params, 2).to_dict()


def test_a_second_finalize_of_a_trial_is_refused_until_the_first_settles(storage):
    job, cfg = _source(storage)
    first = storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [0, 1]))
    with pytest.raises(FinalizeConflictError) as refused:
        storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [1, 2]))
    assert isinstance(refused.value, ConflictError)
    assert refused.value.message == (
        f"trial 1 of job {job.id} is being finalized by job {first.id}, which is queued"
    )
    assert f"sparsearch cancel {first.id}" in refused.value.hint
    assert storage.count_jobs() == 2  # nothing was inserted
    with pytest.raises(FinalizeConflictError, match=r"trials 0, 1 of job .* are being"):
        storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [0, 1, 2]))
    storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [2]))
    # Another job's trial 0 is another trial.
    other, _ = _source(storage)
    storage.create_job(dataset="digits", config=_finalize_config(cfg, other.id, [0]))
    storage.request_cancel(first.id)  # queued: cancelled at once
    storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [0, 1]))


def test_racing_finalize_jobs_of_one_trial_exactly_one_is_created(storage):
    job, cfg = _source(storage, owner="alice")
    n = 8
    barrier = threading.Barrier(n)
    created: list[str] = []
    refused: list[str] = []

    def create(quota: bool) -> None:
        barrier.wait()
        try:
            created.append(
                storage.create_job(
                    dataset="digits",
                    config=_finalize_config(cfg, job.id, [0]),
                    owner="alice",
                    max_active=50 if quota else None,  # with and without the quota's lock
                ).id
            )
        except FinalizeConflictError as e:
            refused.append(e.message)

    threads = [threading.Thread(target=create, args=(i % 2 == 0,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(created) == 1 and len(refused) == n - 1
    assert all(created[0] in message for message in refused)


def test_the_local_cli_refuses_with_an_error_and_a_hint(tmp_path):
    from sparsearch.storage import open_storage

    url = f"sqlite:///{tmp_path / 'cli.db'}"
    with open_storage(url, tmp_path / "artifacts") as storage:
        job, cfg = _source(storage)
        active = storage.create_job(dataset="digits", config=_finalize_config(cfg, job.id, [0]))
    result = CliRunner().invoke(
        app,
        ["finalize", job.id, "--trials", "0", "--db", url],
        env={"SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts")},
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
    said = " ".join(result.stderr.split())
    assert f"error: trial 0 of job {job.id} is being finalized by job {active.id}" in said
    assert f"hint: wait for job {active.id} to end" in said
