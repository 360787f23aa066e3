"""The ASGI app of one ``serve --workers N`` worker process (a uvicorn factory). ``api/`` builds
the app; everything about processes (parents, signals, the heap) lives in ``service/``."""

from __future__ import annotations

import os
from typing import Any

from sparsearch.api.app import create_app
from sparsearch.config import Settings
from sparsearch.logs import configure_logging
from sparsearch.service.process import SERVE_PID_ENV, freeze_startup_heap, watch_parent


def worker_app() -> Any:
    """The app of one ``serve --workers N`` worker process (a uvicorn factory).

    The worker is spawned by ``serve``, which passed its settings on as ``SPARSEARCH_*``
    variables: it logs like ``serve`` and stops by itself if ``serve`` disappears (killed
    with SIGKILL, its workers would otherwise keep the port)."""
    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_format == "json")
    watch_parent(int(os.environ.get(SERVE_PID_ENV) or os.getppid()))
    app = create_app(settings)
    freeze_startup_heap()
    return app
