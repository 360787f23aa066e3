"""Both deployment targets' numbers in the API's trial JSON (SQLite and PostgreSQL): every trial
document (pages, one trial, the front, /best) carries ``vocabulary.TARGET_METRICS`` and
``c_error``, null where the trial was not measured; the schema documents them."""

from __future__ import annotations

from sparsearch.jobconfig import JobConfig
from sparsearch.vocabulary import TARGET_METRICS

NEW_KEYS = (*TARGET_METRICS, "c_error")
#: Trial 0: both targets measured. Trial 1: TFLM only, the C target could not be built.
#: Trial 2: finished without them (as a worker from before them would).
MEASURED = {
    "tflm_flash_bytes": 14_400,
    "tflm_ram_bytes": 10_336,
    "c_flash_bytes": 12_288,
    "c_ram_bytes": 6_144,
    "c_stack_bytes": 512,
    "instructions": 5_000_000_000,
    "c_error": None,
}
TFLM_ONLY = {
    **dict.fromkeys(NEW_KEYS),
    "tflm_flash_bytes": 9_000,
    "tflm_ram_bytes": 3_000,
    "c_error": "arm-none-eabi-gcc not found",
}
NONE = dict.fromkeys(NEW_KEYS)
EXPECTED = [MEASURED, TFLM_ONLY, NONE]


def _job(storage, owner: str) -> str:
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner)
    for i, (acc, targets) in enumerate([(0.95, MEASURED), (0.9, TFLM_ONLY), (0.8, {})]):
        storage.add_trial(
            job.id, i, status="running", params={"n_blocks": 1}, generator="Sobol",
            gen_seconds=0.1, estimates={"flash_bytes": 20000 - 5000 * i, "ram_bytes": 5000},
            feasible=True, pruning={"method": "none", "level": 0.0},
        )  # fmt: skip
        metrics = {"accuracy": acc, **{k: v for k, v in targets.items() if v is not None}}
        storage.finish_trial(job.id, i, status="completed", metrics=metrics, measured=True)
    storage.set_pareto(job.id, [0, 1, 2])
    storage.set_job_status(job.id, "running")
    storage.set_job_status(job.id, "completed")
    return job.id


def _targets(trial: dict) -> dict:
    return {k: trial[k] for k in NEW_KEYS}


def test_every_trial_document_carries_the_targets(client, alice, storage):
    job_id = _job(storage, "alice")
    base = f"/v1/jobs/{job_id}"
    page = client.get(f"{base}/trials", headers=alice).json()["data"]
    assert [_targets(t) for t in page] == EXPECTED
    for index, expected in enumerate(EXPECTED):
        one = client.get(f"{base}/trials/{index}", headers=alice).json()
        assert _targets(one) == expected
    front = client.get(f"{base}/pareto?sort=index", headers=alice).json()["data"]
    assert [_targets(t) for t in front] == EXPECTED
    best = client.get(f"{base}/best", headers=alice).json()
    assert best["index"] == 0 and _targets(best) == MEASURED
    tight = client.get(f"{base}/best?max_flash=10000", headers=alice).json()
    assert tight["index"] == 2 and _targets(tight) == NONE


def test_trials_sort_by_a_target_number(client, alice, storage):
    job_id = _job(storage, "alice")
    r = client.get(f"/v1/jobs/{job_id}/trials?sort=-tflm_flash_bytes", headers=alice)
    assert [t["index"] for t in r.json()["data"]] == [0, 1, 2]  # nulls last
    r = client.get(f"/v1/jobs/{job_id}/trials?sort=c_flash_bytes", headers=alice)
    assert [t["index"] for t in r.json()["data"]] == [0, 1, 2]


def test_the_schema_documents_the_targets(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("TrialPublic", "FrontTrialPublic"):
        properties = schemas[name]["properties"]
        for key in NEW_KEYS:
            assert properties[key].get("description"), (name, key)
        assert {"type": "integer"} in properties["c_flash_bytes"]["anyOf"]
        assert {"type": "string"} in properties["c_error"]["anyOf"]
