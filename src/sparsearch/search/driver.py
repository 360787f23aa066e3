"""The search driver: one job's loop of ask, estimate, record-or-train on Ray, tell.

The database is the source of truth: every candidate is stored before it is trained, every result
as soon as it arrives, and a resumed search rebuilds the optimizer from the stored trials.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sparsearch.errors import ClusterError, SearchError, SparsearchError, ToolchainError
from sparsearch.jobconfig import JobConfig
from sparsearch.search.early_stop import EarlyStopping
from sparsearch.search.finalize import FinalizeStrategy, FinalRecorder
from sparsearch.search.lookahead import Exhausted, Lookahead
from sparsearch.search.pareto import refresh_front
from sparsearch.search.replay import replay
from sparsearch.search.screen import Costs, Screen
from sparsearch.search.strategies import Proposal, Result, Strategy, make_strategy
from sparsearch.space.spec import TrainSpec, TrialSpec
from sparsearch.vocabulary import (
    DEPLOYMENT_METRICS,
    TARGET_METRICS,
    UNFINISHED_JOB_STATUSES,
    accounted_flash,
)

log = logging.getLogger(__name__)

#: What ``should_stop`` returns when the job is no longer this driver's: another scheduler took
#: it over (this one's heartbeats went stale, e.g. the process was paused). The driver cancels its
#: Ray tasks and writes nothing more: the job's rows belong to the new owner.
LOST = "lost"
#: Why the trials a graceful stop cuts short failed (they are not charged to the budget).
INTERRUPTED = "interrupted"


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
    #: Trained trials over a limit as measured (the estimate said they fit): kept, never on
    #: the front.
    over_limit: int = 0
    #: Trials early stopping ended, and the epochs they trained (budget: N full trainings).
    stopped: int = 0
    stopped_epochs: float = 0.0
    #: Candidates a strategy rejected by estimate (never stored, never trained).
    screened: int = 0
    best_accuracy: float | None = None
    hypervolume: float = 0.0
    last_event: str = ""
    trial_index: int | None = None  # the trial the last event is about (None: the job)
    #: Per worker slot: seconds spent waiting for a candidate while the budget still had
    #: trials to start, and seconds spent running trials (benchmarks/search_overhead.py).
    wait_seconds: list[float] = field(default_factory=list)
    busy_seconds: list[float] = field(default_factory=list)


@dataclass
class _Flight:
    """One trial in flight: its slot, candidate and estimate."""

    index: int
    slot: int
    params: dict[str, Any]
    costs: Costs
    started: float


@dataclass
class _State:
    """Mutable bookkeeping of one run of the loop (rebuilt from storage on resume)."""

    inflight: dict[Any, _Flight] = field(default_factory=dict)  # Ray ref -> trial
    next_index: int = 0
    free_since: dict[int, float] = field(default_factory=dict)  # idle slot -> since when
    exhausted: bool = False


def _flash(cfg: JobConfig, values: dict[str, Any]) -> int:
    """The flash number the job's limit applies to (dense flatbuffer or SpArSe non-zeros)."""
    return accounted_flash(cfg.flash_accounting, values)


_TOOLCHAIN_HINT = (
    "every worker of a --target c job needs the Arm compiler: install the Debian packages "
    "gcc-arm-none-eabi and libnewlib-arm-none-eabi (`make toolchain`), or set "
    "SPARSEARCH_ARM_GCC; then resume the job. Or search with --target tflm"
)


