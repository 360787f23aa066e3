"""Helpers of the command-line tests: the installed ``sparsearch`` as a subprocess with a clean
environment, an in-process Typer runner whose settings point into tmp_path, and the small
search the real-search tests share."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

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
