"""The thin Ray layer over ``run_trial``: start/attach Ray, submit trials, collect outcomes.

Only this module (and the driver that calls it) knows about Ray; ``run_trial`` stays pure.
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sparsearch.errors import SparsearchError

log = logging.getLogger(__name__)

TrialFn = Callable[..., Any]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TrialFailure:
    """A trial that raised inside the worker: the reason is stored, the search goes on."""

    reason: str
    detail: str
    worker_pid: int


def init_ray(address: str = "", *, num_cpus: int | None = None, object_store_mb: int = 200) -> bool:
    """Connect to ``address`` or start a private local Ray. Returns True if this call started it
    (so the caller knows to shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": logging.WARNING,
    }
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=object_store_mb * 2**20, **kwargs)
    return True


def _call(fn: TrialFn, spec: Any, data: Any, threads: int) -> Any:
    """Runs inside the Ray worker. Exceptions become a TrialFailure value, so one bad trial is a
    recorded reason rather than a task error the driver must unpick."""
    try:
        return fn(spec, data, threads=threads)
    except SparsearchError as e:
        return TrialFailure(str(e), traceback.format_exc(), os.getpid())
    except Exception as e:  # noqa: BLE001 - any crash of one trial must not stop the search
        return TrialFailure(f"{type(e).__name__}: {e}", traceback.format_exc(), os.getpid())


class TrialRunner:
    """Submits trials as Ray tasks with ``num_cpus`` each (torch threads to match)."""

    def __init__(self, fn: TrialFn | None = None, *, num_cpus: int = 1) -> None:
        import ray

        from sparsearch.worker.trial import run_trial

        self._ray = ray
        self._fn = fn or run_trial
        self._threads = num_cpus
        self._task = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)

    def put(self, value: Any) -> Any:
        """Put the data set in the object store once per job; tasks get the reference."""
        return self._ray.put(value)

    def submit(self, spec: Any, data_ref: Any) -> Any:
        return self._task.remote(self._fn, spec, data_ref, self._threads)

    def wait_one(self, refs: list[Any], timeout: float | None = None) -> Any | None:
        """The first finished task reference, or None after ``timeout`` seconds."""
        done, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        return done[0] if done else None

    def result(self, ref: Any) -> Any:
        """The task's TrialResult or TrialFailure; a worker that died becomes a TrialFailure."""
        try:
            return self._ray.get(ref)
        except Exception as e:  # Ray wraps worker deaths and system errors in several types
            lines = [ln for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
            return TrialFailure(
                f"worker lost: {lines[-1] if lines else type(e).__name__}", _ANSI.sub("", str(e)), 0
            )

    def cancel(self, ref: Any) -> None:
        try:
            self._ray.cancel(ref, force=True)
        except Exception:
            log.debug("cancel failed", exc_info=True)
