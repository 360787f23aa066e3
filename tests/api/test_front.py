"""The front under both flash accountings (SQLite and PostgreSQL): ``/best?max_flash=`` and the
pareto listings count the job's *accounted* flash (``nnz_flash_bytes`` under sparse) while
``flash_bytes`` stays the dense size, and the CSV holds the whole front, not one page."""

from __future__ import annotations

import csv
import io

import pytest

from sparsearch.client import LocalBackend, RemoteBackend
from sparsearch.jobconfig import JobConfig


def _front_job(storage, owner: str, rows, *, accounting: str = "dense") -> str:
    """A completed job whose trials ``rows`` = (accuracy, dense flash, nnz flash, RAM) are all
    on the front."""
    cfg = JobConfig.create(
        dataset="digits",
        flash_bytes=24576,
        ram_bytes=6144,
        trials=max(len(rows), 1),
        flash_accounting=accounting,
        target="tflm",  # sparse accounting is a TFLM notion
    )
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner)
    for i, (acc, flash, nnz, ram) in enumerate(rows):
        est = {"flash_bytes": flash, "nnz_flash_bytes": nnz, "ram_bytes": ram, "macs": 1000}
        storage.add_trial(
            job.id, i, status="running", params={"n_blocks": 1}, generator="Sobol",
            gen_seconds=0.1, estimates=est, feasible=True,
            pruning={"method": "magnitude", "level": 0.5},
        )  # fmt: skip
        storage.finish_trial(job.id, i, status="completed", metrics={"accuracy": acc})
    storage.set_pareto(job.id, range(len(rows)))
    storage.set_job_status(job.id, "running")
    storage.set_job_status(job.id, "completed")
    return job.id


# Accuracy, dense flash, non-zero flash, RAM. Trial 0 is the most accurate: its non-zero
# weights fit 10,000 B, its dense flatbuffer does not.
ROWS = [(0.95, 20000, 8000, 5000), (0.90, 9000, 4500, 3000)]


@pytest.mark.parametrize(("accounting", "expected"), [("sparse", 0), ("dense", 1)])
def test_best_max_flash_counts_the_jobs_accounted_flash(
    client, alice, storage, accounting, expected
):
    job_id = _front_job(storage, "alice", ROWS, accounting=accounting)
    r = client.get(f"/v1/jobs/{job_id}/best?max_flash=10000", headers=alice)
    assert r.status_code == 200, r.text
    best = r.json()
    assert best["index"] == expected and best["flash_accounting"] == accounting
    assert best["flash_bytes"] == ROWS[expected][1]  # always the dense size
    assert best["accounted_flash_bytes"] == ROWS[expected][1 if accounting == "dense" else 2]
    got = storage.best_front_trial(job_id, owner="alice", max_flash=10000)
    assert got[0] == accounting and got[1] is not None and got[1].index == expected


def test_best_under_sparse_says_what_the_smallest_need(client, alice, storage):
    job_id = _front_job(storage, "alice", ROWS, accounting="sparse")
    r = client.get(f"/v1/jobs/{job_id}/best?max_flash=4000", headers=alice)
    assert r.status_code == 404
    detail = r.json()["detail"]
    assert "4500 B flash" in detail and "sparse" in detail  # the smallest non-zero flash
    r = client.get(f"/v1/jobs/{job_id}/best?max_flash=4500&max_ram=3000", headers=alice)
    assert r.status_code == 200 and r.json()["index"] == 1


def test_best_of_an_empty_front_is_404(client, alice, storage):
    job_id = _front_job(storage, "alice", [], accounting="sparse")
    r = client.get(f"/v1/jobs/{job_id}/best?max_flash=4000", headers=alice)
    assert r.status_code == 404 and "no trial on its front" in r.json()["detail"]


def test_pareto_listings_carry_the_accounted_flash(client, alice, storage):
    job_id = _front_job(storage, "alice", ROWS, accounting="sparse")
    page = client.get(f"/v1/jobs/{job_id}/pareto", headers=alice).json()
    assert [(t["index"], t["flash_bytes"], t["accounted_flash_bytes"]) for t in page["data"]] == [
        (0, 20000, 8000),
        (1, 9000, 4500),
    ]
    assert {t["flash_accounting"] for t in page["data"]} == {"sparse"}
    rows = list(
        csv.DictReader(io.StringIO(client.get(f"/v1/jobs/{job_id}/pareto?format=csv",
                                              headers=alice).text))
    )  # fmt: skip
    assert [
        (r["flash_bytes"], r["flash_accounting"], r["accounted_flash_bytes"]) for r in rows
    ] == [
        ("20000", "sparse", "8000"),
        ("9000", "sparse", "4500"),
    ]


def test_pareto_csv_is_the_whole_front_json_stays_paged(client, alice, storage):
    n = 60  # more than a JSON page (50)
    rows = [(0.5 + i / 1000, 1000 + i, 500 + i, 100 + i) for i in range(n)]
    job_id = _front_job(storage, "alice", rows)
    page = client.get(f"/v1/jobs/{job_id}/pareto", headers=alice).json()
    assert page["count"] == n and len(page["data"]) == 50
    r = client.get(f"/v1/jobs/{job_id}/pareto?format=csv", headers=alice)
    assert r.status_code == 200
    indices = [int(row["index"]) for row in csv.DictReader(io.StringIO(r.text))]
    assert indices == list(range(n - 1, -1, -1))  # every trial, most accurate first
    # An explicit page is still a page, in either format.
    r = client.get(f"/v1/jobs/{job_id}/pareto?format=csv&limit=5&offset=55", headers=alice)
    assert [int(row["index"]) for row in csv.DictReader(io.StringIO(r.text))] == [4, 3, 2, 1, 0]
    r = client.get(f"/v1/jobs/{job_id}/pareto?format=csv&offset=58", headers=alice)
    assert [int(row["index"]) for row in csv.DictReader(io.StringIO(r.text))] == [1, 0]


def test_both_backends_answer_the_same_front(client, alice, storage):
    job_id = _front_job(storage, "alice", ROWS, accounting="sparse")
    local = LocalBackend(storage)
    remote = RemoteBackend("http://testserver", None)
    remote._http = client  # the TestClient is an httpx.Client on the app
    client.headers.update(alice)
    try:
        for source in (local, remote):
            front = source.pareto(job_id)
            assert [(t["index"], t["accounted_flash_bytes"]) for t in front] == [
                (0, 8000),
                (1, 4500),
            ]
            assert {t["flash_accounting"] for t in front} == {"sparse"}
            assert source.best(job_id)["index"] == 0
            one = source.trial(job_id, 1)  # what `sparsearch prune JOB:1` reads
            assert (one["index"], one["status"]) == (1, "completed") and "effective_spec" in one
        dates = ("created_at", "finished_at")  # ISO 8601 both, spelled +00:00 or Z
        same = [
            {k: v for k, v in b.trial(job_id, 0).items() if k not in dates} for b in (local, remote)
        ]
        assert same[0] == same[1]
        assert [t["index"] for t in local.pareto(job_id)] == [
            t["index"] for t in remote.pareto(job_id)
        ]
    finally:
        for key in alice:
            client.headers.pop(key, None)
