"""The ``sparsearch`` command line.

Fast error cases run in-process through Typer's ``CliRunner``; whatever depends on the process
(start-up imports, stdout purity, a real search on Ray) runs ``.venv/bin/sparsearch`` as a
subprocess that joins the session's Ray (``SPARSEARCH_RAY_ADDRESS``) instead of starting one.
Every database and artifact folder lives under ``tmp_path``.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from sparsearch.cli import app

SPARSEARCH = Path(sys.executable).with_name("sparsearch")
HEAVY_MODULES = ("torch", "ray", "botorch", "optuna", "sklearn")
COMMANDS = ("search", "jobs", "pareto", "pull", "db")
FLASH, RAM = 24 * 1024, 6 * 1024
TRIAL_KEYS = {
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
}
SEARCH_ARGS = (
    "search",
    "--dataset",
    "digits",
    "--flash",
    "24KiB",
    "--ram",
    "6KiB",
    "--trials",
    "3",
    "--parallel",
    "2",
    "--epochs",
    "2",
    "--seed",
    "1",
)
UNREACHABLE_DB = "postgresql://postgres:s3cret-pw@127.0.0.1:1/x"


# -- helpers -----------------------------------------------------------------------------------


def clean_env(**settings: str) -> dict[str, str]:
    """os.environ without any SPARSEARCH_* variable of the caller, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")}
    env.update(settings)
    return env


def run_cli(*args: Any, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SPARSEARCH), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
    )


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def job_rows(db_file: Path) -> list[tuple[str, str]]:
    """(id, status) of every job in a SQLite database; [] if it or its schema doesn't exist."""
    if not db_file.exists():
        return []
    with closing(sqlite3.connect(db_file)) as conn:
        has_jobs = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobs'"
        ).fetchone()
        return conn.execute("SELECT id, status FROM jobs").fetchall() if has_jobs else []


def assert_clean_failure(code: int, stdout: str, stderr: str, *needles: str) -> None:
    """Non-zero exit, a message naming what was wrong on stderr, no traceback, stdout empty."""
    everything = stdout + stderr
    assert code != 0, everything
    assert "Traceback" not in everything, everything
    assert "error:" in stderr, stderr
    for needle in needles:
        assert needle in stderr, f"{needle!r} not in stderr:\n{stderr}"
    assert stdout == "", stdout


class Cli:
    """In-process runner whose settings point into tmp_path (never at ~/.sparsearch)."""

    def __init__(self, tmp_path: Path) -> None:
        self.db_file = tmp_path / "cli.db"
        self.env = {
            "SPARSEARCH_DATABASE_URL": sqlite_url(self.db_file),
            "SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts"),
            "SPARSEARCH_RAY_ADDRESS": "",
            "SPARSEARCH_RAY_NUM_CPUS": None,
        }
        self.runner = CliRunner()

    def __call__(self, *args: Any, **env: str | None) -> Any:
        result = self.runner.invoke(app, [str(a) for a in args], env={**self.env, **env})
        # An uncaught exception becomes result.exception; a clean exit is a SystemExit (or None).
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            result.exception,
            result.output,
        )
        return result

    def fails(self, args: list[Any], *needles: str, **env: str | None) -> Any:
        result = self(*args, **env)
        assert_clean_failure(result.exit_code, result.stdout, result.stderr, *needles)
        return result


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


# -- 1. help and start-up ----------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    proc = run_cli("--help", env=clean_env())
    assert proc.returncode == 0, proc.stderr
    for command in COMMANDS:
        assert command in proc.stdout
    db_help = run_cli("db", "--help", env=clean_env())
    assert db_help.returncode == 0 and "upgrade" in db_help.stdout, db_help.stderr


