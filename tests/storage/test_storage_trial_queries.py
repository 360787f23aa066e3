"""Trial listing: filters, sort keys with NULLs last, paging, counts — SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from sparsearch.errors import NotFoundError
from sparsearch.storage import TRIAL_SORT_KEYS, Storage

# index: (status, accuracy, flash_bytes, pareto)
ROWS = {
    0: ("completed", 0.8, 100, True),
    1: ("infeasible", None, 50, False),
    2: ("completed", 0.9, None, True),
    3: ("completed", 0.8, 200, False),
    4: ("failed", None, 50, False),
    5: ("completed", 0.7, 10, True),
}


@pytest.fixture
def job_id(storage: Storage) -> str:
    job = storage.create_job(dataset="digits", config={})
    for index in (3, 0, 5, 1, 4, 2):  # insertion order differs from index order
        status, accuracy, flash, _ = ROWS[index]
        storage.add_trial(
            job.id, index, status="running", params={"i": index}, generator="sobol",
            gen_seconds=0.1 * (index + 1), estimates={"flash_bytes": flash, "macs": 7},
            feasible=True, pruning={},
        )  # fmt: skip
        metrics = {"accuracy": accuracy} if accuracy is not None else {}
        storage.finish_trial(job.id, index, status=status, metrics=metrics)
    storage.set_pareto(job.id, [i for i, row in ROWS.items() if row[3]])
    return job.id


def indices(storage: Storage, job_id: str, **kw) -> list[int]:
    return [t.index for t in storage.list_trials(job_id, **kw)]


def test_default_is_index_order(storage: Storage, job_id: str) -> None:
    assert indices(storage, job_id) == [0, 1, 2, 3, 4, 5]
    assert indices(storage, job_id, status="completed") == [0, 2, 3, 5]


def test_sort_nulls_last_both_ways(storage: Storage, job_id: str) -> None:
    assert indices(storage, job_id, sort="accuracy") == [5, 0, 3, 2, 1, 4]
    assert indices(storage, job_id, sort="-accuracy") == [2, 0, 3, 5, 1, 4]
    assert indices(storage, job_id, sort="flash_bytes") == [5, 1, 4, 0, 3, 2]
    assert indices(storage, job_id, sort="-flash_bytes") == [3, 0, 1, 4, 5, 2]
    assert indices(storage, job_id, sort="-index") == [5, 4, 3, 2, 1, 0]
    assert indices(storage, job_id, sort="-gen_seconds") == [5, 4, 3, 2, 1, 0]
    assert indices(storage, job_id, sort="macs") == [0, 1, 2, 3, 4, 5]  # all tie → by index


@pytest.mark.parametrize("key", TRIAL_SORT_KEYS)
def test_every_sort_key_orders_values(storage: Storage, job_id: str, key: str) -> None:
    for descending in (False, True):
        trials = storage.list_trials(job_id, sort=("-" if descending else "") + key)
        values = [getattr(t, key) for t in trials]
        present = [v for v in values if v is not None]
        assert values == present + [None] * (len(values) - len(present))
        assert present == sorted(present, reverse=descending)
        assert sorted(t.index for t in trials) == list(range(6))


def test_filters_paging_and_counts(storage: Storage, job_id: str) -> None:
    assert indices(storage, job_id, pareto=True) == [0, 2, 5]
    assert indices(storage, job_id, pareto=False) == [1, 3, 4]
    assert indices(storage, job_id, pareto=False, status="completed") == [3]
    assert storage.count_trials(job_id) == 6
    assert storage.count_trials(job_id, pareto=True) == 3
    assert storage.count_trials(job_id, status="completed", pareto=False) == 1
    assert storage.count_trials(job_id, status="queued") == 0

    full = indices(storage, job_id, sort="-accuracy")
    pages = [indices(storage, job_id, sort="-accuracy", limit=4, offset=o) for o in (0, 4, 8)]
    assert pages == [full[:4], full[4:], []]
    assert indices(storage, job_id, limit=2, offset=1) == [1, 2]
    assert indices(storage, job_id, offset=4) == [4, 5]
    assert indices(storage, job_id, pareto=True, sort="accuracy", limit=2) == [5, 0]


def test_bad_arguments(storage: Storage, job_id: str) -> None:
    for bad in ("params", "-", "pareto", "status"):
        with pytest.raises(ValueError, match="index, accuracy, test_accuracy, int8_accuracy"):
            storage.list_trials(job_id, sort=bad)
    with pytest.raises(ValueError, match="limit and offset"):
        storage.list_trials(job_id, limit=-1)
    with pytest.raises(ValueError, match="unknown trial status"):
        storage.count_trials(job_id, status="done")
    with pytest.raises(NotFoundError):
        storage.count_trials("nope")
    with pytest.raises(NotFoundError):
        storage.list_trials("nope", sort="accuracy")


# -- trial_page: the API's hot path (narrow sort, then the page's rows) ----------------------

ALL_SORTS = [k for key in TRIAL_SORT_KEYS for k in (key, f"-{key}")]
FILTERS = ({}, {"status": "completed"}, {"pareto": True}, {"pareto": False}, {"status": "queued"})


@pytest.mark.parametrize("sort", ALL_SORTS)
def test_trial_page_walks_the_same_order_as_list_trials(
    storage: Storage, job_id: str, sort: str
) -> None:
    for kw in FILTERS:
        full = storage.list_trials(job_id, sort=sort, **kw)
        walked = []
        for offset in range(0, len(full) + 4, 2):  # two pages past the end, too
            page, count = storage.trial_page(job_id, sort=sort, limit=2, offset=offset, **kw)
            assert count == len(full), (sort, kw, offset)
            assert len(page) == max(0, min(2, len(full) - offset))
            walked += page
        assert walked == full, (sort, kw)  # whole records, every field


def test_trial_page_owner_and_missing_job(storage: Storage, job_id: str) -> None:
    page, count = storage.trial_page(job_id, owner="local", sort="-accuracy", limit=3)
    assert [t.index for t in page] == [2, 0, 3] and count == 6
    for offset in (0, 100):  # a page with rows and one past the end
        with pytest.raises(NotFoundError, match=job_id):
            storage.trial_page(job_id, owner="mallory", offset=offset)
    with pytest.raises(NotFoundError):
        storage.trial_page("nope")
    with pytest.raises(ValueError, match="unknown trial status"):
        storage.trial_page(job_id, status="done")
    with pytest.raises(ValueError, match="limit and offset"):
        storage.trial_page(job_id, offset=-1)
