"""The search driver: one job's loop of ask, estimate, record-or-train on Ray, tell.

The database is the source of truth: every candidate is stored before it is trained, every result
as soon as it arrives, and a resumed search rebuilds the optimizer from the stored trials.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparsearch.errors import ClusterError, SearchError, SpaceError, SparsearchError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.ax_adapter import AxOptimizer, Candidate
from sparsearch.search.pareto import Point, normalized_hypervolume, pareto_indices
from sparsearch.space.estimate import estimate
from sparsearch.space.params import decode, smallest_candidates
from sparsearch.space.spec import TrainSpec, TrialSpec
from sparsearch.vocabulary import UNFINISHED_JOB_STATUSES, accounted_flash

log = logging.getLogger(__name__)

INFEASIBLE_STREAK_FACTOR = 20  # consecutive infeasible candidates allowed, times the budget
#: What ``should_stop`` returns when the job is no longer this driver's: another scheduler took
#: it over (this one's heartbeats went stale, e.g. the process was paused). The driver cancels its
#: Ray tasks and writes nothing more: the job's rows belong to the new owner.
LOST = "lost"


@dataclass
class Progress:
    """What a progress display shows; sent to ``on_progress`` after every event."""

    job_id: str
    budget: int
    trained: int = 0
    completed: int = 0
    running: int = 0
    failed: int = 0
    infeasible: int = 0
    best_accuracy: float | None = None
    hypervolume: float = 0.0
    last_event: str = ""
    trial_index: int | None = None  # the trial the last event is about (None: the job)


@dataclass
class _State:
    """Mutable bookkeeping of one run of the loop (rebuilt from storage on resume)."""

    inflight: dict[Any, int] = field(default_factory=dict)  # Ray ref -> trial index
    estimates: dict[int, dict[str, int]] = field(default_factory=dict)  # in-flight index -> costs
    infeasible_streak: int = 0
    smallest: dict[str, int] = field(default_factory=dict)


def _flash(cfg: JobConfig, values: dict[str, Any]) -> int:
    """The flash number the job's limit applies to (dense flatbuffer or SpArSe non-zeros)."""
    return accounted_flash(cfg.flash_accounting, values)


def within_limits(cfg: JobConfig, est: dict[str, int]) -> bool:
    lim = cfg.limits
    return (
        _flash(cfg, est) <= lim.flash_bytes
        and est["ram_bytes"] <= lim.ram_bytes
        and (lim.macs is None or est["macs"] <= lim.macs)
    )


