"""The scheduler: claims jobs from the database and drives each one with the core's driver.

One scheduler runs one job at a time, in its own process (``sparsearch scheduler``, or the child
that ``sparsearch serve`` supervises): fitting the optimizer's models takes seconds of CPU and must
never stall a web server. Trials still train on Ray workers. A daemon thread records heartbeats
(the scheduler row and the running job), so ``/healthz`` and other schedulers can tell a live
scheduler from a dead one.

Stopping: SIGTERM or SIGINT (when ``run_forever`` runs in the main thread) raises
KeyboardInterrupt in the driver, which leaves the running job ``interrupted`` with its in-flight
trials failed ("interrupted", not charged: they count against no budget); a later scheduler
resumes it. Setting the ``stop`` event does the same at the driver's next check (within about a
second, or after the optimizer's current ask).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from types import FrameType
from typing import Any

from sparsearch.errors import ClusterError, SparsearchError
from sparsearch.vocabulary import CLAIMABLE_JOB_STATUSES

log = logging.getLogger(__name__)

#: Seconds between attempts to join a Ray cluster that is unreachable or refuses the scheduler.
CLUSTER_RETRY_SECONDS = 15.0


def _log_progress(p: Any) -> None:
    """One log line per driver event, with the job and (if any) the trial as fields."""
    extra = {"job_id": p.job_id, "trial_index": p.trial_index}
    log.info("job %s: %s", p.job_id, p.last_event, extra=extra)


class Scheduler:
    """Claims ``queued``/``interrupted`` jobs one at a time and runs each to its end.

    ``storage`` defaults to one opened from ``settings`` (and closed by :meth:`close`). Use as a
    context manager, or call :meth:`close` when done: it marks the scheduler row stopped.
    """

    def __init__(self, settings: Any, storage: Any = None) -> None:
        from sparsearch.storage import open_storage

        self.settings = settings
        self._own_storage = storage is None
        self.storage = storage or open_storage(settings.database_url, settings.artifact_dir)
        self.id: str | None = None
        self._job_id: str | None = None  # the job being driven (read by the heartbeat thread)
        self._stop = threading.Event()
        self._beats_stop = threading.Event()
        self._beats: threading.Thread | None = None
        self._signalled = False
        self._handling_signals = False
        self._lost: str | None = None  # a job whose heartbeat found it no longer ours
        self._gave_up: str | None = None  # a job whose driver stopped because it was lost
        self._ray_started = False
        self._cluster_error: str | None = None  # why the configured Ray cluster cannot be used

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> str:
        """Register the scheduler row and start heartbeats (idempotent); returns the id."""
        if self.id is None:
            self.id = self.storage.register_scheduler(host=socket.gethostname(), pid=os.getpid())
            self._beats_stop.clear()
            self._beats = threading.Thread(
                target=self._beat_loop, name=f"scheduler-heartbeat-{self.id}", daemon=True
            )
            self._beats.start()
            log.info("scheduler %s started (pid %d)", self.id, os.getpid())
        return self.id

    def close(self) -> None:
        """Stop heartbeats, mark the scheduler row stopped, release what this object opened."""
        self._beats_stop.set()
        if self._beats is not None:
            self._beats.join(timeout=10)
            self._beats = None
        if self.id is not None:
            try:
                self.storage.stop_scheduler(self.id)
            except SparsearchError:
                log.exception("could not mark scheduler %s stopped", self.id)
            log.info("scheduler %s stopped", self.id)
            self.id = None
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False
        if self._own_storage:
            self.storage.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop ------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Run jobs until ``stop`` is set (or SIGTERM/SIGINT arrives); then :meth:`close`.

        A job that fails is recorded failed and the loop goes on; only KeyboardInterrupt (a
        signal while a job runs) escapes, after the job was left ``interrupted``.
        """
        if stop is not None:
            self._stop = stop
        restore = self._install_signal_handlers()
        self._handling_signals = bool(restore)
        try:
            self.start()
            while not self._stop.is_set():
                try:
                    ran = self.run_once()
                except Exception:  # noqa: BLE001 - e.g. the database unreachable for a while
                    log.exception("scheduler %s could not claim a job; retrying", self.id)
                    self._stop.wait(max(self.settings.scheduler_poll_seconds, 5.0))
                    continue
                if not ran:
                    poll = self.settings.scheduler_poll_seconds
                    if self._cluster_error:  # not every poll: joining starts a probe each time
                        poll = max(poll, CLUSTER_RETRY_SECONDS)
                    self._stop.wait(poll)
        finally:
            self._handling_signals = False
            for signum, handler in restore.items():
                signal.signal(signum, handler)
            self.close()

    def run_once(self) -> bool:
        """Claim one queued or interrupted job and drive it to its end; False if none waited."""
        if self._stop.is_set():
            return False
        self.start()
        self._interrupt_stale()
        if self.settings.ray_address and not self._join_cluster():
            return False  # no job is claimed (and none failed) while the cluster is unusable
        job = self.storage.claim_next_job(CLAIMABLE_JOB_STATUSES, scheduler_id=self.id)
        if job is None:
            return False
        try:
            # A job lost before may come back to us (its new owner died too).
            self._lost = self._gave_up = None
            self._job_id = job.id
            log.info("job %s claimed (%s)", job.id, job.dataset, extra={"job_id": job.id})
            self._drive(job.id)
        except (KeyboardInterrupt, SystemExit) as e:
            # SystemExit: Ray's own SIGTERM handler, live for a moment while ray.init runs.
            self._job_id = None  # a second signal must not interrupt the clean-up
            self._stop.set()
            # A graceful stop: the trials it cuts short count against no budget.
            self._leave(job.id, "interrupted", "interrupted", None, charged=False)
            log.info("job %s interrupted", job.id, extra={"job_id": job.id})
            if isinstance(e, SystemExit):
                raise KeyboardInterrupt from e
            raise
        except ClusterError as e:  # the cluster, not the job: leave it to be resumed
            self._job_id = None
            self._leave(job.id, "interrupted", "interrupted", None)
            self._cluster_failed(e, job.id)
        except SparsearchError as e:
            self._job_id = None
            self._leave(job.id, "failed", "job failed", str(e))
            log.warning("job %s failed: %s", job.id, e, extra={"job_id": job.id})
        except Exception as e:  # noqa: BLE001 - one broken job must not stop the scheduler
            self._job_id = None
            self._leave(job.id, "failed", "job failed", f"{type(e).__name__}: {e}")
            log.exception("job %s failed", job.id, extra={"job_id": job.id})
        finally:
            self._job_id = None
        return True

    def _join_cluster(self) -> bool:
        """Connect to the configured Ray cluster (``SPARSEARCH_RAY_ADDRESS``) before claiming a
        job; False, with the error logged, when it is unreachable or refuses the scheduler (a
        wrong token or ``RAY_AUTH_MODE``): ``init_ray`` says so within seconds."""
        from sparsearch.worker.remote import init_ray

        s = self.settings
        try:
            self._ray_started |= init_ray(
                s.ray_address, num_cpus=s.ray_num_cpus, object_store_mb=s.ray_object_store_mb
            )
        except ClusterError as e:
            self._cluster_failed(e, None)
            return False
        if self._handling_signals:  # ray.init replaces the SIGTERM handler with sys.exit
            self._install_signal_handlers()
        if self._cluster_error is not None:
            log.info("scheduler %s joined the Ray cluster at %s", self.id, s.ray_address)
        self._cluster_error = None
        return True

    def _cluster_failed(self, e: ClusterError, job_id: str | None) -> None:
        self._cluster_error = str(e)
        left = f"; job {job_id} left interrupted" if job_id else ""
        log.error(
            "scheduler %s cannot use the Ray cluster: %s%s; retrying in %.0f s (hint: %s)",
            self.id,
            e.message,
            left,
            max(self.settings.scheduler_poll_seconds, CLUSTER_RETRY_SECONDS),
            e.hint,
            extra={"job_id": job_id},
        )

    def _drive(self, job_id: str) -> None:
        from sparsearch.search.driver import SearchDriver
        from sparsearch.worker.remote import init_ray

        s = self.settings
        self._ray_started |= init_ray(
            s.ray_address, num_cpus=s.ray_num_cpus, object_store_mb=s.ray_object_store_mb
        )
        if self._handling_signals:  # ray.init replaces the SIGTERM handler with sys.exit
            self._install_signal_handlers()
        info = SearchDriver(
            self.storage,
            job_id,
            ray_address=s.ray_address,
            ray_num_cpus=s.ray_num_cpus,
            ray_object_store_mb=s.ray_object_store_mb,
            on_progress=_log_progress,
            should_stop=lambda: self._should_stop(job_id),
        ).run()
        # (Not self._lost: the heartbeat thread also sets it for a job that just ended.)
        if self._gave_up == job_id:
            log.warning(
                "job %s was taken over by another scheduler; left to it",
                job_id,
                extra={"job_id": job_id},
            )
            return
        log.info("job %s %s", job_id, info.status, extra={"job_id": job_id})

    def _interrupt_stale(self) -> None:
        """Jobs of schedulers that died without a word become ``interrupted`` (their in-flight
        trials failed "scheduler lost"), so the next idle scheduler resumes them."""
        for stale in self.storage.interrupt_stale_jobs(
            stale_after=self.settings.stale_after_seconds
        ):
            log.warning(
                "job %s: its scheduler stopped sending heartbeats; interrupted",
                stale,
                extra={"job_id": stale},
            )

    def _should_stop(self, job_id: str) -> str | None:
        from sparsearch.search.driver import LOST

        # Lost: another scheduler took the job over after our heartbeats went stale (say this
        # process was paused). Asked of the database on every call, not only by the heartbeat
        # thread: after a pause the driver's thread may run first. The driver then stops
        # without writing, so it cannot interrupt the new owner's job or fail its trials.
        if self._lost == job_id or not self.storage.holds_job(job_id, self.id):
            self._lost = self._gave_up = job_id
            return LOST
        if self.storage.is_cancel_requested(job_id):
            return "cancelled"
        return "interrupted" if self._stop.is_set() else None

    def _leave(
        self,
        job_id: str,
        status: str,
        trial_reason: str,
        error: str | None,
        *,
        charged: bool = True,
    ) -> None:
        """Make sure a job this scheduler claimed does not stay ``running`` when it lets go
        (the driver records its own end state; this covers failures before its loop starts).
        ``charged``: whether the trials it fails count against the budget (False for a
        graceful stop)."""
        try:
            # Only while the job is still ours: after a takeover its rows are the new owner's.
            if self.id is not None and self.storage.holds_job(job_id, self.id):
                self.storage.fail_unfinished_trials(job_id, trial_reason, charged=charged)
                self.storage.set_job_status(job_id, status, error=error)
        except SparsearchError:
            log.exception("could not record the end state of job %s", job_id)

    # -- heartbeats and signals ----------------------------------------------------------------

    def _beat_loop(self) -> None:
        interval = self.settings.heartbeat_seconds
        while not self._beats_stop.wait(interval):
            scheduler_id, job_id = self.id, self._job_id
            if scheduler_id is None:
                return
            try:
                self.storage.beat_scheduler(scheduler_id)
                held = job_id is None or self.storage.beat_job(job_id, scheduler_id)
                if not held and self._lost != job_id and self._job_id == job_id:
                    self._lost = job_id
                    log.warning(
                        "job %s is no longer held by scheduler %s; stopping it",
                        job_id,
                        scheduler_id,
                        extra={"job_id": job_id},
                    )
                if job_id is not None:
                    # Busy schedulers rescan too (idle ones do before every claim), so a dead
                    # scheduler's job shows `interrupted` within stale_after + one beat even
                    # when every live scheduler is busy; an idle one then resumes it.
                    self._interrupt_stale()
            except Exception:  # noqa: BLE001 - a missed beat is logged; the next one retries
                log.exception("heartbeat of scheduler %s failed", scheduler_id)

    def _install_signal_handlers(self) -> dict[int, Any]:
        """SIGTERM/SIGINT stop the loop (only possible from the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # One-shot: a second signal must not interrupt the clean-up the first one started.
        if self._signalled:
            return
        self._signalled = True
        log.info("scheduler got %s; stopping", signal.Signals(signum).name)
        self._stop.set()
        if self._job_id is not None and not _importing(frame):
            raise KeyboardInterrupt  # the driver's interrupt path: job `interrupted`, trials failed
        # Inside the import machinery (a lazy import of torch or BoTorch, say) an exception
        # would land in one of its callbacks, be printed as "Exception ignored" and lost: the
        # stop flag alone ends the job, at the driver's next should_stop poll (about a second).


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or a caller of it runs inside importlib's own code."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False
