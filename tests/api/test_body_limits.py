"""Request bodies are capped and tokens checked before any body is read (``api/guard.py``), on
SQLite and PostgreSQL: a JSON body over ``SPARSEARCH_MAX_BODY_KB`` is a 413 (by Content-Length,
or once the streamed bytes pass the cap), uploads keep ``SPARSEARCH_MAX_UPLOAD_MB``, and a
request without a valid token is a 401 whose body was never received.

The streaming tests call the ASGI app directly with a ``receive`` that counts the chunks it
hands out, so "not read" is an exact count, not a timing."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from api_helpers import JOB_BODY
from fastapi.testclient import TestClient

from asgi_stream import stream
from sparsearch.api.app import create_app
from sparsearch.config import Settings

BODY_KB = 4
CAP = BODY_KB * 1024
CHUNK = 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The API tests' settings with small caps."""
    return settings.model_copy(update={"max_body_kb": BODY_KB, "max_upload_mb": 1})


def call(app, method: str, path: str, headers: dict[str, str], n_chunks: int, chunk: bytes):
    """Send ``n_chunks`` chunks (no Content-Length unless ``headers`` has one) straight to the
    ASGI app; (status, JSON body, chunks the app received)."""
    r = stream(app, method, path, list(headers.items()), n_chunks, chunk)
    return r.status, json.loads(r.body), r.pulled


def _assert_body_413(r_json: dict) -> None:
    assert f"{BODY_KB} KiB" in r_json["detail"] and f"{CAP:,} bytes" in r_json["detail"]
    assert "SPARSEARCH_MAX_BODY_KB" in r_json["hint"]


# -- caps ----------------------------------------------------------------------------------------


def test_json_body_over_the_cap_by_content_length_is_413(client, alice, storage):
    padded = json.dumps(JOB_BODY).encode() + b" " * CAP  # valid JSON, over the cap
    r = client.post(
        "/v1/jobs", content=padded, headers={**alice, "Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    _assert_body_413(r.json())
    assert storage.count_jobs() == 0
    # Just under the cap it is an ordinary job.
    fits = json.dumps(JOB_BODY).encode().ljust(CAP)
    r = client.post("/v1/jobs", content=fits, headers={**alice, "Content-Type": "application/json"})
    assert r.status_code == 201, r.text


def test_chunked_json_body_over_the_cap_is_413(client, alice, storage):
    def body():  # a generator: httpx sends it chunked, with no Content-Length
        yield json.dumps(JOB_BODY).encode()
        for _ in range(2 * CAP // CHUNK):
            yield b" " * CHUNK

    r = client.post(
        "/v1/jobs", content=body(), headers={**alice, "Content-Type": "application/json"}
    )
    assert r.status_code == 413, r.text
    _assert_body_413(r.json())
    assert storage.count_jobs() == 0


def test_streamed_body_stops_being_read_at_the_cap(app, alice):
    n = 10_000  # 10 MiB offered
    headers = {**alice, "content-type": "application/json"}
    status, body, pulled = call(app, "POST", "/v1/jobs", headers, n, b" " * CHUNK)
    assert status == 413
    _assert_body_413(body)
    assert pulled == CAP // CHUNK + 1  # the chunk that passed the cap, and not one more


def test_declared_length_over_the_cap_reads_nothing(app, alice):
    headers = {**alice, "content-type": "application/json", "content-length": str(10 * CAP)}
    status, body, pulled = call(app, "POST", "/v1/jobs", headers, 10, b" " * CAP)
    assert (status, pulled) == (413, 0)
    _assert_body_413(body)


def _npz(n_train: int = 40) -> bytes:
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 8, 8), dtype=np.uint8),
        "y_train": np.arange(n_train) % 4,
        "x_test": rng.integers(0, 256, (12, 8, 8), dtype=np.uint8),
        "y_test": np.arange(12) % 4,
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def test_uploads_have_the_upload_cap_not_the_json_one(client, alice):
    data = _npz(n_train=400)  # ~30 KiB: over the JSON cap, well under the 1 MiB upload cap
    assert len(data) > CAP
    r = client.post("/v1/datasets", files={"file": ("d.npz", data)}, headers=alice)
    assert r.status_code == 201, r.text
    r = client.post("/v1/datasets", files={"file": ("d.npz", bytes(2 << 20))}, headers=alice)
    assert r.status_code == 413
    assert "1 MiB" in r.json()["detail"] and "SPARSEARCH_MAX_UPLOAD_MB" in r.json()["hint"]


# -- authentication before the body --------------------------------------------------------------


@pytest.mark.parametrize(
    "path, content_type",
    [("/v1/jobs", "application/json"), ("/v1/datasets", "multipart/form-data; boundary=x")],
)
@pytest.mark.parametrize("token", [None, "Bearer nope", "Basic YTpi"])
def test_no_valid_token_is_401_before_the_body_is_read(app, path, content_type, token):
    headers = {"content-type": content_type}
    if token:
        headers["authorization"] = token
    status, body, pulled = call(app, "POST", path, headers, 2048, b"x" * CHUNK)  # 2 MiB offered
    assert status == 401 and "token" in body["detail"]
    assert pulled == 0  # not one chunk received
    with_length = {**headers, "content-length": str(200 << 20)}  # 200 MB declared
    status, _, pulled = call(app, "POST", path, with_length, 2048, b"x" * CHUNK)
    assert (status, pulled) == (401, 0)


def test_401_keeps_its_challenge_and_route_label(client):
    r = client.post(
        "/v1/jobs", content=b"x" * (10 * CAP), headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json() == {"detail": "missing bearer token"}
    metrics = client.get("/metrics").text  # public
    assert 'route="/v1/jobs",status="401"' in metrics


def test_public_routes_need_no_token(client):
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200


def test_auth_off_still_caps_bodies(settings, storage):
    app = create_app(settings.model_copy(update={"auth": "off"}), storage=storage)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/v1/jobs", json=JOB_BODY)
        assert r.status_code == 201 and r.json()["owner"] == "local"
        padded = json.dumps(JOB_BODY).encode() + b" " * CAP
        r = c.post("/v1/jobs", content=padded, headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_413_is_in_the_schema(client):
    schema = client.get("/openapi.json").json()
    assert "413" in schema["paths"]["/v1/jobs"]["post"]["responses"]
    assert "413" in schema["paths"]["/v1/datasets"]["post"]["responses"]
