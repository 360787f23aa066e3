"""An unexpected exception in any CLI command is an ``error:`` / ``hint:`` pair, never a
traceback; ``--debug`` or ``SPARSEARCH_LOG_LEVEL=DEBUG`` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# A command whose body meets an exception nobody anticipated (here: the backend lookup).
SCRIPT = """
import sys
import sparsearch.cli.jobs as jobs
def broken(*args, **kwargs):
    raise RuntimeError("disk on fire")
jobs.backend = broken
from sparsearch.cli import app
app(sys.argv[1:], prog_name="sparsearch")
"""


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unexpected_exception_is_an_error_and_a_hint() -> None:
    proc = _run("jobs")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "error: unexpected RuntimeError: disk on fire" in proc.stderr
    assert "hint:" in proc.stderr and "--debug" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args, env",
    [(("--debug", "jobs"), {}), (("jobs",), {"SPARSEARCH_LOG_LEVEL": "DEBUG"})],
    ids=["--debug", "SPARSEARCH_LOG_LEVEL=DEBUG"],
)
def test_debug_shows_the_traceback(args: tuple[str, ...], env: dict[str, str]) -> None:
    proc = _run(*args, **env)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "RuntimeError: disk on fire" in proc.stderr


def test_errors_the_cli_expects_keep_their_exit_code() -> None:
    proc = _run("jobs", "--limit", "0")  # validated before the backend is looked up
    assert proc.returncode == 2 and "error: --limit must be from 1 to 1000" in proc.stderr
