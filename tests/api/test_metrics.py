"""/metrics on SQLite and PostgreSQL: Prometheus text without a token, job/trial aggregates equal
to what is stored, request latency by route template, and no owner or job id anywhere."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from api_helpers import seed_job
from prometheus_client.parser import text_string_to_metric_families

from sparsearch.api.app import create_app
from sparsearch.api.metrics import GEN_SECONDS_BUCKETS, TRAIN_SECONDS_BUCKETS
from sparsearch.errors import StorageError
from sparsearch.storage import JOB_STATUSES, TRIAL_STATUSES
from sparsearch.vocabulary import STRATEGIES, TARGETS

FAMILIES = {
    "sparsearch_database_up",
    "sparsearch_jobs",
    "sparsearch_candidates_screened",
    "sparsearch_trials",
    "sparsearch_trials_uncharged",
    "sparsearch_trial_train_seconds",
    "sparsearch_candidate_generation_seconds",
    "sparsearch_http_request_duration_seconds",
}
LATENCY = "sparsearch_http_request_duration_seconds"


def scrape(client) -> dict[str, Any]:
    """Family name -> list of (sample name, labels, value)."""
    r = client.get("/metrics")
    assert r.status_code == 200
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(r.text)
    }


def by_label(samples, sample_name: str, label: str) -> dict[str, float]:
    """Values summed by one label (the others are summed over)."""
    sums: Counter = Counter()
    for name, lbl, v in samples:
        if name == sample_name:
            sums[lbl[label]] += v
    return dict(sums)


def by_labels(samples, sample_name: str, *labels: str) -> dict[tuple[str, ...], float]:
    return {tuple(lbl[x] for x in labels): v for name, lbl, v in samples if name == sample_name}


def histogram(samples, name: str) -> tuple[dict[str, float], float, float]:
    buckets = {lbl["le"]: v for n, lbl, v in samples if n == f"{name}_bucket"}
    (total,) = [v for n, _, v in samples if n == f"{name}_sum"]
    (count,) = [v for n, _, v in samples if n == f"{name}_count"]
    return buckets, total, count


def latency_counts(families) -> Counter:
    return Counter(
        {
            (lbl["method"], lbl["route"], lbl["status"]): v
            for name, lbl, v in families.get(LATENCY, [])
            if name == f"{LATENCY}_count"
        }
    )


def expected_histogram(values: list[float], bounds) -> tuple[dict[str, float], float, float]:
    buckets = {repr(float(b)): float(sum(v <= b for v in values)) for b in bounds}
    buckets["+Inf"] = float(len(values))
    return buckets, sum(values), float(len(values))


def _seed_more(storage) -> list[str]:
    """Two owners' completed jobs plus a running job whose trials cover the other statuses and
    timings that fall inside buckets, on their bounds and past the last one."""
    ids = [seed_job(storage, "alice"), seed_job(storage, "bob")]
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    job = storage.create_job(dataset="digits", config=cfg.to_dict(), owner="carol")
    storage.set_job_status(job.id, "running")
    common = dict(
        params={"n_blocks": 1},
        generator="MBM",
        estimates={"flash_bytes": 1000, "ram_bytes": 1000},
        feasible=True,
        pruning={"method": "none", "level": 0.0},
    )
    storage.add_trial(job.id, 0, status="running", gen_seconds=0.004, **common)
    storage.add_trial(job.id, 1, status="running", gen_seconds=75.0, **common)
    storage.finish_trial(job.id, 1, status="failed", metrics={}, error="x", train_seconds=45.5)
    storage.add_trial(job.id, 2, status="queued", gen_seconds=None, **common)
    storage.add_trial(job.id, 3, status="running", gen_seconds=1.0, **common)
    storage.finish_trial(
        job.id, 3, status="completed", metrics={"accuracy": 0.5}, train_seconds=5000.0
    )
    cancelled = storage.create_job(dataset="digits", config=cfg.to_dict(), owner="carol")
    storage.request_cancel(cancelled.id)
    storage.add_trial(job.id, 4, status="failed", gen_seconds=None, charged=False, **common)
    storage.add_trial(job.id, 5, status="running", gen_seconds=2.0, **common)
    storage.finish_trial(job.id, 5, status="stopped", metrics={"accuracy": 0.2}, train_seconds=3.0)
    storage.update_job_summary(job.id, hypervolume=None, best_accuracy=None, screened=4)
    other = JobConfig.create(
        dataset="digits",
        flash_bytes=24576,
        ram_bytes=6144,
        trials=3,
        strategy="random",
        target="tflm",
    )
    queued = storage.create_job(dataset="digits", config=other.to_dict(), owner="dave")
    storage.update_job_summary(queued.id, hypervolume=None, best_accuracy=None, screened=7)
    on_c = JobConfig.create(
        dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3, strategy="random", target="c"
    )
    c_job = storage.create_job(dataset="digits", config=on_c.to_dict(), owner="dave")
    legacy = {k: v for k, v in other.to_dict().items() if k != "target"}  # stored before targets
    old = storage.create_job(dataset="digits", config=legacy, owner="dave")
    return [*ids, job.id, cancelled.id, queued.id, c_job.id, old.id]


def test_metrics_is_prometheus_text_without_a_token(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = scrape(client)
    assert set(families) >= FAMILIES
    assert by_labels(
        families["sparsearch_jobs"], "sparsearch_jobs", "status", "strategy", "target"
    ) == {(s, name, t): 0.0 for s in JOB_STATUSES for name in STRATEGIES for t in TARGETS}
    assert by_label(families["sparsearch_trials"], "sparsearch_trials", "status") == {
        s: 0.0 for s in TRIAL_STATUSES
    }
    assert families["sparsearch_database_up"] == [("sparsearch_database_up", {}, 1.0)]
    assert "/metrics" not in client.get("/openapi.json").json()["paths"]


def test_gauges_and_histograms_equal_what_is_stored(client, storage):
    _seed_more(storage)
    jobs = storage.list_jobs(limit=1000)
    trials = [t for j in jobs for t in storage.list_trials(j.id)]
    families = scrape(client)

    expected_jobs = {s: 0.0 for s in JOB_STATUSES} | Counter(j.status for j in jobs)
    assert by_label(families["sparsearch_jobs"], "sparsearch_jobs", "status") == expected_jobs
    assert expected_jobs["completed"] == 2 and expected_jobs["cancelled"] == 1
    triples = {(s, name, t): 0.0 for s in JOB_STATUSES for name in STRATEGIES for t in TARGETS}
    triples |= Counter((j.status, j.strategy, j.target) for j in jobs)
    labels = ("status", "strategy", "target")
    assert by_labels(families["sparsearch_jobs"], "sparsearch_jobs", *labels) == triples
    # A job on c, and one stored before targets (counted as tflm) beside one that says tflm.
    assert triples[("queued", "random", "c")] == 1 and triples[("queued", "random", "tflm")] == 2
    assert triples[("queued", "bo", "tflm")] == 0 and triples[("queued", "bo", "c")] == 0
    screened = by_label(
        families["sparsearch_candidates_screened"], "sparsearch_candidates_screened", "strategy"
    )
    assert screened == dict.fromkeys(STRATEGIES, 0.0) | {"bo": 4.0, "random": 7.0}
    assert families["sparsearch_trials_uncharged"] == [("sparsearch_trials_uncharged", {}, 1.0)]
    expected_trials = {s: 0.0 for s in TRIAL_STATUSES} | Counter(t.status for t in trials)
    assert by_label(families["sparsearch_trials"], "sparsearch_trials", "status") == (
        expected_trials
    )
    assert all(expected_trials[s] for s in TRIAL_STATUSES)  # every status is exercised

    for family, attr, bounds in (
        ("sparsearch_trial_train_seconds", "train_seconds", TRAIN_SECONDS_BUCKETS),
        ("sparsearch_candidate_generation_seconds", "gen_seconds", GEN_SECONDS_BUCKETS),
    ):
        values = [getattr(t, attr) for t in trials if getattr(t, attr) is not None]
        want_buckets, want_sum, want_count = expected_histogram(values, bounds)
        buckets, total, count = histogram(families[family], family)
        assert buckets == want_buckets, family
        assert total == pytest.approx(want_sum), family
        assert count == want_count, family
    # The seeded values sit on bucket bounds (1.0 s) and past the last one (5000 s).
    name = "sparsearch_trial_train_seconds"
    train, _, _ = histogram(families[name], name)
    assert train["1.0"] == 6 and train["3600.0"] == 8 and train["+Inf"] == 9


def test_storage_aggregates_match_for_empty_buckets(storage):
    assert storage.trial_seconds("train_seconds", (1.0, 2.0)) == ([0, 0], 0.0, 0)
    with pytest.raises(ValueError):
        storage.trial_seconds("accuracy", (1.0,))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        storage.trial_seconds("gen_seconds", (2.0, 1.0))


def test_request_latency_is_counted_by_route_template(client, alice, alice_job):
    before = latency_counts(scrape(client))
    for _ in range(2):
        assert client.get(f"/v1/jobs/{alice_job}", headers=alice).status_code == 200
    assert client.get("/v1/jobs/no-such-job", headers=alice).status_code == 404
    assert client.get(f"/v1/jobs/{alice_job}/trials/1", headers=alice).status_code == 200
    assert client.get("/v1/jobs").status_code == 401
    assert client.get(f"/no/such/{alice_job}").status_code == 404
    assert client.delete("/healthz").status_code == 405
    after = latency_counts(scrape(client))

    delta = after - before
    assert delta[("GET", "/v1/jobs/{job_id}", "200")] == 2
    assert delta[("GET", "/v1/jobs/{job_id}", "404")] == 1
    assert delta[("GET", "/v1/jobs/{job_id}/trials/{index}", "200")] == 1
    assert delta[("GET", "/v1/jobs", "401")] == 1
    assert delta[("GET", "unmatched", "404")] == 1
    assert delta[("DELETE", "/healthz", "405")] == 1
    assert delta[("GET", "/metrics", "200")] == 1  # the first scrape, seen by the second
    assert sum(delta.values()) == 8


def test_no_owner_or_job_id_appears(client, storage, alice, alice_job):
    ids = _seed_more(storage)
    tokens = storage.list_tokens()
    for job_id in [alice_job, *ids]:
        client.get(f"/v1/jobs/{job_id}", headers=alice)
        client.get(f"/v1/jobs/{job_id}/trials/0/artifacts/onnx", headers=alice)
        client.get(f"/whatever/{job_id}")
    text = client.get("/metrics").text
    secrets = [alice_job, *ids, "alice", "bob", "carol", "dave", *(t.prefix for t in tokens)]
    assert [s for s in secrets if s in text] == []


class _BrokenStorage:
    """A storage whose database is down."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("database unreachable", "start it")

        return fail


def test_metrics_answers_when_the_database_is_down(settings):
    from fastapi.testclient import TestClient

    with TestClient(create_app(settings, storage=_BrokenStorage())) as client:
        families = scrape(client)
    assert families["sparsearch_database_up"] == [("sparsearch_database_up", {}, 0.0)]
    assert "sparsearch_jobs" not in families
    assert LATENCY in families


def test_each_app_has_its_own_registry(settings, storage):
    from fastapi.testclient import TestClient

    apps = [create_app(settings, storage=storage) for _ in range(2)]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        first.get("/healthz")
        assert latency_counts(scrape(second))[("GET", "/healthz", "200")] == 0
        assert latency_counts(scrape(first))[("GET", "/healthz", "200")] == 1