class _Stop(Exception):
    """Raised inside the loop when ``should_stop`` asks the job to end with ``status``."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class SearchDriver:
    """Drives one stored job to completion.

    ``trial_fn`` replaces ``run_trial`` (tests inject crashing trials through it); ``runner``
    replaces the Ray runner altogether and ``strategy`` the job's strategy (tests drive the
    loop without Ray or a model library); ``on_progress`` receives a Progress after every
    event; ``should_stop`` is polled before each dispatch and about once a second while trials
    run: it returns None to go on, or the status the job should end with (e.g.
    ``"cancelled"``), or :data:`LOST` (checked again right before storing a new trial or a
    result)."""

    def __init__(
        self,
        storage: Any,
        job_id: str,
        *,
        ray_address: str = "",
        ray_num_cpus: int | None = None,
        ray_object_store_mb: int = 200,
        trial_fn: Callable[..., Any] | None = None,
        runner: Any = None,
        strategy: Callable[[Screen], Strategy] | None = None,
        data: Any = None,
        on_progress: Callable[[Progress], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
    ) -> None:
        self.storage = storage
        self.job = storage.get_job(job_id)
        self.cfg = JobConfig.from_dict(self.job.config)
        self._ray = (ray_address, ray_num_cpus, ray_object_store_mb)
        self._trial_fn = trial_fn
        self._runner = runner
        self._strategy_factory = strategy
        self._data = data
        self._on_progress = on_progress or (lambda p: None)
        self._should_stop = should_stop or (lambda: None)
        parallel = self.cfg.budget.parallel
        self.progress = Progress(
            job_id=job_id,
            budget=self.cfg.budget.trials,
            screened=self.job.screened,
            wait_seconds=[0.0] * parallel,
            busy_seconds=[0.0] * parallel,
        )
        self._lookahead: Lookahead | None = None
        self._final: FinalRecorder | None = None  # a finalize job's writer of final results
        self._early: EarlyStopping | None = None

    # -- entry point ---------------------------------------------------------------------------

    def run(self) -> Any:
        """Run (or resume) the job; returns the final JobInfo. Ctrl-C leaves it ``interrupted``;
        a ``should_stop`` that fires ends it with the status it returned (no exception)."""
        import torch

        if self.job.status not in UNFINISHED_JOB_STATUSES:
            raise SearchError(
                f"job {self.job.id} is {self.job.status}; only queued, running or "
                "interrupted jobs can run",
                "start a new search instead",
            )
        torch.set_num_threads(1)  # the driver only fits models; workers get the cores
        data = self._load_data()
        self._num_classes, self._input_shape = data.num_classes, data.input_shape
        # Small data sets need small batches to get enough optimizer steps in a few epochs.
        self._batch_size = 16 if len(data.y_train) < 5000 else 128
        # Trials still running in the database were lost to a crash: they count.
        self.storage.fail_unfinished_trials(self.job.id, INTERRUPTED, charged=True)
        self.storage.set_job_status(self.job.id, "running")
        state = _State()
        runner = None
        try:
            if self.cfg.target == "c" and not self._ray[0] and self._runner is None:
                from sparsearch.worker.firmware import find_arm_gcc

                find_arm_gcc()  # a local run: say so before anything trains
            self.screen = Screen(
                self.cfg,
                self._input_shape,
                self._num_classes,
                screened=self.job.screened,
                pixel_scale=data.pixel_scale,
            )
            self.screen.check_reachable()
            self._lookahead = self._start_strategy(state)
            runner = self._runner or self._ray_runner()
            data_ref = runner.put(data)
            self._loop(state, runner, data_ref)
        except _Stop as stop:  # cancelled trials say so; interrupted ones, "interrupted"
            self._abort(state, runner, stop.status, None, reason=stop.status)
            return self.storage.get_job(self.job.id)
        except KeyboardInterrupt:
            self._abort(state, runner, "interrupted", None)
            raise
        except (ClusterError, ToolchainError) as e:  # the environment, not the job: resumable
            self._abort(state, runner, "interrupted", str(e))
            raise
        except SparsearchError as e:
            self._abort(state, runner, "failed", str(e))
            raise
        except Exception as e:
            self._abort(state, runner, "failed", _one_line(e))
            raise
        finally:
            if self._lookahead is not None:
                self._lookahead.stop()
        self._refresh_front()
        return self.storage.set_job_status(self.job.id, "completed")

    def _load_data(self) -> Any:
        return self._data if self._data is not None else load_job_data(self.storage, self.cfg)

    def _ray_runner(self) -> Any:
        from sparsearch.worker.remote import TrialRunner, init_ray

        address, num_cpus, store_mb = self._ray
        init_ray(address, num_cpus=num_cpus, object_store_mb=store_mb)
        return TrialRunner(self._trial_fn, num_cpus=1)

    # -- the loop ------------------------------------------------------------------------------

    def _loop(self, state: _State, runner: Any, data_ref: Any) -> None:
        budget, parallel = self.cfg.budget.trials, self.cfg.budget.parallel
        now = time.monotonic()
        state.free_since = {slot: now for slot in range(parallel)}
        lookahead = self._lookahead
        assert lookahead is not None
        lookahead.start()
        self._early = EarlyStopping.open(self.cfg, runner, self.storage, self.job.id)
        while self._spent() < budget:
            while (
                state.free_since
                and not state.exhausted
                and self._spent() + len(state.inflight) < budget
            ):
                self._check_stop()
                try:
                    proposal = lookahead.take(timeout=1.0)
                except Exhausted:
                    state.exhausted = True
                    self._emit("every feasible candidate of the space was tried")
                    break
                self._sync_screened()
                if proposal is None:  # still generating: look at the running trials meanwhile
                    if state.inflight:
                        break
                    continue
                self._check_lost()  # the ask may take seconds: is the index still ours?
                self._dispatch(proposal, state, runner, data_ref)
            if not state.inflight:
                if state.exhausted:
                    return
                continue
            self._check_stop()  # short waits keep Ctrl-C and should_stop responsive
            ref = runner.wait_one(list(state.inflight), timeout=1.0)
            if ref is None:
                continue
            self._check_lost()  # a result that arrives after a takeover is not recorded
            flight = state.inflight.pop(ref)
            self._record_outcome(flight, runner.result(ref), state)

    def _spent(self) -> float:
        """The budget spent, in full trainings: trained trials, and stopped ones by their
        share of the epochs (so a job that stops trials trains more candidates)."""
        return self.progress.trained + self.progress.stopped_epochs / self.cfg.budget.epochs

    def _check_stop(self) -> None:
        status = self._should_stop()
        if status is not None:
            raise _Stop(status)

    def _check_lost(self) -> None:
        """Stop (writing nothing) if the job was taken over; a cancel waits for _check_stop."""
        if self._should_stop() == LOST:
            raise _Stop(LOST)

    def _dispatch(self, proposal: Proposal, state: _State, runner: Any, data_ref: Any) -> None:
        """Store the candidate as a running trial and start it on a free slot."""
        assert self._lookahead is not None
        costs = self.screen.costs(proposal.params)
        # A strategy's bug must not cost a training; a finalize job retrains trials that
        # were within the limits when searched (and its measurement decides again).
        retrain = costs is not None and self._final is not None
        if not retrain and not self.screen.within(costs):
            raise SearchError(
                f"strategy {self.cfg.strategy!r} proposed a candidate over a limit by "
                f"estimate: {proposal.params}",
                "report this as a bug; resume the job to go on",
            )
        assert costs is not None
        arch, pruning, lr = self.screen.decode(proposal.params)
        index = state.next_index
        self.storage.add_trial(
            self.job.id,
            index,
            status="running",
            params=proposal.params,
            generator=proposal.generator,
            gen_seconds=proposal.gen_seconds,
            estimates=costs.estimates,
            feasible=True,
            pruning=pruning.to_dict(),
        )
        state.next_index += 1
        slot = min(state.free_since)
        now = time.monotonic()
        self.progress.wait_seconds[slot] += now - state.free_since.pop(slot)
        train = TrainSpec(
            lr=lr,
            epochs=self.cfg.budget.epochs,
            finetune_epochs=self.cfg.budget.finetune_epochs,
            batch_size=self._batch_size,
            seed=self.cfg.seed,
        )
        final = self.cfg.finalize is not None
        if final:
            source = self.cfg.finalize.job_id  # type: ignore[union-attr]
            label = f"job {source}, final training (job {self.job.id} trial {index})"
        else:
            label = f"job {self.job.id} trial {index}"
        spec = TrialSpec(
            arch=arch,
            pruning=pruning,
            train=train,
            label=label,
            final=final,
            target=self.cfg.target,
        )
        if self._early is not None:
            self._early.started(index, costs.flash, costs.ram, pruning.to_dict())
            ref = runner.submit(spec, data_ref, self._early.board, index)
        else:
            ref = runner.submit(spec, data_ref)
        if self._final is not None:
            self._final.started(proposal.params)
        state.inflight[ref] = _Flight(index, slot, proposal.params, costs, now)
        self._lookahead.started(index, proposal.params)
        self.progress.running += 1
        self._emit(f"trial {index} started ({proposal.generator})", index)

    def _record_outcome(self, flight: _Flight, outcome: Any, state: _State) -> None:
        from sparsearch.worker.remote import TrialFailure
        from sparsearch.worker.trial import TrialStopped

        assert self._lookahead is not None
        index, now = flight.index, time.monotonic()
        self.progress.busy_seconds[flight.slot] += now - flight.started
        self.progress.running -= 1
        if isinstance(outcome, TrialStopped):
            self._record_stopped(flight, outcome, state, now)
            return
        self.progress.trained += 1
        # The slot waits for a candidate from now on, if the budget has trials left to start.
        if self._spent() + len(state.inflight) < self.cfg.budget.trials:
            state.free_since[flight.slot] = now
        costs = flight.costs
        if isinstance(outcome, TrialFailure):
            self.storage.finish_trial(
                self.job.id,
                index,
                status="failed",
                metrics={},
                error=outcome.reason,
                worker_pid=outcome.worker_pid or None,
                worker_node=outcome.worker_node or None,
                charged=not outcome.toolchain,
            )
            if outcome.toolchain:  # every trial would fail alike: stop, resumable
                raise ToolchainError(outcome.reason, _TOOLCHAIN_HINT)
            self._lookahead.finished(
                index, Result(flight.params, None, costs.flash, costs.ram, costs.macs)
            )
            self.progress.failed += 1
            if self._early is not None:
                self._early.ended(index)
            if self._final is not None:
                self._final.failed(flight.params, outcome.reason)
            self._emit(f"trial {index} failed: {outcome.reason}", index)
            return
        metrics: dict[str, Any] = {
            "accuracy": outcome.accuracy,
            "test_accuracy": outcome.test_accuracy,
            "param_count": outcome.param_count,
        }
        measured = outcome.flash_bytes is not None
        flash, ram, feasible = costs.flash, costs.ram, True
        if measured:
            metrics.update({k: getattr(outcome, k) for k in DEPLOYMENT_METRICS})
            metrics.update({k: getattr(outcome, k, None) for k in (*TARGET_METRICS, "c_error")})
            values = {**costs.estimates, **metrics}
            flash, ram = _flash(self.cfg, values), outcome.ram_bytes
            instructions = getattr(outcome, "instructions", None)
            feasible = self._within_measured(index, costs, flash, ram, instructions)
        score = outcome.int8_accuracy if outcome.int8_accuracy is not None else outcome.accuracy
        self.storage.finish_trial(
            self.job.id,
            index,
            status="completed",
            metrics=metrics,
            feasible=feasible,
            measured=measured,
            deployment=outcome.deployment,
            curve=getattr(outcome, "curve", None),
            train_seconds=outcome.train_seconds,
            worker_pid=outcome.worker_pid,
            worker_host=outcome.worker_host,
            worker_node=outcome.worker_node or None,
            effective_spec=outcome.effective_spec,
            artifacts=outcome.artifacts,
        )
        if self._final is not None:
            self._final.completed(flight.params, outcome, feasible)
        self._lookahead.finished(index, Result(flight.params, score, flash, ram, costs.macs))
        self.progress.completed += 1
        if not feasible:
            self.progress.over_limit += 1
        self._refresh_front()
        if self._early is not None:
            self._early.completed(index, getattr(outcome, "curve", None) or [])
        what = "int8 accuracy" if outcome.int8_accuracy is not None else "accuracy"
        self._emit(f"trial {index} completed: {what} {score:.3f}", index)

    def _record_stopped(self, flight: _Flight, outcome: Any, state: _State, now: float) -> None:
        """Early stopping ended the trial: stored as ``stopped`` with its curve (never exported,
        never on the front), its epochs charged, the strategy told (never proposed again)."""
        assert self._lookahead is not None
        index, costs = flight.index, flight.costs
        self.storage.finish_trial(
            self.job.id,
            index,
            status="stopped",
            metrics={},
            curve=outcome.curve,
            train_seconds=outcome.train_seconds,
            worker_pid=outcome.worker_pid or None,
            worker_host=outcome.worker_host or None,
            worker_node=outcome.worker_node or None,
        )
        epochs = min(float(outcome.epochs), float(self.cfg.budget.epochs))
        self.progress.stopped += 1
        self.progress.stopped_epochs += epochs
        if self._spent() + len(state.inflight) < self.cfg.budget.trials:
            state.free_since[flight.slot] = now
        self._lookahead.finished(
            index, Result(flight.params, None, costs.flash, costs.ram, costs.macs)
        )
        last = outcome.curve[-1] if outcome.curve else None
        reason = self._early.ended(index, last) if self._early is not None else ""
        self._emit(f"trial {index} stopped after {epochs:g} epochs: {reason}".rstrip(": "), index)

    def _within_measured(
        self, index: int, costs: Costs, flash: int, ram: int, instructions: int | None = None
    ) -> bool:
        """Whether a trained trial fits the limits as measured; a miss is logged with the
        estimator's error (the estimate said it fits, or it would not have been trained).
        ``instructions``: as measured in the emulator (target ``c``); None (not measured)
        keeps the estimate's."""
        lim = self.cfg.limits
        if instructions is None:
            instructions = costs.instructions
        if lim.fits(flash, ram, None, instructions):
            return True
        estimated = f"estimated flash {costs.flash} B, RAM {costs.ram} B"
        if lim.instructions is not None and costs.instructions is not None:
            estimated += f", {costs.instructions} instructions"
        log.warning(
            "job %s trial %d is over a limit as measured: %s (%s)",
            self.job.id,
            index,
            "; ".join(lim.misses(flash, ram, None, instructions)),
            estimated,
        )
        return False

    # -- strategy, front, resume, abort --------------------------------------------------------

    def _start_strategy(self, state: _State) -> Lookahead:
        """Build the job's strategy and tell it every stored trained trial (a resumed job);
        trials a graceful stop cut short are queued to run again first."""
        cfg = self.cfg
        if self._strategy_factory is not None:
            strategy = self._strategy_factory(self.screen)
        elif cfg.finalize is not None:
            strategy = FinalizeStrategy(self.screen, cfg.finalize)
            self._final = FinalRecorder(self.storage, self.job.id, cfg, self.screen.codec)
        else:
            strategy = make_strategy(
                cfg.strategy,
                self.screen,
                seed=cfg.seed,
                budget=cfg.budget.trials,
                parallel=cfg.budget.parallel,
            )
        lookahead = Lookahead(
            strategy,
            depth=0 if cfg.budget.parallel == 1 else cfg.budget.parallel,
            unfinished=lambda: math.ceil(self.cfg.budget.trials - self._spent()),
        )
        trials = self.storage.list_trials(self.job.id)
        state.next_index = max((t.index for t in trials), default=-1) + 1
        tried, redo = replay(trials, cfg, self.screen, self.progress, lookahead)
        for k, t in reversed(list(redo.items())):
            if self._final is not None:
                break  # a finalize job's strategy proposes every untrained plan entry itself
            if k not in tried and self.screen.within(self.screen.costs(t.params)):
                lookahead.push(Proposal(self.screen.codec.canonical(t.params), t.generator, 0.0))
        if self.progress.completed:
            self._refresh_front()
        return lookahead

    def _sync_screened(self) -> None:
        screened = self.screen.screened
        if screened != self.progress.screened:
            self.progress.screened = screened

    def _refresh_front(self) -> None:
        self._sync_screened()
        hv, best = refresh_front(
            self.storage, self.job.id, self.cfg, self._num_classes, self.progress.screened
        )
        self.progress.hypervolume, self.progress.best_accuracy = hv, best

    def _abort(
        self,
        state: _State,
        runner: Any,
        job_status: str,
        error: str | None,
        *,
        reason: str = INTERRUPTED,
    ) -> None:
        """Stop in-flight work and leave the database consistent (never half-written). The
        trials cut short are failed "interrupted" and not charged: the job's own stop, not
        the candidates, ended them."""
        for ref in list(state.inflight):
            if runner is not None:
                runner.cancel(ref)
        flights = list(state.inflight.values())
        state.inflight.clear()
        if job_status == LOST:
            return  # another scheduler owns the job (and its trial rows) now
        if self._final is not None:
            for flight in flights:
                with contextlib.suppress(SparsearchError):
                    self._final.stopped(flight.params, job_status)
        try:
            self.storage.fail_unfinished_trials(self.job.id, reason, charged=False)
            if hasattr(self, "screen"):
                self.storage.update_job_summary(
                    self.job.id,
                    hypervolume=self.progress.hypervolume,
                    best_accuracy=self.progress.best_accuracy,
                    screened=self.screen.screened,
                )
            self.storage.set_job_status(self.job.id, job_status, error=error)
        except SparsearchError:
            log.exception("could not record the job's end state")

    def _emit(self, event: str, trial_index: int | None = None) -> None:
        self.progress.last_event = event
        self.progress.trial_index = trial_index
        self._on_progress(self.progress)


def load_job_data(storage: Any, cfg: JobConfig) -> Any:
    """A job's data set as its trials see it (its seed's split, its train limit); an uploaded
    dataset id reads the stored file."""
    from sparsearch.datasets import load_dataset
    from sparsearch.storage import is_dataset_id

    name = cfg.dataset
    if is_dataset_id(name):  # an upload: the stored file
        name = f"npz:{storage.dataset_path(name)}"
    return load_dataset(name, seed=cfg.seed, train_limit=cfg.train_limit)


def _one_line(e: BaseException) -> str:
    """A one-line reason for an unexpected exception (its type and first line)."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def run_search(storage: Any, job_id: str, **kwargs: Any) -> Any:
    """Run or resume a stored job; see SearchDriver for the options."""
    return SearchDriver(storage, job_id, **kwargs).run()
