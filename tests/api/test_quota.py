"""``POST /v1/jobs`` fired concurrently by one owner (SQLite and PostgreSQL): exactly the
server's active-job cap (3 in these tests) succeeds and every other submission is a 409, even
with every count of the owner's jobs slowed down (a check-then-insert race would let them all
through)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from api_helpers import JOB_BODY
from sqlalchemy import event


def test_concurrent_submissions_get_exactly_the_cap(client, alice, settings, storage):
    cap, n = settings.max_active_jobs_per_owner, 8
    barrier = threading.Barrier(n)

    def slow_count(_conn, _cursor, statement, *_args) -> None:
        flat = " ".join(statement.split())
        if flat.startswith("SELECT count(*)") and "FROM jobs" in flat and "jobs.owner" in flat:
            time.sleep(0.2)

    def submit(_: int) -> int:
        barrier.wait()
        return client.post("/v1/jobs", json=JOB_BODY, headers=alice).status_code

    event.listen(storage._engine, "after_cursor_execute", slow_count)
    try:
        with ThreadPoolExecutor(n) as pool:
            statuses = sorted(pool.map(submit, range(n)))
    finally:
        event.remove(storage._engine, "after_cursor_execute", slow_count)
    assert statuses == [201] * cap + [409] * (n - cap)
    assert storage.count_active_jobs("alice") == cap
    r = client.post("/v1/jobs", json=JOB_BODY, headers=alice)
    assert r.status_code == 409
    assert "already has 3 active jobs" in r.json()["detail"] and r.json()["hint"]