class _Stop(Exception):
    """Raised inside the loop when ``should_stop`` asks the job to end with ``status``."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class SearchDriver:
    """Drives one stored job to completion. ``trial_fn`` replaces ``run_trial`` (tests inject
    crashing trials through it); ``on_progress`` receives a Progress after every event;
    ``should_stop`` is polled before each ask and about once a second while trials run: it
    returns None to go on, or the status the job should end with (e.g. ``"cancelled"``), or
    :data:`LOST` (checked again right before storing a new candidate or a result)."""

    def __init__(
        self,
        storage: Any,
        job_id: str,
        *,
        ray_address: str = "",
        ray_num_cpus: int | None = None,
        ray_object_store_mb: int = 200,
        trial_fn: Callable[..., Any] | None = None,
        data: Any = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
    ) -> None:
        self.storage = storage
        self.job = storage.get_job(job_id)
        self.cfg = JobConfig.from_dict(self.job.config)
        self._ray = (ray_address, ray_num_cpus, ray_object_store_mb)
        self._trial_fn = trial_fn
        self._data = data
        self._on_progress = on_progress or (lambda p: None)
        self._should_stop = should_stop or (lambda: None)
        self.progress = Progress(job_id=job_id, budget=self.cfg.budget.trials)

    # -- entry point ---------------------------------------------------------------------------

    def run(self) -> Any:
        """Run (or resume) the job; returns the final JobInfo. Ctrl-C leaves it ``interrupted``;
        a ``should_stop`` that fires ends it with the status it returned (no exception)."""
        import torch

        from sparsearch.datasets import load_dataset
        from sparsearch.storage import is_dataset_id
        from sparsearch.worker.remote import TrialRunner, init_ray

        if self.job.status not in UNFINISHED_JOB_STATUSES:
            raise SearchError(
                f"job {self.job.id} is {self.job.status}; only queued, running or "
                "interrupted jobs can run",
                "start a new search instead",
            )
        torch.set_num_threads(1)  # the driver only fits Ax models; workers get the cores
        name = self.cfg.dataset
        if self._data is None and is_dataset_id(name):  # an upload: the stored file
            name = f"npz:{self.storage.dataset_path(name)}"
        data = self._data or load_dataset(
            name, seed=self.cfg.seed, train_limit=self.cfg.train_limit
        )
        self._num_classes, self._input_shape = data.num_classes, data.input_shape
        # Small data sets need small batches to get enough optimizer steps in a few epochs.
        self._batch_size = 16 if len(data.y_train) < 5000 else 128
        self.storage.fail_unfinished_trials(self.job.id, "interrupted")
        self.storage.set_job_status(self.job.id, "running")
        state = _State()
        runner = None
        try:
            self._check_reachable()
            self.ax = self._optimizer()
            self._replay(state)
            address, num_cpus, store_mb = self._ray
            init_ray(address, num_cpus=num_cpus, object_store_mb=store_mb)
            runner = TrialRunner(self._trial_fn, num_cpus=1)
            data_ref = runner.put(data)
            self._loop(state, runner, data_ref)
        except _Stop as stop:
            self._abort(state, runner, stop.status, stop.status, None)
            return self.storage.get_job(self.job.id)
        except KeyboardInterrupt:
            self._abort(state, runner, "interrupted", "interrupted", None)
            raise
        except ClusterError as e:  # the environment, not the job: resumable once it is fixed
            self._abort(state, runner, "interrupted", "interrupted", str(e))
            raise
        except SparsearchError as e:
            self._abort(state, runner, "failed", "job failed", str(e))
            raise
        except Exception as e:
            self._abort(state, runner, "failed", "job failed", f"{type(e).__name__}: {e}")
            raise
        self._refresh_front()
        return self.storage.set_job_status(self.job.id, "completed")

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self, state: _State, runner: Any, data_ref: Any) -> None:
        budget, parallel = self.cfg.budget.trials, self.cfg.budget.parallel
        while self.progress.trained < budget:
            waiting_for_data = False
            while (
                len(state.inflight) < parallel
                and self.progress.trained + len(state.inflight) < budget
            ):
                self._check_stop()
                cand = self.ax.ask()
                if cand is None:  # Ax's initial design waits for results: wait, don't go random
                    waiting_for_data = True
                    break
                self._check_lost()  # the ask may take seconds: is the index still ours to use?
                spec = self._consider(cand, state)
                if spec is not None:
                    state.inflight[runner.submit(spec, data_ref)] = cand.index
                    self._emit(f"trial {cand.index} started ({cand.generator})", cand.index)
            if not state.inflight:
                if waiting_for_data:
                    raise SearchError("the optimizer produced no candidate and no trial is running")
                continue
            ref = None
            while ref is None:  # short waits keep Ctrl-C and should_stop responsive
                self._check_stop()
                ref = runner.wait_one(list(state.inflight), timeout=1.0)
            self._check_lost()  # a result that arrives after a takeover is not recorded
            index = state.inflight.pop(ref)
            self._record_outcome(index, runner.result(ref), state.estimates.pop(index))

    def _check_stop(self) -> None:
        status = self._should_stop()
        if status is not None:
            raise _Stop(status)

    def _check_lost(self) -> None:
        """Stop (writing nothing) if the job was taken over; a cancel waits for _check_stop."""
        if self._should_stop() == LOST:
            raise _Stop(LOST)

    def _consider(self, cand: Candidate, state: _State) -> TrialSpec | None:
        """Store the candidate; return its TrialSpec if it should train, None if infeasible."""
        cfg = self.cfg
        arch, pruning, lr = decode(cand.params, cfg.space, self._input_shape, self._num_classes)
        common = dict(
            params=cand.params,
            generator=cand.generator,
            gen_seconds=cand.gen_seconds,
            pruning=pruning.to_dict(),
        )
        try:
            est = estimate(arch, pruning).to_dict()
        except SpaceError as e:
            self.storage.add_trial(
                self.job.id,
                cand.index,
                status="infeasible",
                estimates={},
                feasible=False,
                error=e.message,
                **common,
            )
            self.ax.tell_failed(cand.index, e.message)
            self._infeasible(state, None, cand.index)
            return None
        estimates = {
            k: est[k]
            for k in ("flash_bytes", "ram_bytes", "activation_bytes", "macs", "nnz_flash_bytes")
        }
        estimates["param_count"] = est["params"]
        if not within_limits(cfg, est):
            self.storage.add_trial(
                self.job.id,
                cand.index,
                status="infeasible",
                estimates=estimates,
                feasible=False,
                error="over a limit by estimate",
                **common,
            )
            self.ax.tell_estimate_only(cand.index, flash=_flash(cfg, est), ram=est["ram_bytes"])
            self._infeasible(state, est, cand.index)
            return None
        state.infeasible_streak = 0
        self.storage.add_trial(
            self.job.id, cand.index, status="running", estimates=estimates, feasible=True, **common
        )
        state.estimates[cand.index] = est
        self.progress.running += 1
        train = TrainSpec(
            lr=lr,
            epochs=cfg.budget.epochs,
            finetune_epochs=cfg.budget.finetune_epochs,
            batch_size=self._batch_size,
            seed=cfg.seed,
        )
        return TrialSpec(arch=arch, pruning=pruning, train=train)

    def _check_reachable(self) -> None:
        """Fail at once when even the smallest network of the space is over a limit."""
        ests = []
        for arch in smallest_candidates(self.cfg.space, self._input_shape, self._num_classes):
            try:
                ests.append(estimate(arch).to_dict())
            except SpaceError:
                continue
        if ests and not any(within_limits(self.cfg, e) for e in ests):
            self._too_tight({k: min(e[k] for e in ests) for k in ests[0]}, "the smallest network")

    def _too_tight(self, smallest: dict[str, int], what: str) -> None:
        s = smallest
        seen = (
            f"flash {s['flash_bytes']} B (non-zero {s['nnz_flash_bytes']} B), "
            f"RAM {s['ram_bytes']} B"
            if s
            else "none (no candidate could be built)"
        )
        raise SearchError(
            f"limits too tight for this space: smallest estimate ({what}) {seen}; limits are "
            f"flash {self.cfg.limits.flash_bytes} B, RAM {self.cfg.limits.ram_bytes} B",
            "raise --flash/--ram or shrink the space (fewer channels, smaller input scale)",
        )

    def _infeasible(self, state: _State, est: dict[str, int] | None, index: int) -> None:
        self.progress.infeasible += 1
        state.infeasible_streak += 1
        if est is not None:
            for key in ("flash_bytes", "nnz_flash_bytes", "ram_bytes", "macs"):
                state.smallest[key] = min(state.smallest.get(key, est[key]), est[key])
        self._emit(f"candidate {index} over a limit by estimate", index)
        if state.infeasible_streak >= INFEASIBLE_STREAK_FACTOR * self.cfg.budget.trials:
            self._too_tight(state.smallest, f"of {state.infeasible_streak} candidates in a row")

    def _record_outcome(self, index: int, outcome: Any, est: dict[str, int]) -> None:
        from sparsearch.worker.remote import TrialFailure

        self.progress.running -= 1
        self.progress.trained += 1
        if isinstance(outcome, TrialFailure):
            self.storage.finish_trial(
                self.job.id,
                index,
                status="failed",
                metrics={},
                error=outcome.reason,
                worker_pid=outcome.worker_pid or None,
                worker_node=outcome.worker_node or None,
            )
            self.ax.tell_failed(index, outcome.reason)
            self.progress.failed += 1
            self._emit(f"trial {index} failed: {outcome.reason}", index)
            return
        self.storage.finish_trial(
            self.job.id,
            index,
            status="completed",
            metrics={
                "accuracy": outcome.accuracy,
                "test_accuracy": outcome.test_accuracy,
                "param_count": outcome.param_count,
            },
            train_seconds=outcome.train_seconds,
            worker_pid=outcome.worker_pid,
            worker_host=outcome.worker_host,
            worker_node=outcome.worker_node or None,
            effective_spec=outcome.effective_spec,
            artifacts=outcome.artifacts,
        )
        self.ax.tell_result(
            index,
            accuracy=outcome.accuracy,
            flash=_flash(self.cfg, est),
            ram=est["ram_bytes"],
        )
        self.progress.completed += 1
        self._refresh_front()
        self._emit(f"trial {index} completed: accuracy {outcome.accuracy:.3f}", index)

    # -- front, resume, abort ------------------------------------------------------------------

    def _refresh_front(self) -> None:
        cfg = self.cfg
        trials = self.storage.list_trials(self.job.id, status="completed")
        points = [
            Point(t.index, t.accuracy, _flash(cfg, t.to_json()), t.ram_bytes)
            for t in trials
            if t.feasible and t.accuracy is not None
        ]
        self.storage.set_pareto(self.job.id, pareto_indices(points))
        hv = normalized_hypervolume(
            points,
            num_classes=self._num_classes,
            flash_limit=cfg.limits.flash_bytes,
            ram_limit=cfg.limits.ram_bytes,
        )
        best = max((p.accuracy for p in points), default=None)
        self.storage.update_job_summary(self.job.id, hypervolume=hv, best_accuracy=best)
        self.progress.hypervolume, self.progress.best_accuracy = hv, best

    def _optimizer(self) -> AxOptimizer:
        cfg = self.cfg
        return AxOptimizer(
            cfg.space,
            flash_limit=cfg.limits.flash_bytes,
            ram_limit=cfg.limits.ram_bytes,
            seed=cfg.seed,
            name=self.job.id,
        )

    def _replay(self, state: _State) -> None:
        """Rebuild the optimizer and counters from stored trials (a resumed job)."""
        for t in self.storage.list_trials(self.job.id):
            index = self.ax.attach(t.params)
            if index != t.index:
                raise SearchError(
                    f"stored trial {t.index} re-attached as {index}",
                    "the job's trials are not contiguous; start a new search",
                )
            if t.status == "completed":
                self.ax.tell_result(
                    index,
                    accuracy=t.accuracy,
                    flash=_flash(self.cfg, t.to_json()),
                    ram=t.ram_bytes,
                )
                self.progress.completed += 1
                self.progress.trained += 1
                state.infeasible_streak = 0
            elif t.status == "infeasible" and t.flash_bytes is not None:
                self.ax.tell_estimate_only(
                    index, flash=_flash(self.cfg, t.to_json()), ram=t.ram_bytes
                )
                self.progress.infeasible += 1
                state.infeasible_streak += 1
            else:
                self.ax.tell_failed(index, t.error or t.status)
                if t.status == "failed":
                    self.progress.failed += 1
                    self.progress.trained += 1
                    state.infeasible_streak = 0
                else:
                    self.progress.infeasible += 1
                    state.infeasible_streak += 1
        if self.progress.completed:
            self._refresh_front()

    def _abort(
        self, state: _State, runner: Any, job_status: str, trial_reason: str, error: str | None
    ) -> None:
        """Stop in-flight work and leave the database consistent (never half-written)."""
        for ref in list(state.inflight):
            if runner is not None:
                runner.cancel(ref)
        state.inflight.clear()
        if job_status == LOST:
            return  # another scheduler owns the job (and its trial rows) now
        try:
            self.storage.fail_unfinished_trials(self.job.id, trial_reason)
            self.storage.set_job_status(self.job.id, job_status, error=error)
        except SparsearchError:
            log.exception("could not record the job's end state")

    def _emit(self, event: str, trial_index: int | None = None) -> None:
        self.progress.last_event = event
        self.progress.trial_index = trial_index
        self._on_progress(self.progress)


def run_search(storage: Any, job_id: str, **kwargs: Any) -> Any:
    """Run or resume a stored job; see SearchDriver for the options."""
    return SearchDriver(storage, job_id, **kwargs).run()
