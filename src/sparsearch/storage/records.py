"""Plain, frozen records that leave ``storage/`` (ORM rows never do)."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from ..errors import StorageError
from ..vocabulary import (
    ARTIFACT_KINDS,
    BUDGET_TRIAL_STATUSES,
    DEFAULT_STRATEGY,
    FINISHED_JOB_STATUSES,
    FINISHED_TRIAL_STATUSES,
    JOB_STATUSES,
    TARGET_METRICS,
    TRIAL_STATUSES,
    target_of,
)

#: What ``scheduler_state`` reports.
SCHEDULER_STATES: tuple[str, ...] = ("running", "stale", "none")
#: Trial statuses of trials still in flight (what ``fail_unfinished_trials`` fails).
UNFINISHED_TRIAL_STATUSES: tuple[str, ...] = tuple(
    s for s in TRIAL_STATUSES if s not in FINISHED_TRIAL_STATUSES
)
#: Kinds of process that hold (claim, run, heartbeat) jobs: a scheduler, or a local
#: ``sparsearch search`` run (only schedulers count for ``scheduler_state``).
HOLDER_KINDS: tuple[str, ...] = ("scheduler", "cli")

#: Integer resource numbers of a trial (estimates before training, measured values after).
ESTIMATE_KEYS: tuple[str, ...] = (
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "macs",
    "nnz_flash_bytes",
    "param_count",
)
#: The estimates that measured values replace (a trial keeps both: ``est_<key>``).
MEASURED_KEYS: tuple[str, ...] = ("flash_bytes", "ram_bytes", "activation_bytes")
#: Float metrics a finished trial may carry.
FLOAT_METRIC_KEYS: tuple[str, ...] = (
    "accuracy",
    "test_accuracy",
    "int8_accuracy",
    "int8_test_accuracy",
    "export_seconds",
)
#: Integer numbers of both deployment targets a trained trial may carry
#: (``vocabulary.TARGET_METRICS``), stored as measured: no estimate precedes them.
TARGET_METRIC_KEYS: tuple[str, ...] = TARGET_METRICS
#: Text metrics a finished trial may carry: why the C target's numbers are null.
TEXT_METRIC_KEYS: tuple[str, ...] = ("c_error",)
#: Keys ``finish_trial(metrics=...)`` accepts.
METRIC_KEYS: tuple[str, ...] = (
    *FLOAT_METRIC_KEYS,
    *ESTIMATE_KEYS,
    *TARGET_METRIC_KEYS,
    *TEXT_METRIC_KEYS,
)


#: Ids of uploaded datasets: ``ds_`` + 12 hex digits. A job's ``dataset`` that matches names an
#: upload (never a path); the file is ``<artifact_dir>/datasets/<id>.npz``.
DATASET_ID_PATTERN = r"^ds_[0-9a-f]{12}$"
_DATASET_ID = re.compile(DATASET_ID_PATTERN)


def is_dataset_id(value: object) -> bool:
    """Whether ``value`` is the id of an uploaded dataset (as opposed to a built-in name or a
    local ``npz:``/``idx:`` path)."""
    return isinstance(value, str) and _DATASET_ID.fullmatch(value) is not None


class ConflictError(StorageError):
    """The request conflicts with the stored state: a job id or trial index that already
    exists, cancelling a finished job, deleting a running one."""


def check_job_status(status: str) -> str:
    if status not in JOB_STATUSES:
        raise ValueError(
            f"unknown job status {status!r}; expected one of {', '.join(JOB_STATUSES)}"
        )
    return status


def check_trial_status(status: str) -> str:
    if status not in TRIAL_STATUSES:
        raise ValueError(
            f"unknown trial status {status!r}; expected one of {', '.join(TRIAL_STATUSES)}"
        )
    return status


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True)
class JobInfo:
    """One job as stored. ``config`` is the job's settings (limits, budget, seed, ...)."""

    id: str
    status: str
    dataset: str
    config: dict[str, Any] = field(repr=False)
    error: str | None
    hypervolume: float | None
    best_accuracy: float | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    owner: str = "local"
    #: A user asked to cancel; a running job's driver stops and sets ``cancelled``.
    cancel_requested: bool = False
    #: The scheduler that claimed the job last and its last heartbeat for it.
    scheduler_id: str | None = None
    heartbeat_at: datetime | None = None
    #: Candidates the job's screen rejected by estimate (never stored as trials).
    screened: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES

    @property
    def strategy(self) -> str:
        """The job's search strategy (jobs stored before strategies existed ran ``bo``);
        ``finalize`` for a job that retrains another job's trials."""
        if self.config.get("finalize"):
            return "finalize"
        return str(self.config.get("strategy", DEFAULT_STRATEGY))

    @property
    def target(self) -> str:
        """What the job deploys to (``vocabulary.TARGETS``), and so what its limits, front and
        tables measure; jobs stored before targets existed deployed to TFLM."""
        return target_of(self.config)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "dataset": self.dataset,
            "config": copy.deepcopy(self.config),
            "error": self.error,
            "hypervolume": self.hypervolume,
            "best_accuracy": self.best_accuracy,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "owner": self.owner,
            "cancel_requested": self.cancel_requested,
            "strategy": self.strategy,
            "target": self.target,
            "screened": self.screened,
        }


