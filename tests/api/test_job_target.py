"""A job's deployment target through the API (SQLite and PostgreSQL): ``JobCreate.target``
reaches the stored config and every job document; an unknown target is pydantic's 422; sparse
accounting under ``c`` is the ConfigError 422; a finalize job takes its source job's target
unless the request names another."""

from __future__ import annotations

import pytest
from api_helpers import JOB_BODY

from sparsearch.jobconfig import JobConfig
from sparsearch.vocabulary import DEFAULT_TARGET, TARGETS

#: A target other than the default: a test that passes it fails if the option is dropped.
OTHER = next(t for t in TARGETS if t != DEFAULT_TARGET)


def _body(**changes):
    return {**JOB_BODY, **changes}


@pytest.mark.parametrize("target", TARGETS)
def test_the_target_is_stored_and_in_every_job_document(client, alice, storage, target):
    r = client.post("/v1/jobs", json=_body(target=target), headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["target"] == target
    job = storage.get_job(r.json()["id"])
    assert job.config["target"] == target and job.target == target
    assert client.get(f"/v1/jobs/{job.id}", headers=alice).json()["target"] == target
    (listed,) = client.get("/v1/jobs", headers=alice).json()["data"]
    assert listed["target"] == target


def test_without_a_target_the_job_gets_the_default(client, alice, storage):
    r = client.post("/v1/jobs", json=JOB_BODY, headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["target"] == DEFAULT_TARGET
    assert storage.get_job(r.json()["id"]).config["target"] == DEFAULT_TARGET


def test_a_job_stored_before_targets_shows_tflm(client, alice, storage):
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    legacy = {k: v for k, v in cfg.to_dict().items() if k != "target"}
    job = storage.create_job(dataset="digits", config=legacy, owner="alice")
    assert client.get(f"/v1/jobs/{job.id}", headers=alice).json()["target"] == "tflm"


def test_an_unknown_target_is_422_listing_the_choices(client, alice, storage):
    r = client.post("/v1/jobs", json=_body(target="esp32"), headers=alice)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["detail"].startswith("target:")
    assert all(f"'{t}'" in problem["detail"] for t in TARGETS)
    assert [e["loc"] for e in problem["errors"]] == [["body", "target"]]
    assert storage.count_jobs() == 0


def test_sparse_accounting_under_c_is_refused_with_a_hint(client, alice, storage):
    r = client.post("/v1/jobs", json=_body(target="c", flash_accounting="sparse"), headers=alice)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "sparse" in problem["detail"] and "C target" in problem["detail"]
    assert "--target tflm" in problem["hint"]
    assert storage.count_jobs() == 0
    ok = client.post(
        "/v1/jobs", json=_body(target="tflm", flash_accounting="sparse"), headers=alice
    )
    assert ok.status_code == 201, ok.text


def test_the_schema_lists_the_targets_and_the_default(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    target = schema["JobCreate"]["properties"]["target"]
    assert target["enum"] == list(TARGETS) and target["default"] == DEFAULT_TARGET
    assert "Cortex-M4" in target["description"]
    assert "target" in schema["JobPublic"]["required"]


# -- finalize ----------------------------------------------------------------------------------


def _searched(storage, **config) -> str:
    """A job of alice's with one completed trial (no artifacts: nothing here trains)."""
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3, **config)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner="alice")
    storage.add_trial(
        job.id,
        0,
        status="running",
        params={"n_blocks": 1},
        generator="random:sobol",
        gen_seconds=0.1,
        estimates={"flash_bytes": 1000, "ram_bytes": 1000},
        feasible=True,
        pruning={"method": "none", "level": 0.0},
    )
    storage.finish_trial(job.id, 0, status="completed", metrics={"accuracy": 0.9})
    return job.id


def test_finalize_keeps_the_source_jobs_target_unless_told(client, alice, storage):
    source = _searched(storage, target=OTHER)
    url = f"/v1/jobs/{source}/finalize"
    kept = client.post(url, json={"trials": [0]}, headers=alice)
    assert kept.status_code == 202, kept.text
    assert kept.json()["target"] == OTHER
    assert storage.get_job(kept.json()["id"]).config["target"] == OTHER
    client.post(f"/v1/jobs/{kept.json()['id']}/cancel", headers=alice)  # frees trial 0
    told = client.post(url, json={"trials": [0], "target": DEFAULT_TARGET}, headers=alice)
    assert told.status_code == 202, told.text
    assert told.json()["target"] == DEFAULT_TARGET
    assert storage.get_job(told.json()["id"]).config["target"] == DEFAULT_TARGET


def test_finalize_refuses_an_unknown_target_and_c_under_sparse(client, alice, storage):
    source = _searched(storage, target="tflm", flash_accounting="sparse")
    url = f"/v1/jobs/{source}/finalize"
    r = client.post(url, json={"trials": [0], "target": "esp32"}, headers=alice)
    assert r.status_code == 422 and r.json()["detail"].startswith("target:"), r.text
    r = client.post(url, json={"trials": [0], "target": "c"}, headers=alice)
    assert r.status_code == 422, r.text
    assert "C target" in r.json()["detail"] and "--target tflm" in r.json()["hint"]
    assert storage.count_jobs() == 1  # the source only
