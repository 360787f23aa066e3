"""The optional instructions limit through the API (SQLite and PostgreSQL): ``limits.
instructions`` reaches the stored config and every job document (null where none, and for jobs
stored before it existed); a bad value is pydantic's 422; one under target ``tflm`` is the
ConfigError 422 with its hint."""

from __future__ import annotations

import pytest
from api_helpers import JOB_BODY

from sparsearch.jobconfig import MAX_INSTRUCTIONS, JobConfig


def _body(instructions, target="c"):
    return {
        **JOB_BODY,
        "target": target,
        "limits": {**JOB_BODY["limits"], "instructions": instructions},
    }


def test_an_instructions_limit_is_stored_and_in_every_job_document(client, alice, storage):
    r = client.post("/v1/jobs", json=_body(400_000), headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["limits"]["instructions"] == 400_000
    job = storage.get_job(r.json()["id"])
    assert job.config["limits"]["instructions"] == 400_000
    assert JobConfig.from_dict(job.config).limits.instructions == 400_000
    got = client.get(f"/v1/jobs/{job.id}", headers=alice).json()
    assert got["limits"]["instructions"] == 400_000
    (listed,) = client.get("/v1/jobs", headers=alice).json()["data"]
    assert listed["limits"]["instructions"] == 400_000


def test_without_one_the_limit_is_null_even_for_jobs_stored_before_it(client, alice, storage):
    r = client.post("/v1/jobs", json=JOB_BODY, headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["limits"]["instructions"] is None
    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    legacy = cfg.to_dict()
    del legacy["limits"]["instructions"]
    old = storage.create_job(dataset="digits", config=legacy, owner="alice")
    limits = client.get(f"/v1/jobs/{old.id}", headers=alice).json()["limits"]
    assert limits["instructions"] is None and limits["flash_bytes"] == 24576


def test_an_instructions_limit_under_tflm_is_422_with_a_hint(client, alice, storage):
    r = client.post("/v1/jobs", json=_body(400_000, target="tflm"), headers=alice)
    assert r.status_code == 422, r.text
    problem = r.json()
    assert "instructions are measured for the C target" in problem["detail"]
    assert "--target c" in problem["hint"]
    assert storage.count_jobs() == 0


@pytest.mark.parametrize("bad", [0, -1, MAX_INSTRUCTIONS + 1, 1.5, "400000", True])
def test_a_bad_instructions_limit_is_422_at_its_field(client, alice, storage, bad):
    r = client.post("/v1/jobs", json=_body(bad), headers=alice)
    assert r.status_code == 422, r.text
    locs = [e["loc"] for e in r.json()["errors"]]
    assert all(loc[:3] == ["body", "limits", "instructions"] for loc in locs), locs
    assert storage.count_jobs() == 0


def test_the_schema_bounds_the_instructions_limit(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    prop = schema["LimitsIn"]["properties"]["instructions"]
    (integer,) = [s for s in prop["anyOf"] if s.get("type") == "integer"]
    assert integer["minimum"] == 1 and integer["maximum"] == MAX_INSTRUCTIONS
    assert "Cortex-M4 instructions per inference" in prop["description"]
    assert "instructions" not in schema["LimitsIn"].get("required", [])
