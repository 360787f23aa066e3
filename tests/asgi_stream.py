"""Requests sent straight to an ASGI app with a ``receive`` that counts the body chunks it hands
out, so that a test can tell exactly how much of a body the app read ("not read" is 0).

Lives at the top of ``tests/`` (on ``sys.path`` through ``tests/conftest.py``):
``from asgi_stream import stream``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio


@dataclass(frozen=True)
class Streamed:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    pulled: int  # body chunks the app received


def stream(
    app: Any, method: str, path: str, headers: list[tuple[str, str]], n_chunks: int, chunk: bytes
) -> Streamed:
    """Offer ``n_chunks`` chunks of ``chunk`` as the body of ``method path`` (no
    Content-Length unless ``headers`` has one) from client 127.0.0.1."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled == n_chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    messages: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    found = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    return Streamed(start["status"], found, body, pulled)
