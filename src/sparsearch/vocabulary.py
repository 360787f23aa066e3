"""The product's words, each spelled once: job and trial statuses, artifact kinds, pruning
methods, flash accountings. Storage, the API's enums and schemas, the CLI's choices, the driver
and the scheduler all derive theirs from here, so adding a status, a kind or a method is one
line (plus, for a method or a kind, the code that implements it).

Dependency-free on purpose: every layer may import it, and it loads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- job statuses -----------------------------------------------------------------------------

#: Every job status. ``interrupted`` = stopped by a crash, a restart or Ctrl-C; it can be resumed.
JOB_STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "interrupted",
    "completed",
    "failed",
    "cancelled",
)
#: Terminal job statuses: nothing will change the job any more (``interrupted`` is not one).
FINISHED_JOB_STATUSES: tuple[str, ...] = ("completed", "failed", "cancelled")
#: Job statuses that are not finished: what counts against an owner's active-job quota, what
#: keeps an uploaded dataset in use, and what a driver may resume.
UNFINISHED_JOB_STATUSES: tuple[str, ...] = tuple(
    s for s in JOB_STATUSES if s not in FINISHED_JOB_STATUSES
)
#: Job statuses a scheduler or driver is acting on or about to (no ``finished_at``).
ACTIVE_JOB_STATUSES: tuple[str, ...] = ("queued", "running")
#: Job statuses a scheduler claims: waiting to start, or waiting to be resumed.
CLAIMABLE_JOB_STATUSES: tuple[str, ...] = ("queued", "interrupted")
#: Job statuses that ``cancel`` ends at once (a running job gets a request its driver polls).
CANCELLABLE_AT_ONCE: tuple[str, ...] = CLAIMABLE_JOB_STATUSES
#: Job statuses after which watching a job (``status --watch``) stops: it will not move by
#: itself (an interrupted job waits for a scheduler or ``search --resume``).
SETTLED_JOB_STATUSES: tuple[str, ...] = (*FINISHED_JOB_STATUSES, "interrupted")

# --- trial statuses ---------------------------------------------------------------------------

#: Every trial status.
TRIAL_STATUSES: tuple[str, ...] = ("queued", "running", "completed", "failed", "infeasible")
#: Trial statuses after which a trial has a ``finished_at``.
FINISHED_TRIAL_STATUSES: tuple[str, ...] = ("completed", "failed", "infeasible")
#: Trial statuses that count against a job's ``trials`` budget (trained trials).
BUDGET_TRIAL_STATUSES: tuple[str, ...] = ("completed", "failed")

# --- artifacts --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactKind:
    """One kind of file a trial can store and a user can download."""

    name: str
    #: File extension on disk and in download names (no dot).
    extension: str
    #: HTTP media type of the download.
    media_type: str
    #: One line for help texts and docs.
    description: str


#: Every artifact kind, in the order they are listed. A closed set: storage refuses, the API
#: 404s and the CLI rejects any other name.
ARTIFACT_KINDS: dict[str, ArtifactKind] = {
    k.name: k
    for k in (
        ArtifactKind(
            "tflite", "tflite", "application/x-tflite", "int8 TFLite model for TFLite Micro"
        ),
        ArtifactKind(
            "c_source", "zip", "application/zip", "the .tflite as C source (model_data.h/.cc)"
        ),
        ArtifactKind("onnx", "onnx", "application/onnx", "ONNX model (float)"),
        ArtifactKind("state_dict", "pt", "application/octet-stream", "PyTorch state_dict (float)"),
    )
}

# --- deployment --------------------------------------------------------------------------------

#: What the deployment of a trained trial measures on the shipped model, as a trial stores it
#: (``worker.deploy.Deployment``, ``TrialResult``): flash / RAM / activation replace the
#: estimates (kept as ``est_*``).
DEPLOYMENT_METRICS: tuple[str, ...] = (
    "flash_bytes",
    "ram_bytes",
    "activation_bytes",
    "int8_accuracy",
    "int8_test_accuracy",
    "export_seconds",
)

# --- the deployment runtime -------------------------------------------------------------------


@dataclass(frozen=True)
class RuntimeFlash:
    """Flash the TFLite Micro runtime itself takes, on top of a model's ``.tflite``: measured
    for the operators the search space uses (see docs/deployment.md)."""

    low_bytes: int
    high_bytes: int
    ops: tuple[str, ...]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "low_bytes": self.low_bytes,
            "high_bytes": self.high_bytes,
            "ops": list(self.ops),
            "source": self.source,
        }

    def summary(self) -> str:
        return (
            f"+ {self.low_bytes / 1000:.1f}-{self.high_bytes / 1000:.1f} KB of flash for the "
            "TFLM runtime itself"
        )


#: The runtime's share: TFLM's interpreter + reference kernels of the space's seven operators,
#: built for Cortex-M4 with GNU Arm 12.2 (-Os with size-optimized kernels, and -O2).
TFLM_RUNTIME_FLASH = RuntimeFlash(
    low_bytes=35_800,
    high_bytes=43_000,
    ops=(
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "MAX_POOL_2D",
        "MEAN",
        "FULLY_CONNECTED",
        "RESHAPE",
        "PAD",
    ),
    source="TFLite Micro with reference kernels for these ops, Cortex-M4, GNU Arm 12.2: "
    "35.8 KB with -Os and size-optimized kernels, 43.0 KB at -O2 (the interpreter library "
    "29-36 KB, the rest libgcc/libc); not part of a model's flash_bytes",
)

# --- pruning methods --------------------------------------------------------------------------


@dataclass(frozen=True)
class PruningMethodInfo:
    """What the rest of the product needs to know of a pruning method without importing it."""

    name: str
    #: Removes whole filters (shapes shrink, so dense flash and RAM shrink) rather than
    #: zeroing single weights (only the non-zero count shrinks).
    structured: bool
    description: str


#: Every pruning method; ``sparsearch.pruning`` maps each name to its implementation.
PRUNING_METHODS: dict[str, PruningMethodInfo] = {
    m.name: m
    for m in (
        PruningMethodInfo("filter_norm", True, "remove the filters of lowest L1/L2 norm"),
        PruningMethodInfo("magnitude", False, "zero the weights of smallest magnitude"),
    )
}
#: The value of a job's or trial's pruning method that means "do not prune".
NO_PRUNING = "none"
#: What a search space may list as pruning methods.
PRUNING_CHOICES: tuple[str, ...] = (NO_PRUNING, *PRUNING_METHODS)
#: Methods that change shapes before training (the estimator accounts for them).
STRUCTURED_METHODS: frozenset[str] = frozenset(
    m.name for m in PRUNING_METHODS.values() if m.structured
)

# --- search strategies ------------------------------------------------------------------------


@dataclass(frozen=True)
class StrategyInfo:
    """A search strategy as the CLI, the API and the docs list it (``sparsearch.search``
    implements each)."""

    name: str
    description: str


#: Every search strategy, the default first. Each proposes only candidates that fit the job's
#: limits by estimate and writes the same trial records (``generator`` = "<name>:<stage>").
STRATEGIES: dict[str, StrategyInfo] = {
    s.name: s
    for s in (
        StrategyInfo("bo", "multi-objective Bayesian optimization (BoTorch qLogNEHVI)"),
        StrategyInfo("random", "feasible space-filling (scrambled Sobol) sampling"),
        StrategyInfo("nsga2", "NSGA-II genetic algorithm (Optuna)"),
        StrategyInfo("evolution", "aging evolution with random scalarization (muNAS-style)"),
    )
}
#: The strategy a job gets when it names none.
DEFAULT_STRATEGY = "bo"

# --- flash accounting -------------------------------------------------------------------------

#: Per flash accounting, the trial field that a job's flash limit, its front and its listings
#: count: ``dense``, the int8 ``.tflite`` size; ``sparse``, SpArSe's non-zero weights (for
#: sparse runtimes). ``flash_bytes`` always means the dense size; under ``sparse`` only this
#: choice of field changes.
ACCOUNTED_FLASH_FIELDS: dict[str, str] = {"dense": "flash_bytes", "sparse": "nnz_flash_bytes"}
#: Every flash accounting a job may choose.
FLASH_ACCOUNTINGS: tuple[str, ...] = tuple(ACCOUNTED_FLASH_FIELDS)


def flash_accounting_of(config: Mapping[str, Any]) -> str:
    """A job's flash accounting from its stored config (``JobConfig.to_dict``); jobs stored
    before the option existed are dense."""
    return str(config.get("flash_accounting") or "dense")


def accounted_flash_field(flash_accounting: str) -> str:
    """The trial field the flash limit applies to under ``flash_accounting``: the one place
    that decides it (the driver's limit check, the front, ``/best``, the listings)."""
    try:
        return ACCOUNTED_FLASH_FIELDS[flash_accounting]
    except KeyError:
        raise ValueError(
            f"unknown flash accounting {flash_accounting!r}; expected one of "
            f"{', '.join(ACCOUNTED_FLASH_FIELDS)}"
        ) from None


def accounted_flash(flash_accounting: str, values: Mapping[str, Any]) -> Any:
    """The flash number of ``values`` (estimates or a trial's JSON) that the job's limit
    applies to."""
    return values[accounted_flash_field(flash_accounting)]
