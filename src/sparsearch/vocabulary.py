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

#: Every trial status. ``stopped``: early stopping ended its training (its curve and estimates
#: are kept; it is never exported nor on the front).
TRIAL_STATUSES: tuple[str, ...] = (
    "queued",
    "running",
    "completed",
    "failed",
    "infeasible",
    "stopped",
)
#: Trial statuses after which a trial has a ``finished_at``.
FINISHED_TRIAL_STATUSES: tuple[str, ...] = ("completed", "failed", "infeasible", "stopped")
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
        ArtifactKind(
            "c_project",
            "zip",
            "application/zip",
            "interpreter-free C model + Cortex-M4 demo project (make run in QEMU)",
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
#: Both deployment targets' measured numbers, stored with every trained trial (null where a
#: target was not measured; ``c_error`` says why): the TFLM target's model file and arena, and
#: the C target's firmware (``worker.c_target``): flash the model adds to a Cortex-M4 image,
#: static RAM + peak stack, the peak stack alone, instructions per inference.
TARGET_METRICS: tuple[str, ...] = (
    "tflm_flash_bytes",
    "tflm_ram_bytes",
    "c_flash_bytes",
    "c_ram_bytes",
    "c_stack_bytes",
    "instructions",
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


#: When a method acts on a candidate: on its architecture before training (the pruned network is
#: trained once from scratch), inside training (a loss term or a layer swap), or on the trained
#: model (with fine-tuning after).
PRUNING_STAGES: tuple[str, ...] = ("before_training", "during_training", "after_training")

#: How pruning and training interleave; ``sparsearch.pruning.schedule.Schedule`` runs them.
#: ``one_shot``: prune once, fine-tune. ``iterative``: k steps of prune a share, fine-tune.
#: ``train_once``: prune the architecture, train it once (no fine-tuning). ``layerwise``: one
#: layer at a time, induce sparsity -> select -> remove, then fine-tune.
PRUNING_SCHEDULES: tuple[str, ...] = ("one_shot", "iterative", "train_once", "layerwise")


@dataclass(frozen=True)
class KnobInfo:
    """One setting of a pruning method: a choice (``values``) or a range (``bounds``). A
    ``searched`` knob is a dimension of the default search space (``prune_<method>_<knob>``);
    the others keep their default in a search and are set by hand in ``sparsearch prune``."""

    name: str
    default: Any
    description: str
    values: tuple[Any, ...] | None = None
    bounds: tuple[float, float] | None = None
    integer: bool = False
    log: bool = False
    searched: bool = False

    def check(self, method: str, value: Any) -> Any:
        """``value`` as this knob's type, or ValueError saying what is allowed."""
        if self.values is not None:
            if isinstance(value, bool) or value not in self.values:
                allowed = ", ".join(str(v) for v in self.values)
                raise ValueError(f"{method} {self.name}={value!r} is not one of {allowed}")
            return value
        assert self.bounds is not None
        lo, hi = self.bounds
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{method} {self.name}={value!r} is not a number") from None
        if isinstance(value, bool) or not lo <= number <= hi or (self.integer and number % 1):
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"{method} {self.name}={value!r} is not {kind} in [{lo}, {hi}]")
        return int(number) if self.integer else number


@dataclass(frozen=True)
class PruningMethodInfo:
    """What the rest of the product needs to know of a pruning method without importing it."""

    name: str
    #: Removes whole filters (shapes shrink, so dense flash and RAM shrink) rather than
    #: zeroing single weights (only the non-zero count shrinks).
    structured: bool
    description: str
    #: One of PRUNING_STAGES.
    stage: str = "after_training"
    #: What the method needs beyond the model: ``sample`` (representative training images),
    #: ``training`` (the training loop itself: a loss term, a step hook, a layer swap).
    needs: tuple[str, ...] = ()
    #: The schedules it supports (PRUNING_SCHEDULES), the first being its default.
    schedules: tuple[str, ...] = ("one_shot",)
    knobs: tuple[KnobInfo, ...] = ()
    #: True when ``level`` fixes the pruned widths (or non-zero count) before training, so the
    #: search's estimate is the trained model's cost. False when training decides (a sparsity
    #: or log-alpha threshold): the method removes at least ``level`` and the estimate at that
    #: level is an upper bound; the measured size decides feasibility.
    exact_cost: bool = True
    #: The text in ``seeds/`` (and the paper) the method comes from.
    source: str = ""

    def knob(self, name: str) -> KnobInfo:
        for k in self.knobs:
            if k.name == name:
                return k
        raise KeyError(name)

    def check_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked against the knobs (and ``schedule``/``steps``); ValueError names
        the first bad one and what is allowed."""
        out: dict[str, Any] = {}
        names = {k.name for k in self.knobs}
        for key, value in options.items():
            if key == "schedule":
                if value not in self.schedules:
                    raise ValueError(
                        f"{self.name} does not support schedule {value!r} "
                        f"(it supports {', '.join(self.schedules)})"
                    )
                out[key] = value
            elif key == "steps":
                if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 20:
                    raise ValueError(f"steps={value!r} is not an integer from 1 to 20")
                out[key] = value
            elif key in names:
                out[key] = self.knob(key).check(self.name, value)
            else:
                allowed = ", ".join(["schedule", "steps", *sorted(names)])
                raise ValueError(f"{self.name} has no option {key!r} (options: {allowed})")
        return out


#: Every pruning method; ``sparsearch.pruning`` maps each name to its implementation.
PRUNING_METHODS: dict[str, PruningMethodInfo] = {
    m.name: m
    for m in (
        PruningMethodInfo(
            "complexity",
            True,
            "complexity-driven: shrink the architecture before training (layers drawn by their "
            "share of params / FLOPs / memory), train it once",
            stage="before_training",
            schedules=("train_once",),
            knobs=(
                KnobInfo(
                    "mode",
                    "params",
                    "the complexity measured: params (PA), flops (FA) or memory (MA)",
                    values=("params", "flops", "memory"),
                    searched=True,
                ),
                KnobInfo(
                    "step",
                    0.1,
                    "fraction of a drawn layer's filters removed a step",
                    bounds=(0.01, 0.5),
                ),
                KnobInfo("seed", 0, "seed of the layer draws", bounds=(0, 2**31 - 1), integer=True),
            ),
            source="seed 001 (complexity-driven CNN compression)",
        ),
        PruningMethodInfo(
            "filter_norm",
            True,
            "remove the filters of lowest L1/L2 norm",
            schedules=("one_shot", "iterative"),
            knobs=(
                KnobInfo("p", 1, "the filter norm: 1 (L1) or 2 (L2)", values=(1, 2), searched=True),
            ),
            source="seed 002 (Li et al. 2016, pruning filters for efficient ConvNets)",
        ),
        PruningMethodInfo(
            "magnitude",
            False,
            "zero the weights of smallest magnitude",
            schedules=("one_shot", "iterative"),
            knobs=(
                KnobInfo(
                    "scope",
                    "layer",
                    "threshold per layer or one global threshold over all layers",
                    values=("layer", "global"),
                    searched=True,
                ),
            ),
            source="seed 002 (Han et al. 2015, learning both weights and connections)",
        ),
        PruningMethodInfo(
            "relevance",
            True,
            "remove the filters whose mean activation over a data sample is lowest",
            needs=("sample",),
            schedules=("one_shot", "iterative"),
            knobs=(
                KnobInfo(
                    "criterion",
                    "fraction",
                    "fraction: remove `level` of each layer's filters; threshold: also remove "
                    "every filter below `threshold` x the layer's mean relevance",
                    values=("fraction", "threshold"),
                ),
                KnobInfo(
                    "threshold",
                    0.1,
                    "relative relevance below which a filter goes",
                    bounds=(0.0, 1.0),
                ),
                KnobInfo(
                    "samples", 512, "training images in the sample", bounds=(16, 8192), integer=True
                ),
            ),
            source="seed 003 (activation-based relevance pruning)",
        ),
        PruningMethodInfo(
            "sparsity_induction",
            True,
            "train with a group-lasso penalty, remove the filters whose weights went to zero",
            stage="during_training",
            needs=("training",),
            schedules=("layerwise", "one_shot"),
            knobs=(
                KnobInfo(
                    "threshold",
                    0.5,
                    "a filter whose share of weights in all-zero groups exceeds this is removed",
                    bounds=(0.05, 0.95),
                    searched=True,
                ),
                KnobInfo(
                    "strength",
                    0.3,
                    "group-lasso strength: each proximal step shrinks a group by strength x lr "
                    "x sqrt(group size); below about 0.1 a fine-tuning budget zeroes no group, "
                    "above 0.5 a layer without BatchNorm may collapse",
                    bounds=(0.01, 1.0),
                    log=True,
                    searched=True,
                ),
            ),
            exact_cost=False,
            source="seed 000 (multilayer sparsity-induced pruning framework)",
        ),
        PruningMethodInfo(
            "variational_dropout",
            False,
            "sparse variational dropout: learn a dropout rate per weight, zero those with "
            "log alpha above a threshold",
            stage="during_training",
            needs=("training",),
            knobs=(
                KnobInfo(
                    "threshold",
                    3.0,
                    "log alpha above which a weight is zeroed",
                    bounds=(0.0, 6.0),
                    searched=True,
                ),
                KnobInfo(
                    "kl_weight",
                    1.0,
                    "weight of the KL term (per training image)",
                    bounds=(0.0, 10.0),
                ),
            ),
            exact_cost=False,
            source="seed 004 (SpArSe; Molchanov et al. 2017, sparse variational dropout)",
        ),
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
        StrategyInfo(
            "bo",
            "multi-objective Bayesian optimization: a BoTorch GP on accuracy, and the exact "
            "expected hypervolume improvement over estimate-feasible candidates",
        ),
        StrategyInfo("random", "feasible space-filling (scrambled Sobol) sampling"),
        StrategyInfo("nsga2", "NSGA-II genetic algorithm (Optuna)"),
        StrategyInfo("evolution", "aging evolution with random scalarization (muNAS-style)"),
    )
}
#: The strategy a job gets when it names none.
DEFAULT_STRATEGY = "bo"

# --- deployment targets -----------------------------------------------------------------------

#: What a job deploys to, and so what its limits, objectives and front measure (docs/deployment.md):
#: ``c``, the interpreter-free C model built as Cortex-M4 firmware (flash it adds to an image,
#: static RAM + peak stack); ``tflm``, the ``.tflite`` on TensorFlow Lite Micro (the model file,
#: the tensor arena; the interpreter's own code not counted).
TARGETS: tuple[str, ...] = ("c", "tflm")
#: The target of a job that names none.
DEFAULT_TARGET = "c"
#: Per target, the trial fields of its measured flash, RAM and activation numbers.
TARGET_FIELDS: dict[str, tuple[str, str]] = {
    "c": ("c_flash_bytes", "c_ram_bytes"),
    "tflm": ("tflm_flash_bytes", "tflm_ram_bytes"),
}


def target_of(config: Mapping[str, Any]) -> str:
    """A job's target from its stored config (``JobConfig.to_dict``); jobs stored before
    targets existed deployed to TFLM."""
    return str(config.get("target") or "tflm")


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
