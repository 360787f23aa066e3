"""Prometheus metrics of the API: aggregates read from the database at scrape time, and the
latency of this process's requests.

Every app gets its own ``CollectorRegistry`` (never prometheus_client's global one), so many
apps in one process (tests) do not collide. Labels are bounded and carry no owner data: job
and trial statuses, search strategy and target names, HTTP method, status code and the *route
template* (``/v1/jobs/{job_id}``, never the raw path; anything no route matches is
``unmatched``).

Jobs and trials are counted from the database, not in memory: trials are generated and
trained in scheduler processes, so the database is the only place every process agrees on.

Under ``serve --workers N`` each worker process observes only its own requests; ``serve`` then
sets ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode: every process writes
its histogram to a file there) and a scrape, answered by any one worker, sums them all.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sparsearch.api.routes import metrics as metrics_route
from sparsearch.errors import StorageError

log = logging.getLogger(__name__)

#: Upper bounds (seconds) of the trial training histogram: a trial trains for seconds to an hour.
TRAIN_SECONDS_BUCKETS: tuple[float, ...] = (1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
#: Upper bounds (seconds) of the candidate generation histogram (Sobol: ms; model fits: s).
GEN_SECONDS_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Upper bounds (seconds) of the request latency histogram.
REQUEST_SECONDS_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip
#: Route label of a request no route matches (404s for arbitrary paths stay one series).
UNMATCHED = "unmatched"
#: prometheus_client's multiprocess mode: read when it is imported, so set before a worker starts.
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _le(bound: float) -> str:
    return repr(float(bound))


class StorageCollector(Collector):
    """Reads job/trial aggregates from storage on every scrape.

    ``sparsearch_database_up`` is 0 (and the database families are left out) when the
    database cannot be read, so a scrape still answers and alerts can fire on it.
    """

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "sparsearch_database_up", "1 if the database answered this scrape, else 0"
        )
        try:
            families = list(self._families())
        except StorageError as e:
            log.warning("metrics: cannot read the database: %s", e.message)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _families(self) -> Iterator[Metric]:
        st = self._storage
        jobs = GaugeMetricFamily(
            "sparsearch_jobs",
            "Jobs by status, search strategy and deployment target",
            labels=["status", "strategy", "target"],
        )
        for (status, strategy, target), n in st.job_counts().items():
            jobs.add_metric([status, strategy, target], n)
        yield jobs
        screened = GaugeMetricFamily(
            "sparsearch_candidates_screened",
            "Candidates rejected by estimate before being stored as trials, summed over the "
            "jobs of each search strategy",
            labels=["strategy"],
        )
        for strategy, n in st.screened_counts().items():
            screened.add_metric([strategy], n)
        yield screened
        trials = GaugeMetricFamily(
            "sparsearch_trials", "Trials of all jobs by status", labels=["status"]
        )
        for status, n in st.trial_status_counts().items():
            trials.add_metric([status], n)
        yield trials
        yield GaugeMetricFamily(
            "sparsearch_trials_uncharged",
            "Trials of all jobs cut short by a graceful stop: failed, counted against no budget",
            value=st.uncharged_trial_count(),
        )
        yield _histogram(
            st,
            "train_seconds",
            TRAIN_SECONDS_BUCKETS,
            "sparsearch_trial_train_seconds",
            "Training time of stored trials (train, prune, fine-tune, evaluate, export)",
        )
        yield _histogram(
            st,
            "gen_seconds",
            GEN_SECONDS_BUCKETS,
            "sparsearch_candidate_generation_seconds",
            "Time the optimizer took to generate each stored candidate",
        )


def _histogram(
    storage: Any, column: str, bounds: tuple[float, ...], name: str, doc: str
) -> HistogramMetricFamily:
    counts, total, count = storage.trial_seconds(column, bounds)
    buckets = [(_le(b), c) for b, c in zip(bounds, counts, strict=True)]
    buckets.append(("+Inf", count))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


@dataclass(frozen=True)
class Metrics:
    """One app's registry and the instruments the API process updates itself."""

    registry: CollectorRegistry
    request_seconds: Histogram


def build_metrics(storage: Any) -> Metrics:
    # No auto-describe: it would call collect() (a database query) at registration.
    registry = CollectorRegistry()
    registry.register(StorageCollector(storage))
    instruments = registry
    shared_dir = os.environ.get(MULTIPROCESS_DIR_ENV)
    if shared_dir:
        # One of several workers: its histogram lives in the shared directory, and the scrape
        # registry reads every worker's file from there instead of this process's values.
        instruments = CollectorRegistry()
        MultiProcessCollector(registry, path=shared_dir)
    request_seconds = Histogram(
        "sparsearch_http_request_duration_seconds",
        "HTTP request latency by method, route template and status code",
        labelnames=("method", "route", "status"),
        buckets=REQUEST_SECONDS_BUCKETS,
        registry=instruments,
    )
    return Metrics(registry=registry, request_seconds=request_seconds)


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (``unmatched`` if none did).

    Read after the app ran: the router records the route it chose in ``scope["route"]`` (also
    for a path whose method is not allowed, a 405). FastAPI's own pages (``/docs``,
    ``/openapi.json``) are plain routes it does not record, so those are matched here."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    for candidate in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        path = getattr(candidate, "path", None)
        if isinstance(path, str) and candidate.matches(scope)[0] != Match.NONE:
            return path
    return UNMATCHED


class RequestMetricsMiddleware:
    """Pure ASGI middleware: observes each HTTP request's duration (the whole call, a streamed
    body included) under its method, route template and response status."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "GET").upper()
        if method not in _METHODS:
            method = "other"
        status = 500  # unless the app starts a response (an exception escapes otherwise)

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            self.histogram.labels(method, route_template(scope), str(status)).observe(elapsed)


def install_metrics(app: Any, storage: Any) -> Metrics:
    """Give ``app`` its registry (``app.state.metrics``), the latency middleware, ``/metrics``."""
    metrics = build_metrics(storage)
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, histogram=metrics.request_seconds)
    app.include_router(metrics_route.router)
    return metrics
