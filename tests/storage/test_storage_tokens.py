"""API tokens: create, authenticate, revoke, last-used throttle, garbage — SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sparsearch.errors import NotFoundError
from sparsearch.storage import Storage
from sparsearch.storage.models import Token, utcnow


def stored_rows(storage: Storage) -> list[Token]:
    with Session(storage._engine) as s:
        return list(s.scalars(select(Token).order_by(Token.id)))


def backdate_last_used(storage: Storage, token_id: int, seconds: float) -> None:
    with Session(storage._engine) as s:
        s.execute(
            update(Token)
            .where(Token.id == token_id)
            .values(last_used_at=utcnow() - timedelta(seconds=seconds))
        )
        s.commit()


def test_create_stores_only_the_hash(storage: Storage) -> None:
    info, plaintext = storage.create_token("alice", "laptop")
    assert plaintext.startswith("ssk_") and len(plaintext) == 47
    assert info.prefix == plaintext[:12] and info.owner == "alice" and info.name == "laptop"
    assert info.revoked_at is None and info.last_used_at is None and not info.revoked
    (row,) = stored_rows(storage)
    assert row.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
    assert plaintext not in {row.token_hash, row.prefix, row.name}
    data = json.loads(json.dumps(info.to_json()))
    assert set(data) == {
        "id", "owner", "name", "prefix", "created_at", "revoked_at", "last_used_at",
    }  # fmt: skip
    assert plaintext not in json.dumps(data)
    other, second = storage.create_token("alice")
    assert second != plaintext and other.name == "default" and other.id != info.id


def test_invalid_owner_or_name(storage: Storage) -> None:
    for owner in ("", "x" * 65, "a b", "nul\x00", "ünï", None):
        with pytest.raises(ValueError, match="invalid owner"):
            storage.create_token(owner)
    for name in ("", "n" * 129, "line\nbreak"):
        with pytest.raises(ValueError, match="invalid name"):
            storage.create_token("alice", name)
    assert storage.list_tokens() == []


def test_authenticate_and_last_used_throttle(storage: Storage) -> None:
    info, plaintext = storage.create_token("bob")
    assert storage.authenticate(plaintext) == "bob"
    (first,) = storage.list_tokens("bob")
    assert first.last_used_at is not None and first.last_used_at >= info.created_at
    assert storage.authenticate(plaintext) == "bob"
    assert storage.list_tokens("bob")[0].last_used_at == first.last_used_at  # no write
    backdate_last_used(storage, info.id, 30)
    stale = storage.list_tokens("bob")[0].last_used_at
    assert storage.authenticate(plaintext) == "bob"
    assert storage.list_tokens("bob")[0].last_used_at == stale  # 30 s < one minute
    backdate_last_used(storage, info.id, 61)
    old = storage.list_tokens("bob")[0].last_used_at
    assert storage.authenticate(plaintext) == "bob"
    assert storage.list_tokens("bob")[0].last_used_at > old + timedelta(seconds=60)


def test_revoke(storage: Storage) -> None:
    info, plaintext = storage.create_token("carol")
    kept, kept_plain = storage.create_token("dave")
    revoked = storage.revoke_token(info.id)
    assert revoked.revoked and revoked.id == info.id
    assert storage.authenticate(plaintext) is None
    assert storage.authenticate(kept_plain) == "dave"
    assert storage.revoke_token(info.id) == revoked  # idempotent, first time kept
    assert [t.id for t in storage.list_tokens("carol")] == [info.id]  # revoked ones listed
    assert [t.owner for t in storage.list_tokens()] == ["carol", "dave"]
    with pytest.raises(NotFoundError, match="does not exist"):
        storage.revoke_token(kept.id, owner="carol")
    assert storage.authenticate(kept_plain) == "dave"
    for bad in (9999, -1, "1", None):
        with pytest.raises(NotFoundError):
            storage.revoke_token(bad)


def test_garbage_never_authenticates(storage: Storage) -> None:
    _, plaintext = storage.create_token("erin")
    garbage = [
        "", "ssk_", "ssk", "x" * 10_000, "ssk_" + "a" * 100_000, "ssk_ünïcode", "\x00",
        plaintext + "x", plaintext[:-1], plaintext.upper(), f"Bearer {plaintext}",
        f" {plaintext}", plaintext + "\x00", None, 123, plaintext.encode(), ["ssk_"],
    ]  # fmt: skip
    for value in garbage:
        assert storage.authenticate(value) is None, repr(value)[:40]
    assert storage.list_tokens()[0].last_used_at is None
    assert storage.authenticate(plaintext) == "erin"