@dataclass(frozen=True)
class TrialInfo:
    """One trial of a job, identified by ``(job_id, index)``."""

    job_id: str
    index: int
    status: str
    params: dict[str, Any] = field(repr=False)
    generator: str | None
    gen_seconds: float | None
    train_seconds: float | None
    accuracy: float | None
    test_accuracy: float | None
    flash_bytes: int | None
    ram_bytes: int | None
    activation_bytes: int | None
    macs: int | None
    nnz_flash_bytes: int | None
    param_count: int | None
    int8_accuracy: float | None = field(
        metadata={"doc": "Validation accuracy of the int8 model run on TFLite Micro"}
    )
    int8_test_accuracy: float | None = field(
        metadata={"doc": "Test accuracy of the int8 model run on TFLite Micro"}
    )
    measured: bool = field(
        metadata={
            "doc": "Whether flash_bytes / ram_bytes / activation_bytes are measured (stripped "
            ".tflite size, TFLM arena total and head) rather than estimated"
        }
    )
    est_flash_bytes: int | None
    est_ram_bytes: int | None
    est_activation_bytes: int | None
    export_seconds: float | None = field(
        metadata={"doc": "Seconds spent on int8 export and TFLM measurement"}
    )
    tflm_flash_bytes: int | None = field(
        metadata={
            "doc": "TFLite Micro target: the stripped int8 .tflite's size in bytes, as measured "
            "(null: not deployed)"
        }
    )
    tflm_ram_bytes: int | None = field(
        metadata={"doc": "TFLite Micro target: the TFLM arena in bytes, as measured"}
    )
    c_flash_bytes: int | None = field(
        metadata={
            "doc": "C target (interpreter-free C, Cortex-M4 firmware): the flash the model adds "
            "to the image, in bytes (null: not measured, c_error says why)"
        }
    )
    c_ram_bytes: int | None = field(
        metadata={"doc": "C target: static RAM plus peak stack of the firmware, in bytes"}
    )
    c_stack_bytes: int | None = field(
        metadata={"doc": "C target: the firmware's peak stack alone, in bytes"}
    )
    instructions: int | None = field(
        metadata={"doc": "C target: instructions one inference executes on the Cortex-M4"}
    )
    c_error: str | None = field(
        metadata={
            "doc": "Why the C target's numbers are null (e.g. arm-none-eabi-gcc not found); "
            "null when they were measured"
        }
    )
    deployment: dict[str, Any] | None = field(
        repr=False,
        metadata={
            "doc": "What firmware needs of the shipped model: input/output shape, scale and "
            "zero point, preprocessing, classes, operators and op resolver, arena, versions"
        },
    )
    curve: list[dict[str, Any]] | None = field(
        repr=False,
        metadata={
            "doc": "The learning curve: float accuracy on a fixed validation sample after each "
            "epoch of training and of a pruning method's fine-tuning, as {epoch, accuracy, "
            "seconds, phase}; null for trials trained before curves were kept"
        },
    )
    final: dict[str, Any] | None = field(
        repr=False,
        metadata={"doc": "The trial's final training (finalize): status, epochs, metrics"},
    )
    feasible: bool
    pareto: bool
    charged: bool = field(
        metadata={
            "doc": "Whether the trial counts against the job's budget once completed or failed "
            "(false: cut short by a graceful stop, recorded but not counted)"
        }
    )
    pruning: dict[str, Any] = field(repr=False)
    effective_spec: dict[str, Any] | None = field(repr=False)
    error: str | None
    worker_pid: int | None
    worker_host: str | None
    worker_node: str | None = field(metadata={"doc": "Ray node id of the worker that trained it"})
    created_at: datetime
    finished_at: datetime | None

    @property
    def objective_accuracy(self) -> float | None:
        """The accuracy the search maximizes and the front ranks: the int8 model's on TFLM
        where it was measured, else the float model's."""
        return self.int8_accuracy if self.int8_accuracy is not None else self.accuracy

    @property
    def trained(self) -> bool:
        """Whether the trial counts against the job's budget: completed or failed, and charged
        (a trial a graceful stop cut short is failed but not charged)."""
        return self.status in BUDGET_TRIAL_STATUSES and self.charged

    def to_json(self) -> dict[str, Any]:
        """The trial's JSON (CLI ``--json``, the API): every field, in order, dates in ISO 8601.
        The fields of this class are the one list of them; the API's ``TrialPublic`` is built
        from it."""
        return {f.name: _json_value(getattr(self, f.name)) for f in fields(self)}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return copy.deepcopy(value)
    return value


