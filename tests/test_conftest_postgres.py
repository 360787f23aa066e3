"""tests/conftest.py finds PostgreSQL by itself: without ``SPARSEARCH_TEST_DATABASE_URL`` it
probes ``SPARSEARCH_TEST_PG_PROBE`` (default 127.0.0.1:5432), says in the summary which server
it used or why PostgreSQL tests were skipped, still fails under ``CI=true``, and leaves no test
database behind, even after a run that died without its teardown.

Each test runs a tiny test file in a pytest subprocess that uses a copy of the real conftest."""

from __future__ import annotations

import re
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from sparsearch.storage.engine import parse_url

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
COMMENT_OF_TINY = "sparsearch test database of tests/test_conftest_postgres.py"

# Writes the name of its session database to db.txt, so the parent can check it is dropped.
PG_TEST = """
import os, signal
from pathlib import Path

def test_on_postgres(postgres_session_url):
    from sqlalchemy.engine import make_url
    Path("db.txt").write_text(make_url(postgres_session_url).database)
    action = os.environ.get("TINY_ACTION")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # no teardown at all
    if action == "interrupt":
        raise KeyboardInterrupt  # what Ctrl-C does

def test_on_sqlite():
    pass
"""


@pytest.fixture
def tiny(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester directory with the real conftest and the tiny test file, and the database
    variables unset (each test sets what it probes).

    The copy marks its databases with a comment of its own, so that only tiny runs sweep the
    orphans tiny runs leave: the suite's other pytest-xdist processes sweep theirs at their
    start too, and would otherwise take the orphan a test leaves for its next run."""
    conftest = CONFTEST.read_text()
    marked = f'TEST_DB_COMMENT = "{COMMENT_OF_TINY} {uuid.uuid4().hex}"'
    tiny_conftest = re.sub(r"^TEST_DB_COMMENT = .*$", marked, conftest, count=1, flags=re.M)
    assert tiny_conftest != conftest, "tests/conftest.py no longer defines TEST_DB_COMMENT"
    pytester.makeconftest(tiny_conftest)
    pytester.makepyfile(test_tiny=PG_TEST)
    for var in ("SPARSEARCH_TEST_DATABASE_URL", "SPARSEARCH_TEST_PG_PROBE", "CI", "TINY_ACTION"):
        monkeypatch.delenv(var, raising=False)
    # The tiny runs need none of the installed plugins (hypothesis, schemathesis, xdist, …):
    # not loading them takes ~1.2 s off each of these subprocesses.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


def _run(pytester: pytest.Pytester) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-rs", "-p", "no:cacheprovider", timeout=120)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def _databases(admin_url: str) -> dict[str, str | None]:
    """Every sparsearch test database on the server, with its comment."""
    engine = create_engine(parse_url(admin_url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname LIKE 'sparsearch_test_%'"
                )
            )
            return {name: comment for name, comment in rows}
    finally:
        engine.dispose()


@pytest.fixture
def probe_target(postgres_admin_url: str) -> str:
    """host:port of the server this session uses, when the probe could find it there."""
    url = parse_url(postgres_admin_url)
    if url.username != "postgres" or url.password:
        pytest.skip("the probe only tries user postgres without a password")
    return f"{url.host or '127.0.0.1'}:{url.port or 5432}"


def test_nothing_listening_skips_and_says_why(tiny: pytest.Pytester, monkeypatch) -> None:
    port = _free_port()
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", f"127.0.0.1:{port}")
    result = _run(tiny)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            f"PostgreSQL tests skipped (1): no server answered on 127.0.0.1:{port} and "
            "SPARSEARCH_TEST_DATABASE_URL is unset — set it to run them",
        ]
    )
    result.stdout.no_fnmatch_line("PostgreSQL tests used*")


def test_probe_off_skips_and_says_so(tiny: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", "off")
    result = _run(tiny)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["PostgreSQL tests skipped (1): SPARSEARCH_TEST_PG_PROBE=off *"])


def test_ci_still_fails_without_a_server(tiny: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", f"127.0.0.1:{_free_port()}")
    monkeypatch.setenv("CI", "true")
    result = _run(tiny)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["PostgreSQL tests failed: no server answered on * — CI=true forbids skipping them"]
    )
    assert result.ret != 0


def test_no_postgres_test_no_probe_no_line(tiny: pytest.Pytester, monkeypatch) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", f"127.0.0.1:{_free_port()}")
    result = tiny.runpytest_subprocess("-k", "sqlite", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.no_fnmatch_line("PostgreSQL tests*")


def test_server_found_by_the_probe_is_used_and_its_database_dropped(
    tiny: pytest.Pytester, monkeypatch, probe_target: str, postgres_admin_url: str
) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", probe_target)
    result = _run(tiny)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            f"PostgreSQL tests used postgresql+psycopg://postgres@{probe_target}/* "
            f"(found on {probe_target}; SPARSEARCH_TEST_DATABASE_URL is unset)"
        ]
    )
    name = (tiny.path / "db.txt").read_text()
    assert name.startswith("sparsearch_test_")
    assert name not in _databases(postgres_admin_url)


def test_the_configured_url_wins_and_is_named(
    tiny: pytest.Pytester, monkeypatch, postgres_admin_url: str
) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_DATABASE_URL", postgres_admin_url)
    monkeypatch.setenv("SPARSEARCH_TEST_PG_PROBE", f"127.0.0.1:{_free_port()}")  # not used
    result = _run(tiny)
    result.assert_outcomes(passed=2)
    masked = parse_url(postgres_admin_url).render_as_string(hide_password=True)
    result.stdout.fnmatch_lines([f"PostgreSQL tests used {masked} (SPARSEARCH_TEST_DATABASE_URL)"])


def test_ctrl_c_still_drops_the_database(
    tiny: pytest.Pytester, monkeypatch, postgres_admin_url: str
) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_DATABASE_URL", postgres_admin_url)
    monkeypatch.setenv("TINY_ACTION", "interrupt")
    result = _run(tiny)
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*"])
    name = (tiny.path / "db.txt").read_text()
    assert name not in _databases(postgres_admin_url)


def test_the_next_run_drops_what_a_killed_run_left_and_keeps_live_ones(
    tiny: pytest.Pytester, monkeypatch, postgres_admin_url: str, fresh_postgres_url: str
) -> None:
    monkeypatch.setenv("SPARSEARCH_TEST_DATABASE_URL", postgres_admin_url)
    monkeypatch.setenv("TINY_ACTION", "kill")
    killed = _run(tiny)
    assert killed.ret == -9
    orphan = (tiny.path / "db.txt").read_text()
    assert orphan in _databases(postgres_admin_url)  # SIGKILL: nothing could drop it

    monkeypatch.delenv("TINY_ACTION")
    result = _run(tiny)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([f"PostgreSQL tests used * left by runs killed *{orphan}*"])
    left = _databases(postgres_admin_url)
    assert orphan not in left
    # This session's own databases (held open while it lives) survive the other run's sweep.
    assert parse_url(fresh_postgres_url).database in left
