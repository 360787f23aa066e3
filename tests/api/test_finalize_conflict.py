"""One finalize at a time per trial: a second finalize of a trial whose finalize job is still
active (queued, running or interrupted) is a 409 naming that job, also when the two requests
race; once it settled (completed, failed, cancelled) the trial can be finalized again. The CLI
says the same as ``error:`` / ``hint:``, against a server or a local database."""

from __future__ import annotations

import threading

import pytest
from typer.testing import CliRunner

from sparsearch.cli import app
from sparsearch.client import RemoteBackend


def _finalize(client, headers, job_id, trials):
    return client.post(f"/v1/jobs/{job_id}/finalize", json={"trials": trials}, headers=headers)


def test_a_trial_being_finalized_refuses_a_second_finalize_naming_the_first(
    client, alice, alice_job, storage
):
    first = _finalize(client, alice, alice_job, [0, 1])
    assert first.status_code == 202, first.text
    active = first.json()["id"]
    for trials in ([0], [1, 2]):  # any chosen trial in common
        r = _finalize(client, alice, alice_job, trials)
        assert r.status_code == 409, r.text
        problem = r.json()
        assert active in problem["detail"] and "being finalized" in problem["detail"]
        assert f"sparsearch cancel {active}" in problem["hint"]
    assert [t.index for t in storage.list_trials(alice_job) if t.final] == [0, 1]
    assert storage.get_trial(alice_job, 0).final["job"] == active  # not overwritten
    other = _finalize(client, alice, alice_job, [2])  # no trial in common
    assert other.status_code == 202, other.text
    # Running or interrupted (resumable) is still active.
    storage.set_job_status(active, "interrupted")
    assert _finalize(client, alice, alice_job, [0]).status_code == 409


@pytest.mark.parametrize("settled", ["cancelled", "completed", "failed"])
def test_once_the_finalize_settled_the_trial_can_be_finalized_again(
    client, alice, alice_job, storage, settled
):
    first = _finalize(client, alice, alice_job, [0]).json()["id"]
    if settled == "cancelled":
        assert client.post(f"/v1/jobs/{first}/cancel", headers=alice).status_code == 200
    else:
        storage.set_job_status(first, "running")
        storage.set_job_status(first, settled)
    again = _finalize(client, alice, alice_job, [0])
    assert again.status_code == 202, again.text
    assert storage.get_trial(alice_job, 0).final["job"] == again.json()["id"]


def test_concurrent_finalize_requests_of_one_trial_let_exactly_one_through(
    client, alice, alice_job, storage
):
    n = 6
    barrier = threading.Barrier(n)
    answers: list[tuple[int, str]] = []

    def post() -> None:
        barrier.wait()
        r = _finalize(client, alice, alice_job, [1])
        answers.append((r.status_code, r.json().get("detail", "")))

    threads = [threading.Thread(target=post) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(code for code, _ in answers) == [202] + [409] * (n - 1)
    (winner,) = [j.id for j in storage.list_jobs() if j.strategy == "finalize"]
    refused = [detail for code, detail in answers if code == 409]
    assert all(f"being finalized by job {winner}" in detail for detail in refused), refused


def test_the_cli_says_which_job_finalizes_the_trial_and_what_to_do(
    client, alice, alice_job, monkeypatch
):
    active = _finalize(client, alice, alice_job, [0]).json()["id"]

    def on_test_client(self, server, token, *, timeout=30.0):
        self.server, self._http = server, client

    monkeypatch.setattr(RemoteBackend, "__init__", on_test_client)
    client.headers.update(alice)
    result = CliRunner().invoke(
        app, ["finalize", alice_job, "--trials", "0", "--server", "http://testserver"]
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert f"error: trial 0 of job {alice_job} is being finalized by job {active}" in " ".join(
        result.stderr.split()
    )
    assert "hint:" in result.stderr and f"sparsearch cancel {active}" in result.stderr