@dataclass(frozen=True)
class ArtifactInfo:
    """One stored artifact file. ``path`` is relative to the artifact directory."""

    job_id: str
    trial_index: int
    kind: str
    sha256: str
    size_bytes: int
    path: str
    effective_spec: dict[str, Any] | None = field(repr=False)
    created_at: datetime
    #: A file of the trial's final training (``finalize``), not of its search run.
    final: bool = False

    @property
    def filename(self) -> str:
        """A download name such as ``state_dict.pt`` (``final-tflite.tflite`` when final)."""
        kind = ARTIFACT_KINDS.get(self.kind)
        stem = f"final-{self.kind}" if self.final else self.kind
        return f"{stem}.{kind.extension if kind else 'bin'}"

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "trial_index": self.trial_index,
            "kind": self.kind,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "filename": self.filename,
            "effective_spec": copy.deepcopy(self.effective_spec),
            "created_at": _iso(self.created_at),
            "final": self.final,
        }


@dataclass(frozen=True)
class TokenInfo:
    """An API token as stored (never the plaintext: only its first characters, ``prefix``)."""

    id: int
    owner: str
    name: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


@dataclass(frozen=True)
class ClaimInfo:
    """One claim of a job by a scheduler; ``previous_status`` tells a first run (queued) from a
    resume or takeover (interrupted)."""

    job_id: str
    scheduler_id: str | None
    previous_status: str
    claimed_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "scheduler_id": self.scheduler_id,
            "previous_status": self.previous_status,
            "claimed_at": _iso(self.claimed_at),
        }


@dataclass(frozen=True)
class DatasetInfo:
    """An uploaded dataset: who owns it, what it holds, and the stored file's size and sha256."""

    id: str
    owner: str
    name: str
    size_bytes: int
    sha256: str
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W)
    n_train: int
    n_test: int
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "num_classes": self.num_classes,
            "input_shape": list(self.input_shape),
            "n_train": self.n_train,
            "n_test": self.n_test,
            "created_at": _iso(self.created_at),
        }
