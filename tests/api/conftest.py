"""API fixtures: an app over the parametrized storage (SQLite and PostgreSQL), tokens, and a
stored job with trials and real artifacts, made without training (fast)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_helpers import MAX_TRIALS, seed_job
from fastapi.testclient import TestClient

from sparsearch.api.app import create_app
from sparsearch.config import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        database_url="sqlite://",
        artifact_dir=tmp_path / "artifacts",
        auth="on",
        max_trials=MAX_TRIALS,
        max_active_jobs_per_owner=3,
    )


@pytest.fixture
def app(settings, storage) -> Any:
    return create_app(settings, storage=storage)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def alice(storage) -> dict[str, str]:
    _, token = storage.create_token("alice", "laptop")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def bob(storage) -> dict[str, str]:
    _, token = storage.create_token("bob")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def alice_job(storage) -> str:
    return seed_job(storage, "alice")
