"""``sparsearch serve`` as a real process: the API answers, a supervised scheduler child runs
(restarted if it dies), and SIGTERM stops both — no orphan scheduler is left behind."""

from __future__ import annotations

import re
import signal
import subprocess

import httpx
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
from sparsearch.service import is_loopback
from sparsearch.storage import open_storage

pytestmark = pytest.mark.slow

STARTED = re.compile(r"started \(pid (\d+)\)")


def _health(url: str) -> dict | None:
    try:
        r = httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def _scheduler_pids(log) -> set[int]:
    return {int(p) for p in STARTED.findall(log.read_text())}


def _serve(tmp_path, settings, *args: str):
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [PYTHON, "-m", "sparsearch", "serve", "--port", str(port), *args],
        env=service_env(settings),
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    return proc, f"http://127.0.0.1:{port}/healthz", log


def test_serve_runs_a_supervised_scheduler_and_sigterm_stops_both(tmp_path, ray_address):
    settings = settings_for(tmp_path, ray_address)
    proc, url, log = _serve(tmp_path, settings)
    try:
        health = wait_for(
            "healthz with a running scheduler",
            lambda: (h := _health(url)) and h["scheduler"] == "running" and h,
            20,
            every=0.2,
        )
        assert health["database"] == "ok"
        assert "serving http://127.0.0.1:" in log.read_text()
        [first] = wait_for("the scheduler's pid", lambda: _scheduler_pids(log), 10)

        # A scheduler that dies is replaced.
        subprocess.run(["kill", "-KILL", str(first)], check=True)
        pids = wait_for("a restarted scheduler", lambda: _scheduler_pids(log) - {first}, 20)
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        kill_if_running(proc)
    for pid in {first, *pids}:
        wait_for(f"scheduler pid {pid} to be gone", lambda pid=pid: pid_gone(pid), 10)
    assert "Traceback" not in log.read_text()


def test_serve_without_scheduler_reports_none(tmp_path, ray_address):
    settings = settings_for(tmp_path, ray_address)
    proc, url, log = _serve(tmp_path, settings, "--no-scheduler")
    try:
        health = wait_for("healthz", lambda: _health(url), 20, every=0.2)
        assert health["scheduler"] == "none"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        kill_if_running(proc)
    assert not _scheduler_pids(log)
    with open_storage(settings.database_url, settings.artifact_dir) as storage:
        assert storage.scheduler_state(stale_after=60) == "none"


def test_auth_off_is_refused_on_a_public_host(tmp_path):
    env = {
        "SPARSEARCH_AUTH": "off",
        "SPARSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
    }
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "0"], env=env)
    assert result.exit_code == 2
    assert "SPARSEARCH_AUTH=off" in result.stderr and "loopback" in result.stderr
    assert "hint:" in result.stderr
    assert not (tmp_path / "x.db").exists()  # refused before touching anything


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback
