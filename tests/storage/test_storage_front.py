"""The front's reads on SQLite and PostgreSQL: the job's flash accounting decides which flash
``best_front_trial(max_flash=)`` compares (``nnz_flash_bytes`` under sparse), every answer says
which accounting applied, and owners are kept apart as in ``get_job``."""

from __future__ import annotations

import pytest

from sparsearch.errors import NotFoundError
from sparsearch.jobconfig import FLASH_ACCOUNTINGS
from sparsearch.vocabulary import ACCOUNTED_FLASH_FIELDS, accounted_flash, flash_accounting_of

# accuracy, dense flash, non-zero flash, RAM
ROWS = [(0.95, 20000, 8000, 5000), (0.90, 9000, 4500, 3000), (0.80, 30000, None, 1000)]


def _job(storage, config: dict, owner: str = "alice") -> str:
    job = storage.create_job(dataset="digits", config=config, owner=owner)
    for i, (acc, flash, nnz, ram) in enumerate(ROWS):
        est = {"flash_bytes": flash, "ram_bytes": ram}
        if nnz is not None:
            est["nnz_flash_bytes"] = nnz
        storage.add_trial(
            job.id, i, status="running", params={}, generator="Sobol", gen_seconds=0.1,
            estimates=est, feasible=True, pruning={"method": "magnitude", "level": 0.5},
        )  # fmt: skip
        storage.finish_trial(job.id, i, status="completed", metrics={"accuracy": acc})
    storage.set_pareto(job.id, range(len(ROWS)))
    return job.id


def test_every_accounting_names_a_trial_field():
    assert set(ACCOUNTED_FLASH_FIELDS) == set(FLASH_ACCOUNTINGS)
    assert accounted_flash("sparse", {"flash_bytes": 9, "nnz_flash_bytes": 4}) == 4
    assert accounted_flash("dense", {"flash_bytes": 9, "nnz_flash_bytes": 4}) == 9
    assert flash_accounting_of({}) == "dense"  # jobs stored before the option existed
    with pytest.raises(ValueError, match="flash accounting"):
        accounted_flash("weird", {})


@pytest.mark.parametrize(
    ("config", "accounting", "best"),
    [
        ({"flash_accounting": "sparse"}, "sparse", 0),  # 8,000 non-zero bytes fit 10,000
        ({"flash_accounting": "dense"}, "dense", 1),  # 20,000 dense bytes do not
        ({}, "dense", 1),
    ],
)
def test_best_front_trial_counts_the_accounted_flash(storage, config, accounting, best):
    job_id = _job(storage, config)
    got_accounting, trial = storage.best_front_trial(job_id, owner="alice", max_flash=10000)
    assert got_accounting == accounting and trial is not None and trial.index == best
    assert trial.flash_bytes == ROWS[best][1]  # the dense size, whatever the accounting
    # Trial 2 has no non-zero count: it never fits a flash limit under sparse accounting.
    assert storage.best_front_trial(job_id, max_ram=1000)[1].index == 2
    small = storage.best_front_trial(job_id, max_flash=10**6, max_ram=1000)[1]
    assert (small is None) if accounting == "sparse" else (small.index == 2)
    assert storage.best_front_trial(job_id, max_flash=100)[1] is None
    assert storage.best_front_trial(job_id)[1].index == 0


def test_front_and_its_pages_say_the_accounting(storage):
    job_id = _job(storage, {"flash_accounting": "sparse"})
    accounting, front = storage.front(job_id, owner="alice")
    assert accounting == "sparse" and [t.index for t in front] == [0, 1, 2]
    trials, count, accounting = storage.front_page(job_id, owner="alice", limit=2, offset=1)
    assert accounting == "sparse" and count == 3 and [t.index for t in trials] == [1, 2]
    assert storage.front_page(job_id, offset=5)[:2] == ([], 3)
    legacy = _job(storage, {})
    assert storage.front_page(legacy)[2] == storage.front(legacy)[0] == "dense"


@pytest.mark.parametrize("call", ["front", "front_page", "best_front_trial"])
def test_another_owners_front_is_missing(storage, call):
    job_id = _job(storage, {"flash_accounting": "sparse"})
    for job, owner in ((job_id, "bob"), ("nosuchjob", None)):
        with pytest.raises(NotFoundError, match="does not exist"):
            getattr(storage, call)(job, owner=owner)
