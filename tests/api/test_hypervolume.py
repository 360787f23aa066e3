"""``GET /v1/jobs/{id}/hypervolume`` (SQLite and PostgreSQL): the job's hypervolume after each
refresh of its front, at its trained count as ``progress.trained`` counts it; owner-scoped."""

from __future__ import annotations

import pytest

from sparsearch.jobconfig import JobConfig
from sparsearch.search.pareto import refresh_front

CFG = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=6)


def _add(storage, job_id: str, index: int, status: str, acc: float | None = None) -> None:
    est = {"flash_bytes": 9000 + 1000 * index, "ram_bytes": 3000 + 500 * index, "macs": 1000}
    storage.add_trial(
        job_id, index, status="running", params={"n_blocks": 1}, generator="Sobol",
        gen_seconds=0.1, estimates=est, feasible=True, pruning={"method": "none", "level": 0.0},
    )  # fmt: skip
    if status != "running":
        metrics = {"accuracy": acc} if acc is not None else {}
        storage.finish_trial(job_id, index, status=status, metrics=metrics)


def test_the_trace_in_order_with_its_count(client, alice, storage):
    job = storage.create_job(dataset="digits", config=CFG.to_dict(), owner="alice").id
    r = client.get(f"/v1/jobs/{job}/hypervolume", headers=alice)
    assert r.status_code == 200 and r.json() == {"data": [], "count": 0}
    for trained, hv, best in [(0, 0.0, None), (1, 0.25, 0.8), (2, 0.5, 0.9), (2, 0.625, 0.92)]:
        storage.update_job_summary(job, hypervolume=hv, best_accuracy=best, trained=trained)
    r = client.get(f"/v1/jobs/{job}/hypervolume", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "data": [
            {"trained": 0, "hypervolume": 0.0, "best_accuracy": None},
            {"trained": 1, "hypervolume": 0.25, "best_accuracy": 0.8},
            {"trained": 2, "hypervolume": 0.625, "best_accuracy": 0.92},
        ],
        "count": 3,
    }


def test_another_owners_or_a_missing_job_is_404(client, alice, bob, storage):
    job = storage.create_job(dataset="digits", config=CFG.to_dict(), owner="alice").id
    storage.update_job_summary(job, hypervolume=0.5, best_accuracy=0.9, trained=1)
    r = client.get(f"/v1/jobs/{job}/hypervolume", headers=bob)
    assert r.status_code == 404 and job in r.json()["detail"]
    r = client.get("/v1/jobs/doesnotexist/hypervolume", headers=alice)
    assert r.status_code == 404 and "doesnotexist" in r.json()["detail"]
    assert client.get(f"/v1/jobs/{job}/hypervolume").status_code == 401
    assert client.get(f"/v1/jobs/{job}/hypervolume", headers=alice).json()["count"] == 1


def test_documented_in_the_openapi_schema(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}/hypervolume"]["get"]
    assert "trained" in operation["description"] and "replaces" in operation["description"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("Page_HypervolumePoint_")


def test_refresh_front_traces_at_progress_trained(client, alice, storage):
    """Trials of every kind; the trace's count is what the job's ``progress.trained`` says
    (charged completed + failed: not the uncharged, infeasible or running ones)."""
    job = storage.create_job(dataset="digits", config=CFG.to_dict(), owner="alice").id
    _add(storage, job, 0, "completed", 0.9)
    _add(storage, job, 1, "completed", 0.95)
    _add(storage, job, 2, "failed")
    _add(storage, job, 3, "running")
    storage.fail_unfinished_trials(job, "stopped", charged=False)  # 3: failed, not charged
    storage.add_trial(
        job, 4, status="infeasible", params={}, generator="Sobol", gen_seconds=0.1,
        estimates={"flash_bytes": 99999, "ram_bytes": 9999}, feasible=False,
        pruning={"method": "none", "level": 0.0},
    )  # fmt: skip
    _add(storage, job, 5, "running")
    hv, best = refresh_front(storage, job, CFG, num_classes=10)
    refresh_front(storage, job, CFG, num_classes=10)  # a resume refreshes at the same count
    progress = client.get(f"/v1/jobs/{job}", headers=alice).json()["progress"]
    assert progress["trained"] == 3
    page = client.get(f"/v1/jobs/{job}/hypervolume", headers=alice).json()
    assert page == {
        "data": [{"trained": 3, "hypervolume": pytest.approx(hv), "best_accuracy": best}],
        "count": 1,
    }
    assert 0 < hv < 1 and best == 0.95
    storage.finish_trial(job, 5, status="completed", metrics={"accuracy": 0.97})
    hv2, _ = refresh_front(storage, job, CFG, num_classes=10)
    page = client.get(f"/v1/jobs/{job}/hypervolume", headers=alice).json()
    assert [(p["trained"], p["best_accuracy"]) for p in page["data"]] == [(3, 0.95), (4, 0.97)]
    assert page["data"][1]["hypervolume"] == pytest.approx(hv2) and hv2 > hv
