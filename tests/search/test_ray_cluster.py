"""A real two-node Ray cluster on this machine, wired as docker-compose.yml wires one: a head
without CPUs and a worker node with CPUs (``ray start --block``, each with its own temp dir and a
free GCS port), token authentication on, the token shared through ``RAY_AUTH_TOKEN``. The
``sparsearch search`` CLI joins it with ``SPARSEARCH_RAY_ADDRESS``.

Nothing here touches the session's shared Ray (``ray_address``) or any other Ray instance on the
machine: the nodes are started by this module and stopped by their pids.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from sparsearch.errors import ClusterError
from sparsearch.worker.remote import check_cluster

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SPARSEARCH, RAY = str(BIN / "sparsearch"), str(BIN / "ray")
#: Ray's variables that would point a process at another cluster or token than this module's.
RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
#: Lines Ray prints by itself: its Python loggers' format, its C++ logs, its notices.
RAY_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+[A-Z]+ \S+\.py:\d+ --"  # Python: ray's handler
    r"|^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z] \d+ \d+\]"  # C++: [date time W pid tid]
    r"|\((raylet|pid=\d+)[^)]*\)"  # worker output forwarded to the driver
    r"|Token authentication is|RAY_AUTH_MODE=disabled|InvalidAuthToken|gcs_client"
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without SPARSEARCH_* and Ray's cluster/auth variables."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SPARSEARCH_") and k not in RAY_VARIABLES
    }
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if RAY_LINE.search(line)]


def run_search(
    tmp_path: Path, env: dict[str, str], timeout: float, trials: int = 2, *extra: str
) -> subprocess.CompletedProcess:
    """A small digits search (``trials`` trials, as many at once, 1 epoch) with ``--json``."""
    return subprocess.run(
        [SPARSEARCH, "search", "--dataset", "digits", "--flash", "32KiB", "--ram", "8KiB",
         "--trials", str(trials), "--parallel", str(trials), "--epochs", "1", "--seed", "0",
         *extra, "--json", "--db", f"sqlite:///{tmp_path / 'r.db'}",
         "--artifacts", str(tmp_path / "artifacts")],
        capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout,
    )  # fmt: skip


# -- the cluster -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    address: str
    auth: dict[str, str]  # what every process of the cluster gets: mode and token
    head_node: str
    worker_node: str


class Node:
    """One ``ray start --block`` in its own session; its log in ``<temp_dir>.log``."""

    def __init__(self, temp_dir: Path, args: list[str], env: dict[str, str]) -> None:
        self.log = temp_dir.with_suffix(".log")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [RAY, "start", "--block", "--disable-usage-stats", f"--temp-dir={temp_dir}",
                 "--object-store-memory=100000000", *args],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True,
            )  # fmt: skip

    def wait_started(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in self.log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.2)

    def node_id(self) -> str:
        """The node id of this ``ray start``'s raylet (its ``--node_id`` flag, which is how Ray
        itself finds local nodes)."""
        for child in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmdline = child.cmdline()
            except psutil.Error:
                continue
            if cmdline and Path(cmdline[0]).name == "raylet":
                for arg in cmdline:
                    if arg.startswith("--node_id="):
                        return arg.split("=", 1)[1]
        pytest.fail(f"no raylet under ray start (pid {self.proc.pid})")

    def stop(self) -> None:
        """SIGTERM to ``ray start`` and every process under it (by pid), SIGKILL to what is
        left after 5 s (``ray start`` itself drains for up to 30 s on SIGTERM). Never
        ``ray stop``: it stops every Ray on the machine."""
        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            procs = []
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        _, alive = psutil.wait_procs(procs, timeout=5)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        psutil.wait_procs(alive, timeout=5)
        self.proc.wait(timeout=5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    # Short paths: Ray's Unix sockets live under the temp dir (at most 107 characters).
    root = Path(tempfile.mkdtemp(prefix="sparsearch-ray-"))
    port = free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = clean_env(**auth)
    nodes: list[Node] = []
    try:
        head = Node(
            root / "head",
            ["--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false"],
            env,
        )
        nodes.append(head)
        head.wait_started()
        worker = Node(root / "worker", [f"--address=127.0.0.1:{port}", "--num-cpus=2"], env)
        nodes.append(worker)
        worker.wait_started()
        yield Cluster(f"127.0.0.1:{port}", auth, head.node_id(), worker.node_id())
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- tests -------------------------------------------------------------------------------------


def test_trials_train_on_the_worker_node(cluster: Cluster, tmp_path: Path) -> None:
    env = clean_env(SPARSEARCH_RAY_ADDRESS=cluster.address, **cluster.auth)
    proc = run_search(tmp_path, env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed", doc["error"]
    trained = [t for t in doc["trials"] if t["status"] in ("completed", "failed")]
    assert len(trained) == 2
    assert cluster.head_node != cluster.worker_node
    # The head has no CPUs: every trial ran on the worker node, in a process there.
    assert {t["worker_node"] for t in trained} == {cluster.worker_node}, trained
    assert all(t["worker_pid"] and t["worker_pid"] != os.getpid() for t in trained)
    for t in doc["trials"]:
        if t["status"] == "infeasible":
            assert t["worker_node"] is None  # never trained
    # stderr is the CLI's: its own lines and progress bar, nothing from Ray.
    assert ray_lines(proc.stderr) == [], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_process_without_token_auth_is_refused_with_a_hint(
    cluster: Cluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    proc = run_search(tmp_path, clean_env(SPARSEARCH_RAY_ADDRESS=cluster.address), timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "error:" in proc.stderr and "hint:" in proc.stderr, proc.stderr
    for needle in (cluster.address, "SPARSEARCH_RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
        assert needle in proc.stderr, (needle, proc.stderr)
    assert ray_lines(proc.stderr) == [], proc.stderr
    doc = json.loads(proc.stdout)  # --json still prints the job's document
    # The environment was wrong, not the job: it is left resumable, and the CLI says how.
    assert doc["status"] == "interrupted" and "refused" in doc["error"]
    assert f"--resume {doc['job_id']}" in proc.stderr


def test_the_cluster_check_names_the_token_setting(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """check_cluster (what init_ray runs first) in this process: its probe runs in a child
    that sees this environment."""
    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", cluster.auth["RAY_AUTH_TOKEN"])
    check_cluster(cluster.address)  # the right token: no error

    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    with pytest.raises(ClusterError, match="refused this process's authentication token") as e:
        check_cluster(cluster.address)
    assert "RAY_AUTH_TOKEN" in (e.value.hint or "")

    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ray/auth_token either
    with pytest.raises(ClusterError, match="no Ray authentication token was found") as e:
        check_cluster(cluster.address)
    assert "RAY_AUTH_TOKEN" in (e.value.hint or "")


def test_an_unreachable_cluster_fails_within_seconds(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = run_search(tmp_path, clean_env(SPARSEARCH_RAY_ADDRESS=address), timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert elapsed < 60, f"took {elapsed:.0f} s"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert "error:" in proc.stderr and "hint:" in proc.stderr, proc.stderr
    assert f"cannot reach the Ray cluster at {address}" in proc.stderr, proc.stderr
    assert "SPARSEARCH_RAY_ADDRESS" in proc.stderr
    assert ray_lines(proc.stderr) == [], proc.stderr
    assert json.loads(proc.stdout)["status"] == "interrupted"


def test_a_local_search_prints_nothing_from_ray(tmp_path: Path) -> None:
    """No SPARSEARCH_RAY_ADDRESS and no RAY_AUTH_MODE: the search starts its own Ray, which
    turns token authentication on by itself and says so on every start; the CLI keeps that
    notice (and every other Ray line) off its stderr."""
    env = clean_env(SPARSEARCH_RAY_NUM_CPUS="1")
    proc = run_search(tmp_path, env, 300, 1, "--train-limit", "300")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads(proc.stdout)["status"] == "completed"
    assert ray_lines(proc.stderr) == [], proc.stderr
    assert "Traceback" not in proc.stderr
