"""The service end to end: a real `sparsearch serve` (API + scheduler child) on a free loopback
port, a token from the CLI, a job submitted over HTTP and run by the scheduler on real Ray, the
front read back, an artifact downloaded, loaded with torch and scored to the stored accuracy.
The CLI client (submit / status --watch / pareto / pull with --server) is driven the same way."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(*args: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [SPARSEARCH, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def _most_accurate(front: list[dict]) -> dict:
    """The trial `/best` and `pull` pick: highest int8 accuracy (float where not measured),
    lowest index among ties."""
    return min(
        front,
        key=lambda t: (-(t["accuracy"] if t["int8_accuracy"] is None else t["int8_accuracy"]),
                       t["index"]),
    )  # fmt: skip


@pytest.fixture
def server(tmp_path, ray_address):
    db = f"sqlite:///{tmp_path / 'service.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")},
        "SPARSEARCH_DATABASE_URL": db,
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "SPARSEARCH_RAY_ADDRESS": ray_address,
    }
    token = _cli("token", "create", "--owner", "alice", "--name", "e2e", env=env)
    assert token.returncode == 0, token.stderr
    port = _free_port()
    proc = subprocess.Popen(
        [SPARSEARCH, "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).json().get("scheduler") == "running":
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("server did not become healthy with a running scheduler in 60 s")
    yield url, token.stdout.strip().splitlines()[-1], env
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_submit_poll_front_download_reload(server):
    url, token, env = server
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    body = {
        "dataset": "digits",
        "limits": {"flash_bytes": 24576, "ram_bytes": 6144},
        "budget": {"trials": 4, "parallel": 2, "epochs": 4},
        "seed": 0,
        "pruning_methods": ["filter_norm"],
    }
    r = http.post("/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    job_id = r.json()["id"]

    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(2)
    assert job["status"] == "completed", job
    assert job["progress"]["trained"] == 4 and job["progress"]["running"] == 0

    front = http.get(f"/v1/jobs/{job_id}/pareto").json()
    assert front["count"] >= 1
    best = http.get(f"/v1/jobs/{job_id}/best").json()
    assert best["index"] == _most_accurate(front["data"])["index"]
    assert best["flash_bytes"] <= 24576 and best["ram_bytes"] <= 6144

    listing = http.get(f"/v1/jobs/{job_id}/trials/{best['index']}/artifacts").json()
    sd = next(a for a in listing if a["kind"] == "state_dict")
    r = http.get(sd["url"])
    assert r.status_code == 200
    assert hashlib.sha256(r.content).hexdigest() == sd["sha256"] == r.headers["X-Content-SHA256"]

    from sparsearch.datasets import load_dataset
    from sparsearch.space.spec import ArchSpec, TrialSpec
    from sparsearch.worker.export import load_model
    from sparsearch.worker.train import evaluate
    from sparsearch.worker.trial import prepare_inputs

    model = load_model(best["effective_spec"], r.content)
    data = load_dataset("digits", seed=0)
    arch = ArchSpec.from_dict(best["effective_spec"]["arch"])
    _, x_val, _ = prepare_inputs(TrialSpec(arch=arch), data)
    assert evaluate(model, x_val, data.y_val) == pytest.approx(best["accuracy"], abs=1e-12)

    # Another owner sees nothing of it.
    other = _cli("token", "create", "--owner", "bob", env=env).stdout.strip().splitlines()[-1]
    r = httpx.get(f"{url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 404


def test_cli_client_against_the_server(server, tmp_path):
    url, token, env = server
    env = {**env, "SPARSEARCH_TOKEN": token}
    sub = _cli(
        "submit", "--server", url, "--dataset", "digits", "--flash", "24KiB", "--ram", "6KiB",
        "--trials", "3", "--parallel", "2", "--epochs", "2", env=env,
    )  # fmt: skip
    assert sub.returncode == 0, sub.stderr
    job_id = sub.stdout.strip().splitlines()[-1]
    assert "24576" in sub.stderr

    watched = _cli("status", job_id, "--server", url, "--watch", "--json", env=env, timeout=420)
    assert watched.returncode == 0, watched.stderr
    job = json.loads(watched.stdout)
    assert job["status"] == "completed" and job["progress"]["trained"] == 3

    front = json.loads(_cli("pareto", job_id, "--server", url, "--json", env=env).stdout)
    assert front and all(t["pareto"] for t in front)
    out = tmp_path / "best.onnx"
    pulled = _cli("pull", job_id, "--server", url, "--format", "onnx", "-o", str(out), env=env)
    assert pulled.returncode == 0, pulled.stderr
    import onnx

    onnx.checker.check_model(onnx.load(str(out)))
    best = _most_accurate(front)
    assert f"trial {best['index']}" in pulled.stderr

    # The default format is the int8 .tflite that ships, and it runs on TFLite Micro.
    from sparsearch.worker.tflm import run_tflm

    tflite = tmp_path / "best.tflite"
    pulled = _cli("pull", job_id, "--server", url, "-o", str(tflite), env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert len(tflite.read_bytes()) == best["tflm_flash_bytes"]
    assert run_tflm(tflite.read_bytes()).arena_total == best["tflm_ram_bytes"]

    bad = _cli("status", job_id, "--server", url, "--token", "wrong", env=env)
    assert bad.returncode != 0 and "token" in bad.stderr and "Traceback" not in bad.stderr
