"""/metrics: Prometheus text format, no token (aggregates only, no owner data).

Left out of the OpenAPI schema: it is for scrapers, not API clients."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    # A plain (sync) endpoint: the collector queries the database, so it runs in the thread pool.
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
