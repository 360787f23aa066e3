"""``sparsearch serve --workers N``: N API processes on one port; ``/metrics`` counts every
worker's requests (whichever worker answers the scrape); SIGTERM stops them all, and workers
of a ``serve`` killed with SIGKILL stop by themselves and free the port."""

from __future__ import annotations

import re
import signal
import subprocess

import httpx
import psutil
import pytest
from service_helpers import (
    PYTHON,
    free_port,
    kill_if_running,
    pid_gone,
    service_env,
    settings_for,
    wait_for,
)
from typer.testing import CliRunner

from sparsearch.cli import app
from sparsearch.service.process import SERVE_PID_ENV

pytestmark = pytest.mark.slow

HEALTHZ_COUNT = re.compile(
    r'^sparsearch_http_request_duration_seconds_count\{method="GET",route="/healthz",'
    r'status="200"\} (\S+)$',
    re.MULTILINE,
)


def _serve(tmp_path, *args: str) -> tuple[subprocess.Popen, str, object]:
    settings = settings_for(tmp_path, "", auth="off")
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [PYTHON, "-m", "sparsearch", "serve", "--no-scheduler", "--port", str(port), *args],
        env=service_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    return proc, f"http://127.0.0.1:{port}", log


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """uvicorn's spawned worker processes (not multiprocessing's resource tracker)."""
    return [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]


def _healthz_count(base: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text  # a new connection: any worker
    found = HEALTHZ_COUNT.search(text)
    return float(found.group(1)) if found else 0.0


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _started(proc: subprocess.Popen, base: str) -> list[psutil.Process]:
    """The two worker processes, once they run and the API answers."""
    workers = wait_for("two API workers", lambda: len(_workers(proc)) == 2 and _workers(proc), 30)
    wait_for("the API", lambda: _up(base), 30, every=0.2)
    return workers


def test_workers_share_the_port_and_the_metrics(tmp_path):
    proc, base, log = _serve(tmp_path, "--workers", "2")
    try:
        workers = _started(proc, base)
        assert "2 API workers" in log.read_text()

        before = _healthz_count(base)
        for _ in range(30):  # each on a new connection, accepted by either worker
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        counts = {_healthz_count(base) for _ in range(6)}
        assert counts == {before + 30}, counts  # the same total from whichever worker answers

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        kill_if_running(proc)
    for worker in workers:
        wait_for(f"worker {worker.pid} to be gone", lambda w=worker: pid_gone(w.pid), 10)
    assert "Traceback" not in log.read_text()


def test_workers_of_a_killed_serve_stop_and_free_the_port(tmp_path):
    proc, base, _ = _serve(tmp_path, "--workers", "2")
    try:
        workers = _started(proc, base)
    finally:
        proc.kill()
        proc.wait()
    for worker in workers:
        wait_for(f"orphaned worker {worker.pid} to stop", lambda w=worker: pid_gone(w.pid), 15)
    assert not _up(base)


def test_a_worker_that_starts_after_serve_died_stops_by_itself(tmp_path):
    # serve killed while a worker is still importing: by the time the worker looks, its
    # parent is already the reaper. It must compare against serve's pid, not its parent's.
    gone = subprocess.Popen(["true"])
    gone.wait()
    env = {**service_env(settings_for(tmp_path, "", auth="off")), SERVE_PID_ENV: str(gone.pid)}
    script = (
        "import time\nfrom sparsearch.service.asgi import worker_app\nworker_app()\ntime.sleep(60)"
    )
    worker = subprocess.Popen([PYTHON, "-c", script], env=env, stderr=subprocess.DEVNULL)
    try:
        assert worker.wait(timeout=30) == -signal.SIGTERM
    finally:
        kill_if_running(worker)


def test_bad_worker_count_is_refused(tmp_path):
    env = {
        "SPARSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    result = CliRunner().invoke(app, ["serve", "--port", "0", "--workers", "0"], env=env)
    assert result.exit_code == 2
    assert "--workers must be in 1..64, got 0" in result.stderr
