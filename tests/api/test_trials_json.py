"""The trial pages' JSON (written by orjson straight from the records) is, field for field,
the trial JSON of the contracts: ``TrialInfo.to_json`` (front pages add the job's
``flash_accounting``, each trial's ``accounted_flash_bytes`` and the runtime's own flash)."""

from __future__ import annotations

import json

import pytest

from sparsearch.vocabulary import TFLM_RUNTIME_FLASH


@pytest.mark.parametrize(
    "path, kw",
    [
        ("trials", {}),
        ("trials?sort=-accuracy&limit=2&offset=1", {"sort": "-accuracy", "limit": 2, "offset": 1}),
        ("pareto", {"pareto": True, "sort": "-accuracy"}),
    ],
)
def test_pages_are_the_records_to_json(client, alice, alice_job, storage, path, kw):
    # A trial with every optional field set, so no field is compared as a default.
    storage.add_trial(
        alice_job, 4, status="running", params={"n_blocks": 2, "lr": 0.01}, generator="MBM",
        gen_seconds=1.25, estimates={"flash_bytes": 7000, "ram_bytes": 900, "macs": 12345},
        feasible=True, pruning={"method": "magnitude", "level": 0.5},
    )  # fmt: skip
    targets = {"tflm_flash_bytes": 7100, "tflm_ram_bytes": 950, "c_flash_bytes": 6200,
               "c_ram_bytes": 800, "c_stack_bytes": 96, "instructions": 5_000_000_000,
               "c_error": "no Cortex-M4 run"}  # fmt: skip
    storage.finish_trial(
        alice_job, 4, status="failed", metrics=targets, error="boom", train_seconds=3.5,
        worker_pid=4242, worker_host="node-7", effective_spec={"blocks": [{"channels": 8}]},
        worker_node="9c" * 28,
    )  # fmt: skip
    r = client.get(f"/v1/jobs/{alice_job}/{path}", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = json.loads(r.content)  # the standard parser: what any client sees
    page, count = storage.trial_page(alice_job, **kw)
    if path == "pareto":  # front trials add the job's accounting and the flash it counts
        runtime = TFLM_RUNTIME_FLASH.to_json()
        expected = [{**t.to_json(), "flash_accounting": "dense",
                     "accounted_flash_bytes": t.flash_bytes, "runtime_flash": runtime}
                    for t in page]  # fmt: skip
    else:
        expected = [t.to_json() for t in page]
    assert body == {"data": expected, "count": count}
    assert body["data"], "an empty page compares nothing"
