"""``--strategy``, ``--target`` and ``--space FILE.json`` on ``search`` and ``submit`` (and
``--target`` on ``finalize``), ``cancel``, and who holds a job: ``search --resume`` refuses a
job a live scheduler or another search holds, and takes over one whose holder went silent.

Searches here never train: their limits are below the smallest network, so the driver fails the
job before it starts Ray (exit 1) — what is checked is what reached the stored job.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from sparsearch.cli import app
from sparsearch.space.params import SpaceConfig
from sparsearch.storage import open_storage
from sparsearch.vocabulary import DEFAULT_TARGET, STRATEGIES, TARGETS

SPARSEARCH = Path(sys.executable).with_name("sparsearch")
#: Limits no network of any space fits: the job fails before anything trains.
TOO_TIGHT = ("--flash", "100", "--ram", "100", "--trials", "2", "--parallel", "1")
#: A target other than the default: a test that passes it fails if the option is dropped.
OTHER = next(t for t in TARGETS if t != DEFAULT_TARGET)


class Cli:
    """In-process runner whose settings point into tmp_path."""

    def __init__(self, tmp_path: Path) -> None:
        self.url = f"sqlite:///{tmp_path / 'cli.db'}"
        self.artifacts = tmp_path / "artifacts"
        self.env = {
            "SPARSEARCH_DATABASE_URL": self.url,
            "SPARSEARCH_ARTIFACT_DIR": str(self.artifacts),
            "SPARSEARCH_RAY_ADDRESS": "",
            "SPARSEARCH_SERVER": None,
            "SPARSEARCH_HEARTBEAT_SECONDS": None,
            "SPARSEARCH_STALE_AFTER_SECONDS": None,
        }
        self.runner = CliRunner()

    def __call__(self, *args: Any, **env: str | None) -> Any:
        result = self.runner.invoke(app, [str(a) for a in args], env={**self.env, **env})
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception,
            result.output,
        )
        return result

    def storage(self) -> Any:
        return open_storage(self.url, self.artifacts)

    def jobs(self) -> list[Any]:
        with self.storage() as storage:
            return storage.list_jobs()


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _clean_failure(result: Any, *needles: str) -> None:
    everything = result.stdout + result.stderr
    assert result.exit_code == 2, everything
    assert "Traceback" not in everything, everything
    assert "error:" in result.stderr and "hint:" in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, f"{needle!r} not in stderr:\n{result.stderr}"
    assert result.stdout == ""


# -- --space and --strategy --------------------------------------------------------------------


def test_a_space_file_and_a_strategy_reach_the_stored_job(cli: Cli, tmp_path: Path) -> None:
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"lr": [0.002, 0.04], "channels": [2, 32], "max_blocks": 2}))
    result = cli("search", *TOO_TIGHT, "--space", space, "--strategy", "random", "--json")
    assert result.exit_code == 1, result.output  # the limits, not the options
    assert "limits too tight" in result.stderr and "strategy random" in result.stderr
    (job,) = cli.jobs()
    assert job.strategy == "random" and job.config["strategy"] == "random"
    assert job.config["space"]["lr"] == [0.002, 0.04]
    assert job.config["space"]["channels"] == [2, 32] and job.config["space"]["max_blocks"] == 2
    # Untouched fields keep the defaults.
    assert job.config["space"]["kernels"] == list(SpaceConfig().kernels)
    doc = json.loads(result.stdout)
    assert (doc["strategy"], doc["screened"]) == ("random", 0)


def test_without_options_the_job_gets_the_default_strategy(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT)
    assert result.exit_code == 1, result.output
    (job,) = cli.jobs()
    assert job.config["strategy"] == "bo"
    assert job.config["target"] == DEFAULT_TARGET and f"target {DEFAULT_TARGET}" in result.stderr
    assert job.config["space"]["channels"] == list(SpaceConfig().channels)


BAD_SPACES = [
    ("missing", None, ["cannot read --space file", "No such file"]),
    ("broken", '{"lr": [0.002, 0.04],}', ["is not valid JSON"]),
    ("not-text", b"\xff\xfe\x00", ["is not valid JSON"]),
    ("a-list", "[1, 2]", ["space: Input should be a valid dictionary"]),
    ("unknown-key", '{"learning_rate": [0.01, 0.1]}', ["unknown field space.learning_rate"]),
    ("bad-type", '{"max_blocks": "two"}', ["space.max_blocks"]),
    ("out-of-range", '{"channels": [0, 32]}', ["space.channels.0"]),
    ("inverted", '{"lr": [0.04, 0.002]}', ["lr bounds must satisfy 0 < low < high"]),
    ("repeated", '{"kernels": [3, 3]}', ["kernels repeats a value"]),
]


@pytest.mark.parametrize("command", ["search", "submit"])
@pytest.mark.parametrize(("name", "content", "needles"), BAD_SPACES, ids=[b[0] for b in BAD_SPACES])
def test_a_bad_space_file_is_exit_2_naming_the_file(
    cli: Cli, tmp_path: Path, command: str, name: str, content: Any, needles: list[str]
) -> None:
    path = tmp_path / f"{name}.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    # submit checks the file before it talks to the server (none answers on port 1).
    extra = ["--server", "http://127.0.0.1:1"] if command == "submit" else []
    result = cli(command, "--space", path, *extra)
    _clean_failure(result, str(path), *needles)
    assert cli.jobs() == []


def test_an_unknown_strategy_is_a_usage_error_listing_the_choices(cli: Cli) -> None:
    for command in ("search", "submit"):
        result = cli(command, "--strategy", "annealing")
        assert result.exit_code == 2 and "Traceback" not in result.output
        assert all(name in result.stderr for name in STRATEGIES), result.stderr
    assert cli.jobs() == []


def test_help_lists_the_strategies_with_their_descriptions(cli: Cli) -> None:
    for command in ("search", "submit"):
        text = " ".join(cli(command, "--help").stdout.split())
        for s in STRATEGIES.values():
            assert s.name in text
        assert "--space" in text and "FILE.json" in text
    assert "NSGA-II" in " ".join(cli("search", "--help").stdout.split())


def test_resume_does_not_take_new_search_options(cli: Cli, tmp_path: Path) -> None:
    result = cli("search", "--resume", "abc", "--strategy", "random")
    _clean_failure(result, "a resumed job keeps its own")


# -- --target ----------------------------------------------------------------------------------


def test_a_target_reaches_the_stored_job_the_json_and_the_listings(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT, "--target", OTHER, "--json")
    assert result.exit_code == 1, result.output  # the limits, not the option
    assert f"strategy bo, target {OTHER}," in result.stderr
    (job,) = cli.jobs()
    assert job.config["target"] == OTHER and job.target == OTHER
    assert json.loads(result.stdout)["target"] == OTHER
    status = cli("status", job.id, "--json")
    assert json.loads(status.stdout)["target"] == OTHER
    assert f"· bo · target {OTHER} ·" in " ".join(cli("status", job.id).stdout.split())
    (listed,) = json.loads(cli("jobs", "--json").stdout)
    assert listed["target"] == OTHER
    table = cli("jobs", COLUMNS="200").stdout
    assert "target" in table and f" {OTHER} " in table


@pytest.mark.parametrize("command", ["search", "submit", "finalize"])
def test_an_unknown_target_is_a_usage_error_listing_the_choices(cli: Cli, command: str) -> None:
    args = [command, "JOB"] if command == "finalize" else [command]
    result = cli(*args, "--target", "esp32")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert all(f"'{t}'" in result.stderr for t in TARGETS), result.stderr
    assert cli.jobs() == []


def test_sparse_accounting_under_c_is_exit_2_with_a_hint(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT, "--target", "c", "--flash-accounting", "sparse")
    _clean_failure(result, "C target", "--target tflm")
    assert cli.jobs() == []


@pytest.mark.parametrize("command", ["search", "submit", "finalize"])
def test_help_explains_the_target_and_its_default(cli: Cli, command: str) -> None:
    text = " ".join(cli(command, "--help", COLUMNS="200").stdout.split())
    assert "what the limits measure: c = the interpreter-free C model" in text
    default = (
        "(default: the source job's)" if command == "finalize" else f"[default: {DEFAULT_TARGET}]"
    )
    assert default in text


# -- --max-instructions ------------------------------------------------------------------------


def test_max_instructions_reaches_the_stored_job_the_json_and_the_summaries(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT, "--target", "c", "--max-instructions", "250000", "--json")
    assert result.exit_code == 1, result.output  # the limits, not the option
    assert "RAM ≤ 100 B, ≤ 250,000 instructions, 2 trials" in result.stderr
    (job,) = cli.jobs()
    assert job.config["limits"]["instructions"] == 250_000
    limits = json.loads(result.stdout)["limits"]
    assert limits["instructions"] == 250_000
    assert {"flash_bytes", "ram_bytes", "macs", "ram_margin_bytes"} <= set(limits)
    status = cli("status", job.id, "--json")
    assert json.loads(status.stdout)["limits"]["instructions"] == 250_000
    assert "≤ 250,000 instructions" in " ".join(cli("status", job.id).stdout.split())


def test_without_max_instructions_the_json_limits_say_null(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT, "--target", "c", "--json")
    assert result.exit_code == 1, result.output
    limits = json.loads(result.stdout)["limits"]
    assert "instructions" in limits and limits["instructions"] is None
    assert "RAM ≤ 100 B, 2 trials" in result.stderr
    (job,) = cli.jobs()
    assert job.config["limits"]["instructions"] is None


def test_max_instructions_under_tflm_is_exit_2_with_a_hint(cli: Cli) -> None:
    result = cli("search", *TOO_TIGHT, "--target", "tflm", "--max-instructions", "250000")
    _clean_failure(result, "instructions are measured for the C target", "--target c")
    assert cli.jobs() == []


@pytest.mark.parametrize("command", ["search", "submit"])
@pytest.mark.parametrize("bad", ["0", "-3", str(10**12 + 1)])
def test_a_bad_max_instructions_is_exit_2(cli: Cli, command: str, bad: str) -> None:
    server = ["--server", "http://127.0.0.1:1"] if command == "submit" else []
    result = cli(command, *server, *TOO_TIGHT, "--target", "c", "--max-instructions", bad)
    _clean_failure(result, "--max-instructions")
    assert cli.jobs() == []


def test_resume_does_not_take_max_instructions(cli: Cli) -> None:
    result = cli("search", "--resume", "abc", "--max-instructions", "5000")
    _clean_failure(result, "a resumed job keeps its limits")


@pytest.mark.parametrize("command", ["search", "submit"])
def test_help_explains_max_instructions(cli: Cli, command: str) -> None:
    text = " ".join(cli(command, "--help", COLUMNS="200").stdout.split())
    assert "--max-instructions" in text
    assert "Optional latency budget: Cortex-M4 instructions per inference (target c)" in text


def test_submit_sends_max_instructions(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    class Server:
        def __init__(self, server: str, token: str | None) -> None:
            pass

        def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
            sent.append(body)
            limits = {"macs": None, "ram_margin_bytes": 0, "instructions": None, **body["limits"]}
            return {"id": f"job{len(sent)}", **body, "limits": limits}

    import sparsearch.client

    monkeypatch.setattr(sparsearch.client, "RemoteBackend", Server)
    server = ["--server", "http://127.0.0.1:1", "--target", "c"]
    result = cli("submit", *server, "--max-instructions", "750000")
    assert result.exit_code == 0, result.output
    assert sent[0]["limits"]["instructions"] == 750_000 and sent[0]["target"] == "c"
    assert "≤ 750,000 instructions" in result.stderr
    assert result.stdout.strip() == "job1"
    plain = cli("submit", *server)
    assert plain.exit_code == 0, plain.output
    assert "instructions" not in sent[1]["limits"] and "RAM ≤ 8192 B, 8 trials" in plain.stderr


def _job(storage: Any, **config: Any) -> Any:
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(dataset="digits", flash_bytes=100, ram_bytes=100, trials=2, **config)
    return storage.create_job(dataset="digits", config=cfg.to_dict())


def test_resume_keeps_the_jobs_target(cli: Cli) -> None:
    with cli.storage() as storage:
        job = _job(storage, target=OTHER)
    result = cli("search", "--resume", job.id, "--target", DEFAULT_TARGET)
    _clean_failure(result, f"--target {DEFAULT_TARGET}", f"target {OTHER}", "keeps its own")
    with cli.storage() as storage:
        assert storage.get_job(job.id).status == "queued"  # not claimed
        assert storage.list_claims(job.id) == []
    # Its own target, or none, resumes it (then its limits fail it).
    for extra in (["--target", OTHER], []):
        with cli.storage() as storage:
            storage.set_job_status(job.id, "interrupted")
        result = cli("search", "--resume", job.id, *extra)
        assert result.exit_code == 1 and "limits too tight" in result.stderr, result.output
        assert f"target {OTHER}," in result.stderr
    with cli.storage() as storage:
        assert storage.get_job(job.id).config["target"] == OTHER


def _completed_trial(storage: Any, job_id: str) -> None:
    storage.add_trial(
        job_id,
        0,
        status="running",
        params={"n_blocks": 1},
        generator="random:sobol",
        gen_seconds=0.1,
        estimates={"flash_bytes": 50, "ram_bytes": 50},
        feasible=True,
        pruning={"method": "none", "level": 0.0},
    )
    storage.finish_trial(job_id, 0, status="completed", metrics={"accuracy": 0.9})


def test_finalize_takes_the_source_jobs_target_or_the_one_given(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sparsearch.search.driver import SearchDriver

    monkeypatch.setattr(SearchDriver, "run", lambda self: None)  # nothing trains here
    with cli.storage() as storage:
        source = _job(storage, target=OTHER)
        _completed_trial(storage, source.id)
    targets = []
    for extra in ([], ["--target", DEFAULT_TARGET]):
        result = cli("finalize", source.id, "--trials", "0", "--json", *extra)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        assert doc["finalizes"] == source.id
        targets.append(doc["target"])
        with cli.storage() as storage:
            assert storage.get_job(doc["job_id"]).config["target"] == doc["target"]
            storage.set_job_status(doc["job_id"], "cancelled")  # frees trial 0
    assert targets == [OTHER, DEFAULT_TARGET]


def test_finalize_under_sparse_accounting_refuses_target_c(cli: Cli) -> None:
    with cli.storage() as storage:
        source = _job(storage, target="tflm", flash_accounting="sparse")
        _completed_trial(storage, source.id)
    result = cli("finalize", source.id, "--trials", "0", "--target", "c")
    _clean_failure(result, "C target", "--target tflm")
    assert len(cli.jobs()) == 1  # the source only


def test_finalize_on_a_server_sends_the_target(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[dict[str, Any]] = []

    class Server:
        def __init__(self, server: str, token: str | None) -> None:
            pass

        def finalize(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
            sent.append(body)
            return {"id": "fin1", "target": body.get("target")}

    import sparsearch.client

    monkeypatch.setattr(sparsearch.client, "RemoteBackend", Server)
    for extra in ([], ["--target", OTHER]):
        result = cli("finalize", "job1", "--server", "http://127.0.0.1:1", *extra)
        assert result.exit_code == 0, result.output
    assert sent == [{"front": False}, {"front": False, "target": OTHER}]


# -- who holds a job ---------------------------------------------------------------------------


def _tight_job(storage: Any) -> Any:
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(dataset="digits", flash_bytes=100, ram_bytes=100, trials=2)
    return storage.create_job(dataset="digits", config=cfg.to_dict())


@pytest.mark.parametrize("kind", ["scheduler", "cli"])
def test_resume_refuses_a_job_a_live_holder_holds(cli: Cli, kind: str) -> None:
    with cli.storage() as storage:
        job = _tight_job(storage)
        holder = storage.register_scheduler(host="node-7", pid=4242, kind=kind)
        claimed = storage.claim_job(job.id, scheduler_id=holder, stale_after=60)
    result = cli("search", "--resume", job.id)
    _clean_failure(result, f"job {job.id} is running under", holder, "pid 4242", "node-7")
    assert "cancel" in result.stderr
    with cli.storage() as storage:
        after = storage.get_job(job.id)
        assert (after.status, after.scheduler_id) == ("running", holder)
        assert after.heartbeat_at == claimed.heartbeat_at  # nothing touched it
        assert len(storage.list_claims(job.id)) == 1


def test_resume_takes_over_a_job_whose_holder_went_silent(cli: Cli) -> None:
    with cli.storage() as storage:
        job = _tight_job(storage)
        dead = storage.register_scheduler(host="desk", pid=99, kind="cli")
        storage.claim_job(job.id, scheduler_id=dead, stale_after=60)
    time.sleep(0.5)
    result = cli("search", "--resume", job.id, SPARSEARCH_STALE_AFTER_SECONDS="0.3")
    assert result.exit_code == 1, result.output  # claimed, then failed by its limits
    assert "limits too tight" in result.stderr
    with cli.storage() as storage:
        claims = storage.list_claims(job.id)
        assert [c.scheduler_id for c in claims][0] == dead
        assert claims[-1].scheduler_id.startswith("cli:") and claims[-1].scheduler_id != dead
        assert claims[-1].previous_status == "interrupted"
        assert storage.get_job(job.id).status == "failed"
    # The run let go of its hold: its holder row (a CLI's) is marked stopped.
    with closing(sqlite3.connect(cli.url.removeprefix("sqlite:///"))) as conn:
        kind, stopped = conn.execute(
            "SELECT kind, stopped_at FROM schedulers WHERE id = ?", (claims[-1].scheduler_id,)
        ).fetchone()
    assert kind == "cli" and stopped is not None


def test_cancel_a_local_job(cli: Cli) -> None:
    with cli.storage() as storage:
        queued = _tight_job(storage)
        running = _tight_job(storage)
        storage.claim_job(running.id, scheduler_id="cli:h:1:aa", stale_after=60)
    result = cli("cancel", queued.id)
    assert result.exit_code == 0 and f"job {queued.id} cancelled" in result.stderr
    result = cli("cancel", running.id, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["cancel_requested"] is True
    with cli.storage() as storage:
        assert storage.get_job(queued.id).status == "cancelled"
        assert storage.is_cancel_requested(running.id)
    result = cli("cancel", queued.id)
    _clean_failure(result, "already cancelled")


# -- submit to a server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_submit_sends_the_space_file_and_the_strategy(tmp_path: Path) -> None:
    """A real `serve --no-scheduler` (no training): the job it stores has both."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")}
    env |= {
        "SPARSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}",
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "SPARSEARCH_AUTH": "off",
    }
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [SPARSEARCH, "serve", "--no-scheduler", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.3)
        space = tmp_path / "space.json"
        space.write_text('{"lr": [0.002, 0.04], "channels": [2, 32]}')
        args = ["submit", "--server", url, "--space", str(space), "--strategy", "nsga2"]
        args += ["--target", OTHER]
        sub = subprocess.run(
            [SPARSEARCH, *args, "--json"], capture_output=True, text=True, env=env, timeout=60
        )
        assert sub.returncode == 0, sub.stderr
        job = json.loads(sub.stdout)
        assert job["strategy"] == "nsga2" and f"strategy nsga2, target {OTHER}" in sub.stderr
        assert job["progress"]["screened"] == 0 and job["target"] == OTHER
        stored = httpx.get(f"{url}/v1/jobs/{job['id']}").json()
        assert stored["strategy"] == "nsga2" and stored["target"] == OTHER
        with open_storage(env["SPARSEARCH_DATABASE_URL"], tmp_path / "artifacts") as storage:
            cfg = storage.get_job(job["id"]).config
        assert cfg["space"]["lr"] == [0.002, 0.04] and cfg["space"]["channels"] == [2, 32]
        assert cfg["target"] == OTHER
        sparse_c = ["submit", "--server", url, "--target", "c", "--flash-accounting", "sparse"]
        refused = subprocess.run(
            [SPARSEARCH, *sparse_c], capture_output=True, text=True, env=env, timeout=60
        )
        assert refused.returncode == 2, refused.stderr
        assert "error:" in refused.stderr and "C target" in refused.stderr
        assert "hint:" in refused.stderr and "Traceback" not in refused.stderr
        cancel = subprocess.run(
            [SPARSEARCH, "cancel", job["id"], "--server", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert cancel.returncode == 0 and "cancelled" in cancel.stderr, cancel.stderr
        status = subprocess.run(
            [SPARSEARCH, "status", job["id"], "--server", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert "cancelled · nsga2 ·" in status.stdout and "screened 0" in status.stdout
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


# -- a real local search: cancel it, kill it ---------------------------------------------------


def _search_env(tmp_path: Path, ray_address: str, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")}
    return env | {
        "SPARSEARCH_DATABASE_URL": f"sqlite:///{tmp_path / 'run.db'}",
        "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "SPARSEARCH_RAY_ADDRESS": ray_address,
        "SPARSEARCH_HEARTBEAT_SECONDS": "0.3",
        **more,
    }


def _start_search(env: dict[str, str], trials: int) -> subprocess.Popen:
    args = ["--flash", "24KiB", "--ram", "6KiB", "--trials", str(trials), "--parallel", "1"]
    return subprocess.Popen(
        [SPARSEARCH, "search", *args, "--epochs", "1", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def _wait_for_a_running_trial(env: dict[str, str], proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 180
    with open_storage(env["SPARSEARCH_DATABASE_URL"], env["SPARSEARCH_ARTIFACT_DIR"]) as storage:
        while True:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no trial started within 180 s"
            jobs = storage.list_jobs()
            if jobs and storage.list_trials(jobs[0].id, status="running"):
                return jobs[0].id
            time.sleep(0.2)


@pytest.mark.slow
def test_cancel_stops_a_running_local_search(tmp_path: Path, ray_address: str) -> None:
    env = _search_env(tmp_path, ray_address)
    proc = _start_search(env, trials=20)
    try:
        job_id = _wait_for_a_running_trial(env, proc)
        cancel = subprocess.run(
            [SPARSEARCH, "cancel", job_id], capture_output=True, text=True, env=env, timeout=60
        )
        assert cancel.returncode == 0 and "cancel requested" in cancel.stderr, cancel.stderr
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert f"job {job_id} was cancelled" in err and "Traceback" not in err
    doc = json.loads(out)
    assert doc["status"] == "cancelled"
    trials = doc["trials"]
    assert not [t for t in trials if t["status"] in ("queued", "running")]
    cut = [t for t in trials if t["status"] == "failed" and not t["charged"]]
    assert cut, trials  # the in-flight trial: failed, not charged
    assert sum(t["status"] in ("completed", "failed") and t["charged"] for t in trials) < 20


@pytest.mark.slow
def test_a_killed_local_search_is_refused_then_taken_over_by_resume(
    tmp_path: Path, ray_address: str
) -> None:
    # Stale after 10 s: room for the refused resume to start (imports) on a loaded host.
    env = _search_env(tmp_path, ray_address, SPARSEARCH_STALE_AFTER_SECONDS="10")
    proc = _start_search(env, trials=2)
    try:
        job_id = _wait_for_a_running_trial(env, proc)
    finally:
        proc.kill()  # SIGKILL: no clean-up, no more heartbeats
        proc.wait()
    killed_at = time.monotonic()
    refused = subprocess.run(
        [SPARSEARCH, "search", "--resume", job_id], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2, refused.stderr
    assert "a local `sparsearch search` (cli:" in refused.stderr
    assert f"pid {proc.pid}" in refused.stderr and "hint:" in refused.stderr
    time.sleep(max(0.0, killed_at + 10.5 - time.monotonic()))  # its heartbeat goes stale
    resumed = subprocess.run(
        [SPARSEARCH, "search", "--resume", job_id, "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    doc = json.loads(resumed.stdout)
    assert doc["status"] == "completed"
    lost = [t for t in doc["trials"] if t["error"] == "scheduler lost"]
    assert lost and all(t["status"] == "failed" and t["charged"] for t in lost)  # a crash counts
    assert sum(t["status"] in ("completed", "failed") and t["charged"] for t in doc["trials"]) == 2
    with open_storage(env["SPARSEARCH_DATABASE_URL"], env["SPARSEARCH_ARTIFACT_DIR"]) as storage:
        claims = storage.list_claims(job_id)
    assert [c.previous_status for c in claims] == ["queued", "interrupted"]
    assert all(c.scheduler_id.startswith("cli:") for c in claims)
    assert f":{proc.pid}:" in claims[0].scheduler_id


# -- --early-stopping -------------------------------------------------------------------------


def test_early_stopping_reaches_the_stored_job_and_is_off_unless_asked(cli: Cli) -> None:
    assert cli("search", *TOO_TIGHT).exit_code == 1
    result = cli("search", *TOO_TIGHT, "--early-stopping", "on", "--json")
    assert result.exit_code == 1, result.output  # the limits, not the option
    off, on = sorted(cli.jobs(), key=lambda j: j.created_at)
    assert off.config["early_stopping"] is False and on.config["early_stopping"] is True
    assert cli("search", *TOO_TIGHT, "--early-stopping", "maybe").exit_code == 2
    _clean_failure(
        cli("search", "--resume", "abc", "--early-stopping", "on"), "a resumed job keeps its own"
    )
