"""Process concerns of server processes: watching the parent that supervises them and
freezing the start-up heap. Shared by ``serve`` itself, its API workers and its scheduler child."""

from __future__ import annotations

import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: The pid of the ``serve`` process, passed to its spawned API workers: a worker started
#: moments before ``serve`` was killed must not take the reaper it was handed to for its
#: parent (``os.getppid()`` in the worker would already say 1).
SERVE_PID_ENV = "_SPARSEARCH_SERVE_PID"


def watch_parent(parent_pid: int, on_orphaned: Callable[[], None] | None = None) -> None:
    """Call ``on_orphaned`` (default: SIGTERM to this process) once ``parent_pid`` is no longer
    this process's parent, e.g. because a supervising ``serve`` was killed. Checks every second
    from a daemon thread."""

    def orphaned() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    def loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        log.warning("parent process %d is gone; stopping", parent_pid)
        (on_orphaned or orphaned)()

    threading.Thread(target=loop, name="parent-watch", daemon=True).start()


def freeze_startup_heap() -> None:
    """Move everything imported and built so far, which lives as long as the server, out of
    the cyclic garbage collector's reach: one full collection over it took ~60 ms, which was
    the API's p99 under load. For server processes only (what is frozen is never collected)."""
    gc.collect()
    gc.freeze()
