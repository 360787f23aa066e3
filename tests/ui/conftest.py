"""Dashboard fixtures: the app over the parametrized storage (SQLite and PostgreSQL), a browser
(TestClient that does not follow redirects, so each 303 is seen), tokens, seeded jobs.
No training, no Ray: jobs and trials are written to storage directly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# api_helpers (seed_job) lives with the API tests; pytest puts only this folder on sys.path.
_API_TESTS = str(Path(__file__).resolve().parent.parent / "api")
if _API_TESTS not in sys.path:
    sys.path.insert(0, _API_TESTS)

from api_helpers import MAX_TRIALS, seed_job  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from ui_helpers import ACTIVE_JOBS, browser, sign_in  # noqa: E402

from sparsearch.api.app import create_app  # noqa: E402
from sparsearch.config import Settings  # noqa: E402


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url="sqlite://",
        artifact_dir=tmp_path / "artifacts",
        auth="on",
        max_trials=MAX_TRIALS,
        max_active_jobs_per_owner=ACTIVE_JOBS,
    )


@pytest.fixture
def app(settings: Settings, storage: Any) -> Any:
    return create_app(settings, storage=storage)


@pytest.fixture
def client(app: Any) -> Iterator[TestClient]:
    with browser(app) as c:
        yield c


@pytest.fixture
def alice_token(storage: Any) -> tuple[Any, str]:
    """alice's token: its record and plaintext."""
    return storage.create_token("alice", "laptop")


@pytest.fixture
def bob_token(storage: Any) -> tuple[Any, str]:
    return storage.create_token("bob")


@pytest.fixture
def alice(client: TestClient, alice_token: tuple[Any, str]) -> TestClient:
    """The browser, signed in as alice."""
    r = sign_in(client, alice_token[1])
    assert r.status_code == 303, r.text
    return client


@pytest.fixture
def api_alice(alice_token: tuple[Any, str]) -> dict[str, str]:
    """alice's bearer header, for the same request to the API."""
    return {"Authorization": f"Bearer {alice_token[1]}"}


@pytest.fixture
def alice_job(storage: Any) -> str:
    return seed_job(storage, "alice")
