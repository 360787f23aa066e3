"""Both deployment targets' numbers on a trial (SQLite and PostgreSQL): ``finish_trial`` stores
``vocabulary.TARGET_METRICS`` and ``c_error`` from its metrics; every read path (one trial, a
listing, the API's page query, the front) gives them back; a trial finished without them has
nulls; they sort like the other numbers."""

from __future__ import annotations

import json

import pytest

from sparsearch.storage import METRIC_KEYS, Storage
from sparsearch.vocabulary import TARGET_METRICS

#: Every target number, past 32 bits where a column could be too narrow.
TARGETS = {
    "tflm_flash_bytes": 14_400,
    "tflm_ram_bytes": 10_336,
    "c_flash_bytes": 12_288,
    "c_ram_bytes": 6_144,
    "c_stack_bytes": 512,
    "instructions": 5_000_000_000,
}
NEW_KEYS = (*TARGET_METRICS, "c_error")


def _trial(storage: Storage, job_id: str, index: int, **metrics) -> None:
    storage.add_trial(
        job_id, index, status="running", params={"i": index}, generator="sobol",
        gen_seconds=0.1, estimates={"flash_bytes": 9000, "ram_bytes": 4000, "macs": 7},
        feasible=True, pruning={},
    )  # fmt: skip
    storage.finish_trial(
        job_id, index, status="completed", metrics={"accuracy": 0.9, **metrics}, measured=True
    )


def test_the_keys_are_metric_keys() -> None:
    assert set(NEW_KEYS) <= set(METRIC_KEYS)
    assert set(TARGETS) == set(TARGET_METRICS)


def test_target_numbers_round_trip(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    _trial(storage, job.id, 0, **TARGETS, c_error=None)
    _trial(storage, job.id, 1)  # finished without them
    storage.set_pareto(job.id, [0, 1])
    measured = storage.get_trial(job.id, 0)
    assert {k: getattr(measured, k) for k in TARGETS} == TARGETS and measured.c_error is None
    bare = storage.get_trial(job.id, 1)
    assert all(getattr(bare, k) is None for k in NEW_KEYS)
    for trial, expected in ((measured, TARGETS), (bare, dict.fromkeys(TARGETS))):
        doc = json.loads(json.dumps(trial.to_json()))
        assert {k: doc[k] for k in NEW_KEYS} == {**expected, "c_error": None}
    # Every read path builds the same records (the page query positionally from Core rows).
    assert storage.list_trials(job.id) == [measured, bare]
    assert storage.trial_page(job.id, sort="index")[0] == [measured, bare]
    assert storage.front(job.id, sort="index")[1] == [measured, bare]


def test_c_error_without_c_numbers(storage: Storage) -> None:
    job = storage.create_job(dataset="digits", config={})
    tflm = {"tflm_flash_bytes": 14_400, "tflm_ram_bytes": 10_336}
    _trial(storage, job.id, 0, **tflm, c_error="arm-none-eabi-gcc not found")
    t = storage.get_trial(job.id, 0)
    assert (t.tflm_flash_bytes, t.tflm_ram_bytes) == (14_400, 10_336)
    assert t.c_error == "arm-none-eabi-gcc not found"
    assert (t.c_flash_bytes, t.c_ram_bytes, t.c_stack_bytes, t.instructions) == (None,) * 4
    # Keys left out keep the stored values; a key given as None clears its value.
    kept = storage.finish_trial(job.id, 0, status="completed", metrics={"accuracy": 0.8})
    assert kept.c_error == "arm-none-eabi-gcc not found" and kept.tflm_flash_bytes == 14_400
    cleared = storage.finish_trial(
        job.id, 0, status="completed", metrics={"c_error": None, "c_flash_bytes": 2048.0}
    )
    assert cleared.c_error is None and cleared.c_flash_bytes == 2048


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ({"c_error": 3}, "c_error must be a string"),
        ({"c_flash_bytes": "12 KB"}, "c_flash_bytes must be an integer"),
        ({"instructions": True}, "instructions must be an integer"),
        ({"c_stack_bytes": 1.5}, "c_stack_bytes must be an integer"),
    ],
)
def test_bad_values_are_refused(storage: Storage, metrics, message: str) -> None:
    job = storage.create_job(dataset="digits", config={})
    _trial(storage, job.id, 0)
    with pytest.raises(TypeError, match=message):
        storage.finish_trial(job.id, 0, status="completed", metrics=metrics)
    assert all(getattr(storage.get_trial(job.id, 0), k) is None for k in NEW_KEYS)


@pytest.mark.parametrize("key", TARGET_METRICS)
def test_target_numbers_sort_nulls_last(storage: Storage, key: str) -> None:
    job = storage.create_job(dataset="digits", config={})
    for index, value in enumerate([300, None, 100, 200]):
        _trial(storage, job.id, index, **({} if value is None else {key: value}))
    assert [t.index for t in storage.list_trials(job.id, sort=key)] == [2, 3, 0, 1]
    assert [t.index for t in storage.list_trials(job.id, sort=f"-{key}")] == [0, 3, 2, 1]
    page, count = storage.trial_page(job.id, sort=f"-{key}", limit=2, offset=1)
    assert [t.index for t in page] == [3, 2] and count == 4
