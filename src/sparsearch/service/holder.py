"""A job run outside a scheduler (``sparsearch search``, new or ``--resume``) holds it as a
scheduler does.

The process registers as a holder of kind "cli" (``Storage.register_scheduler``), creates its job
running under itself or claims the job it resumes (``Storage.claim_job``: refused, naming the
holder, while a scheduler or another CLI run holds it with fresh heartbeats), and beats for itself
and the job from a daemon thread every ``SPARSEARCH_HEARTBEAT_SECONDS``. ``should_stop`` is the
driver's poll: ``"cancelled"`` once a cancel was requested (``sparsearch cancel``, the API),
``driver.LOST`` once another process took the job over (this one's heartbeats went stale, e.g.
it was paused), else None. A holder killed outright (SIGKILL) stops beating; after
``SPARSEARCH_STALE_AFTER_SECONDS`` a scheduler or another ``--resume`` takes the job over, as a
dead scheduler's.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

from sparsearch.errors import SparsearchError

log = logging.getLogger(__name__)


class JobHolder:
    """One process's hold on one job. Use as a context manager (or call :meth:`close`): the
    heartbeats stop and the holder row is marked stopped."""

    def __init__(self, storage: Any, settings: Any) -> None:
        self.storage = storage
        self.settings = settings
        self.id: str | None = None
        self.job_id: str | None = None
        self._lost = False
        self._beats_stop = threading.Event()
        self._beats: threading.Thread | None = None

    # -- taking a job ----------------------------------------------------------------------------

    def start(self) -> str:
        """Register this process as a holder and start beating (idempotent); returns its id."""
        if self.id is None:
            self.id = self.storage.register_scheduler(
                host=socket.gethostname(), pid=os.getpid(), kind="cli"
            )
            self._beats_stop.clear()
            self._beats = threading.Thread(
                target=self._beat_loop, name=f"holder-heartbeat-{self.id}", daemon=True
            )
            self._beats.start()
        return self.id

    def create(self, *, dataset: str, config: dict[str, Any]) -> Any:
        """A new job, running under this holder from the start (no scheduler claims it)."""
        job = self.storage.create_job(dataset=dataset, config=config, scheduler_id=self.start())
        self.job_id = job.id
        return job

    def claim(self, job_id: str) -> Any:
        """Claim an existing job (``--resume``); ``HeldError`` naming its holder while that one
        is alive, ConflictError for a finished or cancelled job, NotFoundError."""
        job = self.storage.claim_job(
            job_id, scheduler_id=self.start(), stale_after=self.settings.stale_after_seconds
        )
        self.job_id = job.id
        return job

    # -- while the driver runs -------------------------------------------------------------------

    def should_stop(self) -> str | None:
        """The driver's poll: "cancelled", ``LOST``, or None to go on."""
        from sparsearch.search.driver import LOST

        job_id = self.job_id
        if job_id is None or self.id is None:
            return None
        # Asked of the database on every call, not only by the heartbeat thread: after a pause
        # the driver's thread may run first, and it must not write into another holder's job.
        if self._lost or not self.storage.holds_job(job_id, self.id):
            self._lost = True
            return LOST
        if self.storage.is_cancel_requested(job_id):
            return "cancelled"
        return None

    @property
    def lost(self) -> bool:
        """Whether another process took the job over."""
        return self._lost

    def leave(self, status: str, trial_reason: str, error: str | None, *, charged: bool) -> None:
        """Make sure the job does not stay ``running`` under this holder when it lets go (the
        driver records its own end state; this covers a stop before its loop started). Only
        while the job is still ours: after the driver's end or a takeover nothing is written,
        so the driver's end state (and its uncharged trials) stand."""
        job_id = self.job_id
        if job_id is None or self.id is None:
            return
        try:
            if self.storage.holds_job(job_id, self.id):
                self.storage.fail_unfinished_trials(job_id, trial_reason, charged=charged)
                self.storage.set_job_status(job_id, status, error=error)
        except SparsearchError:
            log.exception("could not record the end state of job %s", job_id)

    # -- letting go ------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the heartbeats and mark the holder row stopped (idempotent)."""
        self._beats_stop.set()
        if self._beats is not None:
            self._beats.join(timeout=10)
            self._beats = None
        if self.id is not None:
            try:
                self.storage.stop_scheduler(self.id)
            except SparsearchError:
                log.exception("could not mark holder %s stopped", self.id)
            self.id = None

    def __enter__(self) -> JobHolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _beat_loop(self) -> None:
        interval = self.settings.heartbeat_seconds
        while not self._beats_stop.wait(interval):
            holder, job_id = self.id, self.job_id
            if holder is None:
                return
            try:
                self.storage.beat_scheduler(holder)
                # Not beaten for: ended by its driver (nothing to do), or running under another
                # holder (taken over).
                if (
                    job_id is not None
                    and not self.storage.beat_job(job_id, holder)
                    and self.storage.get_job(job_id).status == "running"
                ):
                    self._lost = True
            except Exception:  # noqa: BLE001 - a missed beat is logged; the next one retries
                log.warning("heartbeat of job %s failed; retrying", job_id, exc_info=True)