def test_import_and_help_leave_heavy_libraries_unloaded() -> None:
    """`sparsearch --help` starts well under a second: nothing heavy is imported for it."""
    code = (
        "import json, sys\n"
        "import sparsearch.cli\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "after_import = sorted(m for m in heavy if m in sys.modules)\n"
        "for argv in (['--help'], ['search', '--help'], ['pull', '--help']):\n"
        "    try:\n"
        "        sparsearch.cli.app(argv, prog_name='sparsearch')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "after_help = sorted(m for m in heavy if m in sys.modules)\n"
        "print('MODULES=' + json.dumps([after_import, after_help]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("MODULES="))
    after_import, after_help = json.loads(line.removeprefix("MODULES="))
    assert after_import == [], f"importing sparsearch.cli loads {after_import}"
    assert after_help == [], f"--help loads {after_help}"


# -- 2. bad input ------------------------------------------------------------------------------


BAD_OPTIONS = [
    (
        ["--dataset", "nope"],
        ["unknown dataset 'nope'", "digits", "fashion-mnist", "idx:<dir>", "npz:<path>"],
    ),
    (["--flash", "0"], ["--flash must be positive", "'0'"]),
    (["--flash", "-5KiB"], ["cannot parse --flash '-5KiB'"]),
    (["--ram", "abc"], ["cannot parse --ram 'abc'"]),
    (["--ram", "12 furlongs"], ["cannot parse --ram '12 furlongs'"]),
    (["--macs", "0"], ["--macs must be positive"]),
    (["--trials", "0"], ["trials must be an integer from 1", "got 0"]),
    (["--parallel", "0"], ["parallel must be an integer from 1", "got 0"]),
    (["--epochs", "0"], ["epochs must be an integer from 1", "got 0"]),
    (["--seed", "-1"], ["seed must be an integer", "got -1"]),
    (["--train-limit", "3"], ["train_limit must be an integer >= 10", "got 3"]),
    (["--flash-accounting", "weird"], ["flash_accounting must be one of", "'weird'"]),
]


@pytest.mark.parametrize(
    ("args", "needles"), BAD_OPTIONS, ids=[" ".join(args) for args, _ in BAD_OPTIONS]
)
def test_bad_search_options_fail_cleanly_and_create_no_job(
    cli: Cli, args: list[str], needles: list[str]
) -> None:
    cli.fails(["search", *args], *needles)
    assert job_rows(cli.db_file) == []


def test_a_non_integer_option_is_a_usage_error(cli: Cli) -> None:
    result = cli("search", "--trials", "abc")
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "--trials" in result.stderr
    assert job_rows(cli.db_file) == []


def _images(n: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


def _labels(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64) % 2


def _good_arrays() -> dict[str, np.ndarray]:
    return {
        "x_train": _images(20),
        "y_train": _labels(20),
        "x_test": _images(10),
        "y_test": _labels(10),
    }


def _write_missing_key(path: Path) -> None:
    arrays = _good_arrays()
    del arrays["y_test"]
    np.savez(path, **arrays)


def _write_mismatched_lengths(path: Path) -> None:
    np.savez(path, **{**_good_arrays(), "y_train": _labels(19)})


def _write_negative_label(path: Path) -> None:
    y = _labels(20)
    y[3] = -1
    np.savez(path, **{**_good_arrays(), "y_train": y})


def _write_object_array(path: Path) -> None:
    pickled = np.empty(20, dtype=object)
    pickled[:] = [{"image": i} for i in range(20)]
    np.savez(path, **{**_good_arrays(), "x_train": pickled}, allow_pickle=True)


def _write_not_a_zip(path: Path) -> None:
    path.write_bytes(b"this is not a zip archive\n" * 10)


@pytest.mark.parametrize(
    ("write", "needles"),
    [
        (_write_missing_key, ["{path} lacks y_test", "x_train, y_train, x_test"]),
        (_write_mismatched_lengths, ["x_train has 20 samples but y_train has 19"]),
        (_write_negative_label, ["y_train holds negative labels"]),
        (_write_object_array, ["{path} holds object (pickled) arrays"]),
        (_write_not_a_zip, ["{path} is not an npz archive"]),
    ],
    ids=["missing-key", "mismatched-lengths", "negative-label", "object-array", "not-a-zip"],
)
def test_malformed_npz_fails_cleanly_and_creates_no_job(
    cli: Cli, tmp_path: Path, write: Callable[[Path], None], needles: list[str]
) -> None:
    # A long path checks that messages are not wrapped at the terminal width.
    path = tmp_path / "a-rather-long-folder-name-for-the-data" / "data.npz"
    path.parent.mkdir()
    write(path)
    cli.fails(["search", "--dataset", f"npz:{path}"], *(n.format(path=path) for n in needles))
    assert job_rows(cli.db_file) == []


def test_messages_are_printed_literally_not_as_rich_markup(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "data[bold]v2[/].npz"
    cli.fails(["search", "--dataset", f"npz:{path}"], f"npz file {path} does not exist")


def test_unreachable_database_fails_fast_naming_it(tmp_path: Path) -> None:
    env = clean_env(SPARSEARCH_ARTIFACT_DIR=str(tmp_path / "artifacts"))
    start = time.monotonic()
    proc = run_cli("search", "--trials", "1", "--db", UNREACHABLE_DB, env=env, timeout=30)
    elapsed = time.monotonic() - start
    assert_clean_failure(
        proc.returncode, proc.stdout, proc.stderr, "cannot connect to database", "127.0.0.1:1/x"
    )
    assert elapsed < 15, f"took {elapsed:.1f} s to give up on an unreachable database"
    assert "s3cret-pw" not in proc.stderr, "the password leaked into the message"


@pytest.mark.parametrize(
    "args",
    [["jobs"], ["pareto", "abc"], ["pull", "abc", "-o", "x.onnx"], ["db", "upgrade"]],
    ids=["jobs", "pareto", "pull", "db-upgrade"],
)
def test_every_command_reports_an_unreachable_database(cli: Cli, args: list[str]) -> None:
    cli.fails([*args, "--db", UNREACHABLE_DB], "cannot connect to database", "127.0.0.1:1/x")


def test_an_invalid_setting_in_the_environment_is_a_clean_error(cli: Cli) -> None:
    cli.fails(["jobs"], "SPARSEARCH_RAY_NUM_CPUS", SPARSEARCH_RAY_NUM_CPUS="lots")


def test_jobs_rejects_an_unknown_status_and_a_bad_limit(cli: Cli) -> None:
    cli.fails(["jobs", "--status", "weird"], "unknown job status 'weird'", "completed")
    cli.fails(["jobs", "--limit", "0"], "--limit must be from 1 to 1000")


def test_pull_and_pareto_of_an_unknown_job(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    cli.fails(["pull", "nojob", "-o", out], "job 'nojob' does not exist")
    cli.fails(["pull", "nojob", "--trial", "0", "-o", out], "job 'nojob' does not exist")
    cli.fails(["pull", "nojob", "--trial", "-1", "-o", out], "--trial must be >= 0")
    cli.fails(["pareto", "nojob"], "job 'nojob' does not exist")
    cli.fails(["pareto", "nojob", "--json"], "job 'nojob' does not exist")
    assert not out.exists()


def test_pull_refuses_an_unknown_format(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "model.bin"
    cli.fails(["pull", "nojob", "--format", "pickle", "-o", out], "unknown format 'pickle'", "onnx")
    assert not out.exists()


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_limits_below_the_smallest_network_fail_the_job(
    tmp_path: Path, ray_address: str, as_json: bool
) -> None:
    db_file = tmp_path / "tight.db"
    env = clean_env(SPARSEARCH_RAY_ADDRESS=ray_address)
    args = ["--flash", "1000", "--ram", "1000", "--trials", "2", "--parallel", "1"]
    proc = run_cli(
        "search",
        *args,
        "--db",
        sqlite_url(db_file),
        "--artifacts",
        tmp_path / "a",
        *(["--json"] if as_json else []),
        env=env,
    )
    everything = proc.stdout + proc.stderr
    assert proc.returncode != 0, everything
    assert "Traceback" not in everything, everything
    assert "limits too tight for this space, even pruned" in proc.stderr
    rows = job_rows(db_file)
    assert len(rows) == 1 and rows[0][1] == "failed", rows
    if as_json:
        doc = json.loads(proc.stdout)
        assert doc["job_id"] == rows[0][0]
        assert doc["status"] == "failed"
        assert "limits too tight" in doc["error"]
        assert doc["trials"] == [] and doc["pareto"] == []
    else:
        assert "Pareto front" in proc.stdout and "failed" in proc.stdout


# -- 3. a real search --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> SimpleNamespace:
    """One real small search with --json, shared by the tests of the other commands."""
    root = tmp_path_factory.mktemp("cli-search")
    db, artifacts = sqlite_url(root / "r.db"), root / "a"
    env = clean_env(
        SPARSEARCH_RAY_ADDRESS=ray_address,
        SPARSEARCH_DATABASE_URL=sqlite_url(root / "unused.db"),
        SPARSEARCH_ARTIFACT_DIR=str(root / "unused-artifacts"),
        SPARSEARCH_HEARTBEAT_SECONDS="0.5",
    )
    proc = run_cli(
        *SEARCH_ARGS, "--db", db, "--artifacts", artifacts, "--json", env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return SimpleNamespace(
        proc=proc, doc=json.loads(proc.stdout), db=db, artifacts=artifacts, env=env, root=root
    )


def _stored_artifact(run: SimpleNamespace, index: int, kind: str) -> bytes:
    from sparsearch.storage import open_storage

    storage = open_storage(run.db, run.artifacts)
    try:
        return storage.read_artifact(run.doc["job_id"], index, kind)
    finally:
        storage.close()


def _best_front_trial(doc: dict[str, Any]) -> dict[str, Any]:
    return max(doc["pareto"], key=lambda t: (t["accuracy"], -t["flash_bytes"]))


@pytest.mark.slow
def test_search_json_is_one_document_with_every_trial(searched: SimpleNamespace) -> None:
    stdout, stderr = searched.proc.stdout, searched.proc.stderr
    doc = json.loads(stdout)  # the whole of stdout is exactly one JSON document
    assert stdout.strip().count("\n") == 0, stdout
    assert "Traceback" not in stderr

    assert {"job_id", "status", "limits", "hypervolume", "trials", "pareto"} <= set(doc)
    assert doc["status"] == "completed"
    assert doc["limits"]["flash_bytes"] == FLASH and doc["limits"]["ram_bytes"] == RAM
    assert isinstance(doc["hypervolume"], float) and 0.0 <= doc["hypervolume"] <= 1.0

    trained = [t for t in doc["trials"] if t["status"] in ("completed", "failed")]
    assert len(trained) == 3, [(t["index"], t["status"], t.get("error")) for t in doc["trials"]]
    for t in doc["trials"]:
        assert set(t) >= TRIAL_KEYS, TRIAL_KEYS - set(t)
    assert [t["index"] for t in doc["trials"]] == list(range(len(doc["trials"])))

    assert doc["pareto"], "no trial on the front"
    assert [t["index"] for t in doc["pareto"]] == [t["index"] for t in doc["trials"] if t["pareto"]]
    for t in doc["pareto"]:
        assert t["status"] == "completed" and t["feasible"]
        assert t["test_accuracy"] is not None and 0.0 <= t["test_accuracy"] <= 1.0
        assert t["flash_bytes"] <= FLASH and t["ram_bytes"] <= RAM

    # The stderr echo shows the parsed limits in bytes.
    assert "24576" in stderr and "6144" in stderr
    assert doc["job_id"] in stderr
    # Only sparsearch speaks on stderr (job line, progress bar): no BoTorch, Optuna or Ray lines.
    noise = r"INFO|WARNING|botorch|optuna|\b[Rr]ay\b"
    chatter = [ln for ln in stderr.splitlines() if re.search(noise, ln)]
    assert chatter == [], chatter


@pytest.mark.slow
def test_jobs_lists_the_job(searched: SimpleNamespace) -> None:
    job_id = searched.doc["job_id"]
    proc = run_cli("jobs", "--json", "--db", searched.db, env=searched.env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(job_id, "completed")]
    assert rows[0]["limits"]["flash_bytes"] == FLASH
    assert rows[0]["progress"]["trained"] == rows[0]["budget"]["trials"]

    completed = run_cli(
        "jobs", "--status", "completed", "--json", "--db", searched.db, env=searched.env
    )
    assert [r["id"] for r in json.loads(completed.stdout)] == [job_id]
    failed = run_cli("jobs", "--status", "failed", "--json", "--db", searched.db, env=searched.env)
    assert json.loads(failed.stdout) == []

    table = run_cli("jobs", "--db", searched.db, env=searched.env)
    assert table.returncode == 0, table.stderr
    assert job_id in table.stdout  # the id users copy into `pareto`/`pull` is never elided


@pytest.mark.slow
def test_the_search_held_its_job_with_heartbeats(searched: SimpleNamespace) -> None:
    """The CLI process held the job as a scheduler would: created running under its own holder
    (kind "cli"), beaten for while it ran, let go (holder stopped) at the end."""
    from sparsearch.storage import open_storage

    job_id = searched.doc["job_id"]
    with open_storage(searched.db, searched.artifacts) as storage:
        job = storage.get_job(job_id)
        claims = storage.list_claims(job_id)
    assert [c.previous_status for c in claims] == ["queued"]
    holder = claims[0].scheduler_id
    assert holder is not None and holder.startswith("cli:") and job.scheduler_id == holder
    assert job.heartbeat_at is not None and job.started_at is not None
    assert (job.heartbeat_at - job.started_at).total_seconds() >= 0.5  # beaten after the claim
    with closing(sqlite3.connect(searched.db.removeprefix("sqlite:///"))) as conn:
        kind, pid, started, beat, stopped = conn.execute(
            "SELECT kind, pid, started_at, heartbeat_at, stopped_at FROM schedulers WHERE id = ?",
            (holder,),
        ).fetchone()
    assert kind == "cli" and str(pid) in holder and stopped is not None and beat > started
    assert all(t["charged"] for t in searched.doc["trials"])
    assert searched.doc["strategy"] == "bo"


@pytest.mark.slow
def test_pareto_json_and_table(searched: SimpleNamespace) -> None:
    job_id = searched.doc["job_id"]
    front = [t["index"] for t in searched.doc["pareto"]]
    proc = run_cli("pareto", job_id, "--json", "--db", searched.db, env=searched.env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert sorted(t["index"] for t in listed) == sorted(front)
    accuracies = [t["accuracy"] for t in listed]  # most accurate first, as the API lists it
    assert accuracies == sorted(accuracies, reverse=True)

    table = run_cli("pareto", job_id, "--db", searched.db, env=searched.env)
    assert table.returncode == 0, table.stderr
    assert "Pareto front" in table.stdout and job_id in table.stdout


@pytest.mark.slow
def test_pull_onnx_of_the_default_trial_is_a_valid_model(
    searched: SimpleNamespace, tmp_path: Path
) -> None:
    import onnx

    job_id, best = searched.doc["job_id"], _best_front_trial(searched.doc)
    out = tmp_path / "nested" / "x.onnx"
    proc = run_cli(
        "pull",
        job_id,
        "--format",
        "onnx",
        "-o",
        out,
        "--db",
        searched.db,
        "--artifacts",
        searched.artifacts,
        env=searched.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert f"trial {best['index']}" in proc.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert out.read_bytes() == _stored_artifact(searched, best["index"], "onnx")


@pytest.mark.slow
def test_pull_state_dict_writes_the_stored_bytes(searched: SimpleNamespace, tmp_path: Path) -> None:
    job_id = searched.doc["job_id"]
    completed = [t for t in searched.doc["trials"] if t["status"] == "completed"]
    assert completed
    best = _best_front_trial(searched.doc)
    # Prefer a trial that is not the default one, so --trial is what picks it.
    trial = next((t for t in completed if t["index"] != best["index"]), completed[0])
    common = ["--db", searched.db, "--artifacts", searched.artifacts]

    out = tmp_path / "model.pt"
    proc = run_cli(
        "pull",
        job_id,
        "--format",
        "state_dict",
        "--trial",
        trial["index"],
        "-o",
        out,
        *common,
        env=searched.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == _stored_artifact(searched, trial["index"], "state_dict")

    # Without --trial: the most accurate trial on the front.
    default = tmp_path / "default.pt"
    proc = run_cli(
        "pull", job_id, "--format", "state_dict", "-o", default, *common, env=searched.env
    )
    assert proc.returncode == 0, proc.stderr
    assert default.read_bytes() == _stored_artifact(searched, best["index"], "state_dict")

    # The README's recipe: the bytes load into the network rebuilt from the effective spec.
    from sparsearch.worker.export import load_model

    load_model(best["effective_spec"], default.read_bytes())


@pytest.mark.slow
def test_pull_errors_on_a_real_job(searched: SimpleNamespace, tmp_path: Path) -> None:
    job_id = searched.doc["job_id"]
    cli = Cli(tmp_path)
    common = ["--db", searched.db, "--artifacts", searched.artifacts]
    out = tmp_path / "x.onnx"
    cli.fails(["pull", job_id, "--trial", "99", "-o", out, *common], "has no trial 99")
    cli.fails(["pull", job_id, "--format", "h5", "-o", out, *common], "unknown format 'h5'")
    assert not out.exists()
    cli.fails(["pull", job_id, "-o", tmp_path, *common], "cannot write", str(tmp_path))


@pytest.mark.slow
def test_search_without_json_prints_the_front_table(tmp_path: Path, ray_address: str) -> None:
    env = clean_env(
        SPARSEARCH_RAY_ADDRESS=ray_address, SPARSEARCH_ARTIFACT_DIR=str(tmp_path / "unused")
    )
    db_file = tmp_path / "t.db"
    proc = run_cli(
        *SEARCH_ARGS,
        "--db",
        sqlite_url(db_file),
        "--artifacts",
        tmp_path / "a",
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    ((job_id, status),) = job_rows(db_file)
    assert status == "completed"
    assert "Pareto front" in proc.stdout and job_id in proc.stdout
    assert not proc.stdout.lstrip().startswith("{")


# -- 4. db upgrade -----------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_and_is_idempotent(cli: Cli, tmp_path: Path) -> None:
    from sparsearch.storage import head_revision

    db_file = tmp_path / "new.db"
    for _ in range(2):
        result = cli("db", "upgrade", "--db", sqlite_url(db_file))
        assert result.exit_code == 0, result.output
        assert "up to date" in result.stderr
        with closing(sqlite3.connect(db_file)) as conn:
            tables = {
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert {"jobs", "trials", "artifacts", "alembic_version"} <= tables
        assert version == head_revision()
    assert job_rows(db_file) == []
