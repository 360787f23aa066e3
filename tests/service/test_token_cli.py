"""``sparsearch token create|list|revoke``: the plaintext is printed once, alone on the last line
of stdout; only its hash is stored; a revoked token no longer authenticates."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sparsearch.cli import app
from sparsearch.storage import open_storage


@pytest.fixture
def cli(tmp_path):
    db = f"sqlite:///{tmp_path / 'tokens.db'}"
    env = {"SPARSEARCH_ARTIFACT_DIR": str(tmp_path / "artifacts")}
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [*args, "--db", db], env=env)

    invoke.db = db
    return invoke


def _storage(cli, tmp_path):
    return open_storage(cli.db, tmp_path / "artifacts")


def test_create_prints_the_token_alone_and_it_authenticates_until_revoked(cli, tmp_path):
    result = cli("token", "create", "--owner", "alice", "--name", "laptop")
    assert result.exit_code == 0, result.stderr
    token = result.stdout.splitlines()[-1]
    assert result.stdout == token + "\n"  # nothing else on stdout: `$(sparsearch token create)`
    assert token.strip() == token and len(token) >= 32
    assert token not in result.stderr
    assert "shown only now" in result.stderr

    with _storage(cli, tmp_path) as storage:
        assert storage.authenticate(token) == "alice"
        [info] = storage.list_tokens()
    assert token.startswith(info.prefix) and info.prefix != token  # only a prefix is kept

    listed = cli("token", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["owner"], row["name"], row["revoked_at"]) == (
        info.id,
        "alice",
        "laptop",
        None,
    )
    assert token not in listed.stdout
    table = cli("token", "list")
    assert table.exit_code == 0 and "alice" in table.stdout and "laptop" in table.stdout
    assert json.loads(cli("token", "list", "--owner", "bob", "--json").stdout) == []

    revoked = cli("token", "revoke", str(info.id))
    assert revoked.exit_code == 0, revoked.stderr
    assert f"revoked token {info.id}" in revoked.stderr
    with _storage(cli, tmp_path) as storage:
        assert storage.authenticate(token) is None
    [row] = json.loads(cli("token", "list", "--json").stdout)
    assert row["revoked_at"] is not None


def test_two_tokens_are_different_and_both_work(cli, tmp_path):
    first = cli("token", "create", "--owner", "alice").stdout.strip()
    second = cli("token", "create", "--owner", "alice").stdout.strip()
    assert first != second
    with _storage(cli, tmp_path) as storage:
        assert storage.authenticate(first) == storage.authenticate(second) == "alice"
        assert storage.authenticate(first + "x") is None


def test_bad_owner_and_unknown_token_are_clear_errors(cli):
    bad = cli("token", "create", "--owner", "no spaces allowed")
    assert bad.exit_code == 2
    assert "invalid owner" in bad.stderr and "hint:" in bad.stderr
    assert bad.stdout == ""
    missing = cli("token", "revoke", "999")
    assert missing.exit_code == 2
    assert "error:" in missing.stderr and "999" in missing.stderr
