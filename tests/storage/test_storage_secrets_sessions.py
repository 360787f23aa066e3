"""What the dashboard's sessions stand on — SQLite and PostgreSQL: server secrets that every
process agrees on (``secret``, racing included), a token's login record (``token_login``) and
the per-request check that it still holds (``token_owner``)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from sparsearch.storage import Storage, TokenInfo, open_storage


def _url(storage: Storage) -> str:
    return storage._engine.url.render_as_string(hide_password=False)


def test_secret_is_made_once_and_kept(storage: Storage, tmp_path: Path) -> None:
    made: list[str] = []

    def make() -> str:
        made.append(f"value-{len(made)}")
        return made[-1]

    assert storage.secret("cookie-key", make) == "value-0"
    assert storage.secret("cookie-key", make) == "value-0"
    assert made == ["value-0"]  # not called once a value is stored
    assert storage.secret("other", lambda: "another") == "another"  # names are independent
    with open_storage(_url(storage), tmp_path / "art2") as restarted:  # another process, later
        assert restarted.secret("cookie-key", make) == "value-0"
    assert made == ["value-0"]


def test_secret_refuses_bad_names_and_values(storage: Storage) -> None:
    for name in ("", "n" * 65, "line\nbreak", None):
        with pytest.raises(ValueError, match="invalid secret name"):
            storage.secret(name, lambda: "v")  # type: ignore[arg-type]
    for value in ("", None, b"bytes", 42):
        with pytest.raises(TypeError, match="non-empty str"):
            storage.secret("k", lambda value=value: value)  # type: ignore[misc]
    assert storage.secret("k", lambda: "kept") == "kept"  # nothing was stored before


def test_two_storages_racing_for_a_first_secret_agree(storage: Storage, tmp_path: Path) -> None:
    """Both find no value and make one (a barrier holds each in ``make`` until the other got
    there too), both insert: one insert wins, the other's unique violation is caught, and both
    return the stored value."""
    both_made = threading.Barrier(2, timeout=30)

    def racer(st: Storage, value: str) -> str:
        def make() -> str:
            both_made.wait()
            return value

        return st.secret("cookie-key", make)

    other = open_storage(_url(storage), tmp_path / "art2")
    try:
        with ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(racer, st, v) for st, v in ((storage, "a"), (other, "b"))]
            results = [f.result(timeout=60) for f in futures]
        stored = storage.secret("cookie-key", lambda: "never")
        assert results == [stored, stored] and stored in {"a", "b"}
        assert other.secret("cookie-key", lambda: "never") == stored
    finally:
        other.close()


def test_token_login_returns_the_tokens_record(storage: Storage) -> None:
    created, plaintext = storage.create_token("alice", "laptop")
    info = storage.token_login(plaintext)
    assert isinstance(info, TokenInfo)
    assert (info.id, info.owner, info.name, info.prefix) == (
        created.id, "alice", "laptop", created.prefix,
    )  # fmt: skip
    assert info.created_at == created.created_at and info.revoked_at is None
    assert info.last_used_at is not None  # a login is a use
    assert storage.list_tokens()[0].last_used_at == info.last_used_at
    again = storage.token_login(plaintext)  # within LAST_USED_RESOLUTION: not written again
    assert again is not None and again.last_used_at == info.last_used_at
    assert storage.authenticate(plaintext) == "alice"
    assert storage.token_owner(info.id) == "alice"


def test_revoking_a_token_ends_its_logins_and_sessions(storage: Storage) -> None:
    created, plaintext = storage.create_token("alice")
    kept, kept_plaintext = storage.create_token("alice", "other")
    assert storage.token_owner(created.id) == "alice"
    storage.revoke_token(created.id)
    assert storage.token_login(plaintext) is None
    assert storage.token_owner(created.id) is None
    assert storage.authenticate(plaintext) is None
    token = storage.token_login(kept_plaintext)  # the owner's other tokens are untouched
    assert token is not None and token.id == kept.id
    assert storage.token_owner(kept.id) == "alice"


def test_unknown_and_garbage_tokens(storage: Storage) -> None:
    created, plaintext = storage.create_token("bob")
    unknown = "ssk_" + "A" * 43
    garbage = [
        unknown, plaintext[:-1], plaintext + "x", plaintext.upper(), "", "ssk_", "Bearer x",
        "ssk_ünïcode", "ssk_" + "a" * 300, "\x00", None, 42, b"ssk_bytes", [plaintext],
    ]  # fmt: skip
    for value in garbage:
        assert storage.token_login(value) is None, value  # type: ignore[arg-type]
    for token_id in (created.id + 1, 0, -1, 2**31, 2**63, 10**30, None, "1", 1.0, True, [1]):
        assert storage.token_owner(token_id) is None, token_id  # type: ignore[arg-type]
    assert storage.token_owner(created.id) == "bob"
