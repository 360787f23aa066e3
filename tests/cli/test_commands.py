"""The ``sparsearch`` command line: help, start-up, bad input and ``db upgrade``.

Fast error cases run in-process through Typer's ``CliRunner``; whatever depends on the process
(start-up imports, stdout purity) runs ``.venv/bin/sparsearch`` as a subprocess. A real search
and the commands that read it (``jobs``, ``pareto``, ``pull``) are in tests/cli/test_real_search.py.
Every database and artifact folder lives under ``tmp_path``.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import (
    COMMANDS,
    HEAVY_MODULES,
    UNREACHABLE_DB,
    Cli,
    assert_clean_failure,
    clean_env,
    job_rows,
    run_cli,
    sqlite_url,
)


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
