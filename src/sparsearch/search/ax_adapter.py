"""The only module that talks to Ax: a multi-objective ask/tell optimizer over the space.

Objectives: maximise ``accuracy``, minimise ``flash`` and ``ram``; the job's limits are outcome
constraints (for objectives Ax turns them into the hypervolume reference point). Candidates that
are over a limit by estimate are told with their ``flash``/``ram`` only (no accuracy), so the
model learns where the limits are without any training.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

from sparsearch.logs import debug_enabled
from sparsearch.space.params import ParamDef, SpaceConfig, parameters

log = logging.getLogger(__name__)

BOTORCH_NODES = frozenset({"MBM", "BoTorch", "BO_MIXED", "GPEI", "MOO"})


@dataclass(frozen=True)
class Candidate:
    index: int
    params: dict[str, Any]
    generator: str
    gen_seconds: float


def _ax_parameter(d: ParamDef) -> Any:
    from ax.api.configs import ChoiceParameterConfig, RangeParameterConfig

    if d.values is not None:
        return ChoiceParameterConfig(
            name=d.name, parameter_type=d.value_type, values=list(d.values), is_ordered=d.ordered
        )
    return RangeParameterConfig(
        name=d.name,
        parameter_type=d.value_type,
        bounds=tuple(d.bounds),
        scaling="log" if d.log else "linear",
    )


def _quiet_libraries() -> None:
    """Ax sets INFO on each of its loggers and logs every call; the CLI shows its own progress.
    Partial-data and fitting warnings are expected here (infeasible candidates carry no
    accuracy), so only errors get through, unless sparsearch logs at DEBUG."""
    level = logging.DEBUG if debug_enabled() else logging.ERROR
    for name in list(logging.root.manager.loggerDict):
        if name.split(".")[0] in ("ax", "botorch", "linear_operator", "gpytorch", "pyro"):
            logging.getLogger(name).setLevel(level)


def _client_class() -> Any:
    """``ax.api.client.Client``, imported so that Ax's log lines go through Python's logging
    (the handlers the CLI or the service configured) instead of Ax's own stderr handler. Ax
    logs "Ax SQL storage initialized" at INFO while it is first imported, before anything can
    reach its loggers, so that import runs with INFO records disabled unless debugging."""
    if "ax.api.client" not in sys.modules and not debug_enabled():
        before = logging.root.manager.disable
        logging.disable(logging.INFO)
        try:
            import ax.api.client  # noqa: F401
        finally:
            logging.disable(before)
    from ax.api.client import Client
    from ax.utils.common import logger as ax_logger

    ax_logger.ROOT_LOGGER.removeHandler(ax_logger.ROOT_STREAM_HANDLER)
    ax_logger.ROOT_LOGGER.propagate = True
    return Client


class AxOptimizer:
    """Ask/tell wrapper around ``ax.api.client.Client``; trial indices are Ax's indices."""

    def __init__(
        self,
        space: SpaceConfig,
        *,
        flash_limit: int,
        ram_limit: int,
        seed: int = 0,
        name: str = "sparsearch",
    ) -> None:
        client_class = _client_class()
        _quiet_libraries()
        self._client = client_class(random_seed=seed)
        self._client.configure_experiment(
            parameters=[_ax_parameter(d) for d in parameters(space)], name=name
        )
        constraints = [f"flash <= {flash_limit}", f"ram <= {ram_limit}"]
        self._client.configure_optimization(
            objective="accuracy, -flash, -ram", outcome_constraints=constraints
        )

    def ask(self) -> Candidate | None:
        """The next candidate, or None while Ax's initial design waits for pending results."""
        _quiet_libraries()  # Ax creates some loggers lazily, on first use
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trials = self._client.get_next_trials(max_trials=1)
        seconds = time.perf_counter() - start
        if not trials:
            return None
        index, params = next(iter(trials.items()))
        return Candidate(index, dict(params), self.generator_of(index), seconds)

    def generator_of(self, index: int) -> str:
        runs = self._client._experiment.trials[index].generator_runs  # no public accessor in 1.3
        return getattr(runs[0], "_generation_node_name", None) or "unknown" if runs else "manual"

    def tell_result(self, index: int, *, accuracy: float, flash: int, ram: int) -> None:
        self._client.complete_trial(
            trial_index=index,
            raw_data={"accuracy": float(accuracy), "flash": float(flash), "ram": float(ram)},
        )

    def tell_estimate_only(self, index: int, *, flash: int, ram: int) -> None:
        """An untrained candidate (over a limit by estimate): only its costs are known."""
        self._client.complete_trial(
            trial_index=index, raw_data={"flash": float(flash), "ram": float(ram)}
        )

    def tell_failed(self, index: int, reason: str) -> None:
        self._client.mark_trial_failed(trial_index=index, failed_reason=reason[:500])

    def attach(self, params: dict[str, Any]) -> int:
        """Re-register a stored trial when a search resumes; returns its Ax index."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._client.attach_trial(parameters=params)


def is_botorch(generator: str | None) -> bool:
    """Whether a generation node name denotes a BoTorch (model-based) generator."""
    return bool(generator) and generator in BOTORCH_NODES
