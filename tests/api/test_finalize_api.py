"""POST/GET /v1/jobs/{id}/finalize: a finalize job is queued like any job (the scheduler runs
it), each chosen trial's final status starts queued, bad choices are 4xx with a reason."""

from __future__ import annotations


def test_finalize_queues_a_job_for_the_best_front_trial(client, alice, alice_job, storage):
    r = client.post(f"/v1/jobs/{alice_job}/finalize", json={"epochs": 9}, headers=alice)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["strategy"] == "finalize"
    assert job["finalizes"] == alice_job and job["budget"]["epochs"] == 9
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    stored = storage.get_job(job["id"])
    assert stored.config["finalize"]["trials"] == [0]  # the most accurate front trial
    assert stored.config["train_limit"] is None  # the whole training split
    listed = client.get(f"/v1/jobs/{alice_job}/finalize", headers=alice).json()
    assert listed == [{"index": 0, "final": {"status": "queued", "job": job["id"], "epochs": 9}}]
    trial = client.get(f"/v1/jobs/{alice_job}/trials/0", headers=alice).json()
    assert trial["final"]["status"] == "queued"


def test_finalize_the_front_or_chosen_trials(client, alice, alice_job, storage):
    front = client.post(f"/v1/jobs/{alice_job}/finalize", json={"front": True}, headers=alice)
    assert front.status_code == 202, front.text
    assert storage.get_job(front.json()["id"]).config["finalize"]["trials"] == [0, 1]
    assert front.json()["budget"]["epochs"] == 4 * 6  # 4x the search's epochs by default
    chosen = client.post(f"/v1/jobs/{alice_job}/finalize", json={"trials": [2]}, headers=alice)
    assert chosen.status_code == 202, chosen.text


def test_finalize_refuses_what_cannot_be_finalized(client, alice, bob, alice_job):
    url = f"/v1/jobs/{alice_job}/finalize"
    r = client.post(url, json={"trials": [3]}, headers=alice)  # the infeasible one
    assert r.status_code == 422 and "not completed" in r.json()["detail"]
    r = client.post(url, json={"trials": [0], "front": True}, headers=alice)
    assert r.status_code == 422 and "two ways" in r.json()["detail"]
    r = client.post(url, json={"trials": [99]}, headers=alice)
    assert r.status_code == 404
    r = client.post(url, json={"epochs": 0}, headers=alice)
    assert r.status_code == 422
    r = client.post(url, json={}, headers=bob)  # another owner's job
    assert r.status_code == 404
    queued = client.post(url, json={}, headers=alice).json()["id"]
    r = client.post(f"/v1/jobs/{queued}/finalize", json={}, headers=alice)
    assert r.status_code == 422 and "itself a finalize job" in r.json()["detail"]


def test_artifact_downloads_prefer_the_final_model_and_can_ask_for_either(
    client, alice, alice_job, storage
):
    storage.set_final(
        alice_job, 0, {"status": "completed"}, artifacts={"onnx": b"final onnx bytes"}
    )
    base = f"/v1/jobs/{alice_job}/trials/0/artifacts"
    listing = client.get(base, headers=alice).json()
    onnx = [a for a in listing if a["kind"] == "onnx"]
    assert [a["final"] for a in onnx] == [False, True]
    assert {a["filename"] for a in onnx} == {"onnx.onnx", "final-onnx.onnx"}
    default = client.get(f"{base}/onnx", headers=alice)
    assert default.status_code == 200 and default.content == b"final onnx bytes"
    assert "final-onnx.onnx" in default.headers["Content-Disposition"]
    search = client.get(f"{base}/onnx?final=false", headers=alice)
    assert search.content == b"onnx-bytes-0"
    for a in onnx:  # the listed urls name their variant
        assert client.get(a["url"], headers=alice).status_code == 200
    missing = client.get(f"{base}/state_dict?final=true", headers=alice)
    assert missing.status_code == 404 and "final" in missing.json()["detail"]
