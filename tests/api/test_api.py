"""The REST API over real storage (SQLite and PostgreSQL): contracts, isolation, bad input.

Every response here is asserted to be below 500: the API answers bad input with 4xx."""

from __future__ import annotations

import copy
import csv
import hashlib
import io

import pytest
from api_helpers import JOB_BODY, MAX_TRIALS, seed_job

from sparsearch.vocabulary import STRATEGIES


def _body(**changes):
    """JOB_BODY with nested changes: _body(limits__flash_bytes=0)."""
    body = copy.deepcopy(JOB_BODY)
    for path, value in changes.items():
        node = body
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return body


# -- auth ---------------------------------------------------------------------------------------


def test_open_endpoints_need_no_token(client):
    assert client.get("/healthz").json() == {"database": "ok", "scheduler": "none"}
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic YTpi"},
        {"Authorization": "Bearer "},
    ],
)
def test_missing_or_bad_token_is_401_with_challenge(client, headers):
    r = client.get("/v1/jobs", headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert "token" in r.json()["detail"]


def test_revoked_token_is_401(client, storage):
    info, token = storage.create_token("carol")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    storage.revoke_token(info.id)
    assert client.get("/v1/jobs", headers=headers).status_code == 401


# -- jobs ---------------------------------------------------------------------------------------


def test_create_job_returns_201_location_and_the_job(client, alice):
    r = client.post("/v1/jobs", json=JOB_BODY, headers=alice)
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["owner"] == "alice"
    assert job["limits"] == {
        "flash_bytes": 24576,
        "ram_bytes": 6144,
        "macs": None,
        "ram_margin_bytes": 0,
        "instructions": None,
    }
    assert job["budget"] == {"trials": 4, "parallel": 2, "epochs": 4}
    assert job["progress"] == {
        "budget": 4,
        "trained": 0,
        "completed": 0,
        "running": 0,
        "failed": 0,
        "infeasible": 0,
        "uncharged": 0,
        "screened": 0,
        "over_limit": 0,
        "stopped": 0,
    }
    assert job["strategy"] == "bo"  # the default
    got = client.get(job["id"].join(["/v1/jobs/", ""]), headers=alice).json()
    assert got["id"] == job["id"] and got["created_at"] == job["created_at"]


def test_job_options_reach_the_stored_config(client, alice, storage):
    body = _body(
        target="tflm",
        flash_accounting="sparse",
        seed=7,
        pruning_methods=["none", "magnitude"],
        space={"max_blocks": 2, "channels": [4, 16]},
        limits__macs=500000,
    )
    r = client.post("/v1/jobs", json=body, headers=alice)
    assert r.status_code == 201, r.text
    cfg = storage.get_job(r.json()["id"]).config
    assert cfg["seed"] == 7 and cfg["flash_accounting"] == "sparse"
    assert cfg["limits"]["macs"] == 500000
    assert cfg["space"]["pruning_methods"] == ["none", "magnitude"]
    assert cfg["space"]["max_blocks"] == 2 and cfg["space"]["channels"] == [4, 16]


def test_job_progress_counts_trials(client, alice, alice_job):
    job = client.get(f"/v1/jobs/{alice_job}", headers=alice).json()
    assert job["status"] == "completed"
    assert job["progress"] == {
        "budget": 3,
        "trained": 3,
        "completed": 3,
        "running": 0,
        "failed": 0,
        "infeasible": 1,
        "uncharged": 0,
        "screened": 0,
        "over_limit": 0,
        "stopped": 0,
    }
    assert job["best_accuracy"] == 0.95 and job["hypervolume"] == 0.5


def test_progress_counts_charged_trials_and_screened_candidates(client, alice, storage):
    """The budget counts charged trials: those a graceful stop cut short are failed and shown
    as uncharged, not trained; a crash's lost trials are failed and trained."""
    r = client.post("/v1/jobs", json=_body(budget__trials=5), headers=alice)
    job = r.json()["id"]
    common = dict(
        params={"n_blocks": 1}, generator="random:design", gen_seconds=0.1,
        estimates={"flash_bytes": 1000, "ram_bytes": 1000}, feasible=True,
        pruning={"method": "none", "level": 0.0},
    )  # fmt: skip
    storage.add_trial(job, 0, status="running", **common)
    storage.finish_trial(job, 0, status="completed", metrics={"accuracy": 0.9})
    storage.add_trial(job, 1, status="running", **common)
    storage.add_trial(job, 2, status="running", **common)
    storage.fail_unfinished_trials(job, "interrupted", charged=False)  # a graceful stop
    storage.add_trial(job, 3, status="running", **common)
    storage.fail_unfinished_trials(job, "scheduler lost")  # a crash: charged
    storage.add_trial(job, 4, status="running", **common)
    storage.update_job_summary(job, hypervolume=0.1, best_accuracy=0.9, screened=42)
    progress = client.get(f"/v1/jobs/{job}", headers=alice).json()["progress"]
    assert progress == {
        "budget": 5,
        "trained": 2,
        "completed": 1,
        "running": 1,
        "failed": 1,
        "infeasible": 0,
        "uncharged": 2,
        "screened": 42,
        "over_limit": 0,
        "stopped": 0,
    }
    listed = client.get("/v1/jobs", headers=alice).json()["data"]
    assert listed[0]["progress"] == progress
    trials = client.get(f"/v1/jobs/{job}/trials", headers=alice).json()["data"]
    assert [t["charged"] for t in trials] == [True, False, False, True, True]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_strategy_is_stored_and_shown(client, alice, storage, strategy):
    r = client.post("/v1/jobs", json=_body(strategy=strategy), headers=alice)
    assert r.status_code == 201, r.text
    assert r.json()["strategy"] == strategy
    job = storage.get_job(r.json()["id"])
    assert job.config["strategy"] == strategy and job.to_json()["strategy"] == strategy
    assert client.get(f"/v1/jobs/{job.id}", headers=alice).json()["strategy"] == strategy


def test_an_unknown_strategy_is_422_listing_the_choices(client, alice, storage):
    r = client.post("/v1/jobs", json=_body(strategy="annealing"), headers=alice)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail.startswith("strategy:") and all(f"'{s}'" in detail for s in STRATEGIES)
    assert storage.count_jobs() == 0


def test_list_jobs_pages_filters_and_counts(client, alice, storage):
    for _ in range(3):
        assert client.post("/v1/jobs", json=JOB_BODY, headers=alice).status_code == 201
    seed_job(storage, "alice")
    page = client.get("/v1/jobs?limit=2", headers=alice).json()
    assert page["count"] == 4 and len(page["data"]) == 2
    rest = client.get("/v1/jobs?limit=2&offset=2", headers=alice).json()
    assert {j["id"] for j in page["data"]}.isdisjoint(j["id"] for j in rest["data"])
    queued = client.get("/v1/jobs?status=queued", headers=alice).json()
    assert queued["count"] == 3 and all(j["status"] == "queued" for j in queued["data"])
    newest_first = [j["created_at"] for j in client.get("/v1/jobs", headers=alice).json()["data"]]
    assert newest_first == sorted(newest_first, reverse=True)


def test_active_job_cap_per_owner_is_409(client, alice, bob):
    for _ in range(3):
        assert client.post("/v1/jobs", json=JOB_BODY, headers=alice).status_code == 201
    r = client.post("/v1/jobs", json=JOB_BODY, headers=alice)
    assert r.status_code == 409 and "active jobs" in r.json()["detail"]
    assert client.post("/v1/jobs", json=JOB_BODY, headers=bob).status_code == 201


def test_cancel_and_delete_state_machine(client, alice, alice_job, storage):
    job_id = client.post("/v1/jobs", json=JOB_BODY, headers=alice).json()["id"]
    r = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
    assert again.status_code == 409 and "already" in again.json()["detail"]
    assert client.post(f"/v1/jobs/{alice_job}/cancel", headers=alice).status_code == 409

    running = client.post("/v1/jobs", json=JOB_BODY, headers=alice).json()["id"]
    storage.set_job_status(running, "running")
    r = client.delete(f"/v1/jobs/{running}", headers=alice)
    assert r.status_code == 409 and "cancel" in (r.json()["detail"] + (r.json().get("hint") or ""))
    r = client.post(f"/v1/jobs/{running}/cancel", headers=alice)
    assert r.status_code == 200 and r.json()["cancel_requested"] is True

    artifact_dir = storage.artifact_dir / alice_job
    assert artifact_dir.exists()
    assert client.delete(f"/v1/jobs/{alice_job}", headers=alice).status_code == 204
    assert client.get(f"/v1/jobs/{alice_job}", headers=alice).status_code == 404
    assert not artifact_dir.exists()


# -- trials, front, best ----------------------------------------------------------------------


def test_trials_page_sort_and_filter(client, alice, alice_job):
    page = client.get(f"/v1/jobs/{alice_job}/trials", headers=alice).json()
    assert page["count"] == 4 and [t["index"] for t in page["data"]] == [0, 1, 2, 3]
    by_acc = client.get(f"/v1/jobs/{alice_job}/trials?sort=-accuracy", headers=alice).json()
    assert [t["index"] for t in by_acc["data"]] == [0, 1, 2, 3]  # infeasible (no accuracy) last
    by_flash = client.get(f"/v1/jobs/{alice_job}/trials?sort=flash_bytes", headers=alice).json()
    assert [t["index"] for t in by_flash["data"]] == [1, 2, 0, 3]
    infeasible = client.get(f"/v1/jobs/{alice_job}/trials?status=infeasible", headers=alice)
    assert infeasible.json()["count"] == 1
    assert infeasible.json()["data"][0]["error"] == "over a limit by estimate"
    one = client.get(f"/v1/jobs/{alice_job}/trials/2", headers=alice).json()
    for key in (
        "index",
        "status",
        "params",
        "accuracy",
        "flash_bytes",
        "ram_bytes",
        "activation_bytes",
        "macs",
        "feasible",
        "pruning",
        "generator",
        "gen_seconds",
        "train_seconds",
        "test_accuracy",
    ):
        assert key in one
    assert one["accuracy"] == 0.85
    assert client.get(f"/v1/jobs/{alice_job}/trials/99", headers=alice).status_code == 404


def test_pareto_json_and_csv(client, alice, alice_job):
    front = client.get(f"/v1/jobs/{alice_job}/pareto", headers=alice).json()
    assert front["count"] == 2 and [t["index"] for t in front["data"]] == [0, 1]
    assert all(t["pareto"] and t["test_accuracy"] is not None for t in front["data"])
    r = client.get(f"/v1/jobs/{alice_job}/pareto?format=csv", headers=alice)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [int(row["index"]) for row in rows] == [0, 1]
    assert rows[1]["flash_bytes"] == "9000" and rows[1]["pruning_method"] == "none"


def test_best_within_tighter_limits(client, alice, alice_job):
    best = client.get(f"/v1/jobs/{alice_job}/best", headers=alice).json()
    assert best["index"] == 0
    tighter = client.get(f"/v1/jobs/{alice_job}/best?max_flash=10000", headers=alice).json()
    assert tighter["index"] == 1
    r = client.get(f"/v1/jobs/{alice_job}/best?max_flash=5000&max_ram=2000", headers=alice)
    assert r.status_code == 404
    assert "no front trial fits" in r.json()["detail"] and "9000 B flash" in r.json()["detail"]


# -- artifacts ----------------------------------------------------------------------------------


def test_artifact_list_and_download(client, alice, alice_job, storage):
    listing = client.get(f"/v1/jobs/{alice_job}/trials/0/artifacts", headers=alice).json()
    assert {a["kind"] for a in listing} == {"state_dict", "onnx"}
    for a in listing:
        r = client.get(a["url"], headers=alice)
        assert r.status_code == 200
        assert len(r.content) == a["size_bytes"]
        assert hashlib.sha256(r.content).hexdigest() == a["sha256"] == r.headers["X-Content-SHA256"]
        assert f"job-{alice_job}-trial-0-" in r.headers["Content-Disposition"]
    r = client.get(f"/v1/jobs/{alice_job}/trials/0/artifacts/onnx", headers=alice)
    assert r.headers["content-type"] == "application/onnx" and r.content == b"onnx-bytes-0"


@pytest.mark.parametrize(
    "kind", ["tflite", "weights", "..%2F..%2Fx", "%2e%2e%2fx", "state_dict.pt"]
)
def test_unknown_or_traversing_artifact_kinds_are_404(client, alice, alice_job, kind):
    r = client.get(f"/v1/jobs/{alice_job}/trials/0/artifacts/{kind}", headers=alice)
    assert r.status_code == 404


def test_traversal_paths_never_reach_files(client, alice, alice_job):
    for path in (
        f"/v1/jobs/{alice_job}/trials/0/artifacts/../../x",
        f"/v1/jobs/{alice_job}/trials/0/artifacts/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/jobs/..%2F..%2Fetc/trials/0/artifacts/onnx",
    ):
        r = client.get(path, headers=alice)
        assert r.status_code in (404, 422) and b"root:" not in r.content


# -- isolation ----------------------------------------------------------------------------------


def test_other_owner_gets_404_everywhere(client, alice, bob, alice_job):
    base = f"/v1/jobs/{alice_job}"
    for method, path in [
        ("GET", base),
        ("GET", f"{base}/trials"),
        ("GET", f"{base}/trials/0"),
        ("GET", f"{base}/pareto"),
        ("GET", f"{base}/pareto?format=csv"),
        ("GET", f"{base}/best"),
        ("GET", f"{base}/trials/0/artifacts"),
        ("GET", f"{base}/trials/0/artifacts/onnx"),
        ("POST", f"{base}/cancel"),
        ("DELETE", base),
    ]:
        r = client.request(method, path, headers=bob)
        assert r.status_code == 404, (method, path, r.status_code)
        assert alice_job in r.json()["detail"] or "not found" in r.json()["detail"].lower()
    assert client.get("/v1/jobs", headers=bob).json() == {"data": [], "count": 0}
    assert client.get(base, headers=alice).status_code == 200  # untouched by bob's DELETE


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_body(limits__flash_bytes=-1), "limits.flash_bytes"),
        (_body(limits__flash_bytes=0), "limits.flash_bytes"),
        (_body(limits__ram_bytes=2**40), "limits.ram_bytes"),
        (_body(limits__flash_bytes=1.5), "limits.flash_bytes"),
        (_body(limits__flash_bytes="24576"), "limits.flash_bytes"),
        (_body(budget__trials=0), "budget.trials"),
        (_body(budget__trials=MAX_TRIALS + 1), "maximum"),
        (_body(budget__parallel=10**6), "budget.parallel"),
        (_body(dataset="mnist"), "'digits' or 'fashion-mnist'"),
        (_body(dataset="npz:/etc/passwd"), "'digits' or 'fashion-mnist'"),
        (_body(dataset="digits\x00"), "dataset"),
        (_body(seed=-1), "seed"),
        (_body(flash_accounting="weird"), "flash_accounting"),
        (_body(pruning_methods=["magnitude"]), "dense flash"),
        (_body(space={"max_blocks": 9}), "space.max_blocks"),
        (_body(space={"channels": [64, 2]}), "channel"),
        (_body(space={"lr": [0.1, 0.01]}), "lr bounds must satisfy 0 < low < high"),
        (_body(space={"lr": [0.01, 0.01]}), "lr bounds"),
        (_body(space={"kernels": [3, 3]}), "kernels repeats a value"),
        (_body(space={"head_units": [16, 16]}), "head_units repeats"),
        (_body(space={"input_scales": [0.5, 0.5]}), "input_scales repeats"),
        ({**JOB_BODY, "surprise": 1}, "surprise"),
        (_body(limits={"flash_bytes": 1, "ram_bytes": 1, "extra": 2}), "extra"),
        ({"dataset": "digits"}, "limits"),
    ],
)
def test_bad_job_bodies_are_422_with_a_readable_message(client, alice, storage, body, needle):
    r = client.post("/v1/jobs", json=body, headers=alice)
    assert r.status_code == 422, r.text
    assert needle in r.json()["detail"]
    assert storage.count_jobs() == 0


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[]", b"null", b'{"dataset": "digits",}'])
def test_malformed_json_is_422(client, alice, raw):
    r = client.post("/v1/jobs", content=raw, headers={**alice, "Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/v1/jobs/doesnotexist",
        "/v1/jobs/doesnotexist/trials",
        "/v1/jobs/doesnotexist/pareto",
        "/v1/jobs/doesnotexist/best",
        "/v1/jobs/doesnotexist/trials/0/artifacts",
    ],
)
def test_unknown_job_is_404(client, alice, path):
    r = client.get(path, headers=alice)
    assert r.status_code == 404 and "doesnotexist" in r.json()["detail"]


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=1001", "offset=-1", "sort=weird", "status=done", "limit=abc"],
)
def test_bad_query_parameters_are_422(client, alice, alice_job, query):
    r = client.get(f"/v1/jobs/{alice_job}/trials?{query}", headers=alice)
    assert r.status_code == 422
    assert client.get(f"/v1/jobs?{query}", headers=alice).status_code == 422
