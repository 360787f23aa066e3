"""Request and response models of the REST API (one per use: create, public, page).

Every number has an upper bound, unknown fields are rejected, strings refuse NUL; limits must be
integers (``StrictInt``: ``1.5`` or ``"1024"`` is a 422, not silently rounded or parsed). The
integers that routes take in paths and queries are defined here too, beside those of bodies.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictInt, create_model

from sparsearch.datasets import BUILTIN_DATASETS
from sparsearch.jobconfig import (
    MAX_BYTES,
    MAX_EPOCHS,
    MAX_INSTRUCTIONS,
    MAX_MACS,
    MAX_PARALLEL,
    MAX_TRIALS,
)
from sparsearch.space.params import KERNEL_SIZES
from sparsearch.storage.records import DATASET_ID_PATTERN, TrialInfo
from sparsearch.vocabulary import (
    DEFAULT_STRATEGY,
    DEFAULT_TARGET,
    FLASH_ACCOUNTINGS,
    PRUNING_CHOICES,
    STRATEGIES,
    TARGETS,
)

T = TypeVar("T")

PruningName = Literal[PRUNING_CHOICES]  # type: ignore[valid-type]
FlashAccounting = Literal[FLASH_ACCOUNTINGS]  # type: ignore[valid-type]
BuiltinDataset = Literal[BUILTIN_DATASETS]  # type: ignore[valid-type]
Strategy = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
Target = Literal[TARGETS]  # type: ignore[valid-type]
#: What a job's ``target`` means (``JobCreate``, ``JobPublic``, finalize), as the CLI's help says.
TARGET_DESCRIPTION = (
    "What the limits measure: `c` = the interpreter-free C model as Cortex-M4 firmware (flash "
    "it adds, static RAM + peak stack); `tflm` = the .tflite on TensorFlow Lite Micro (model "
    "file, tensor arena). Sparse flash accounting is for `tflm` only"
)

# -- integers -----------------------------------------------------------------------------------
# Every integer a request carries (body, path or query) is bounded at the edge by at most what
# its column holds, so none reaches the database to fail there: past a signed 64 bits SQLite
# raises OverflowError (a 500), and past 32 bits PostgreSQL refuses an INTEGER column (a 503).
# Path and query values arrive as text, so these types parse; body fields add ``Strict()``.

#: Trial indices: ``trials.index`` is an INTEGER column (signed 32-bit on PostgreSQL).
TRIAL_INDEX_MAX = 2**31 - 1
PAGE_LIMIT_MAX = 1000
#: Far past any listing, well inside the 64-bit OFFSET both databases take.
PAGE_OFFSET_MAX = 10**9

TrialIndex = Annotated[
    int, Field(ge=0, le=TRIAL_INDEX_MAX, description="A trial's index in its job")
]
PageLimit = Annotated[int, Field(ge=1, le=PAGE_LIMIT_MAX, description="Page size")]
PageOffset = Annotated[int, Field(ge=0, le=PAGE_OFFSET_MAX, description="Items to skip")]
ByteCount = Annotated[int, Field(ge=1, le=MAX_BYTES)]
Bytes = Annotated[ByteCount, Strict()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LimitsIn(_Strict):
    flash_bytes: Bytes = Field(description="Flash limit in bytes")
    ram_bytes: Bytes = Field(description="RAM limit in bytes")
    macs: Annotated[StrictInt, Field(ge=1, le=MAX_MACS)] | None = Field(
        default=None, description="Optional limit on multiply-accumulates per inference"
    )
    ram_margin_bytes: Annotated[StrictInt, Field(ge=0, le=MAX_BYTES)] = Field(
        default=0,
        description="RAM of the limit kept free for what the TFLM reference-kernel arena does "
        "not count (CMSIS-NN scratch buffers, the application): models must fit "
        "ram_bytes - ram_margin_bytes",
    )
    instructions: Annotated[StrictInt, Field(ge=1, le=MAX_INSTRUCTIONS)] | None = Field(
        default=None,
        description="Optional latency budget: Cortex-M4 instructions per inference, as "
        "measured in the emulator (target `c` only; a `tflm` job with one is a 422)",
    )


class BudgetIn(_Strict):
    trials: Annotated[StrictInt, Field(ge=1, le=MAX_TRIALS)] = Field(
        description="Trained trials (completed + failed); at most the server's max_trials"
    )
    parallel: Annotated[StrictInt, Field(ge=1, le=MAX_PARALLEL)] = 1
    epochs: Annotated[StrictInt, Field(ge=1, le=MAX_EPOCHS)] = 6


class SpaceIn(_Strict):
    """Overrides of the default search space; omitted fields keep their defaults."""

    max_blocks: Annotated[StrictInt, Field(ge=1, le=6)] | None = None
    kernels: list[Literal[KERNEL_SIZES]] | None = Field(  # type: ignore[valid-type]
        default=None, min_length=1, max_length=len(KERNEL_SIZES)
    )
    channels: (
        tuple[Annotated[StrictInt, Field(ge=1, le=512)], Annotated[StrictInt, Field(ge=1, le=512)]]
        | None
    ) = None
    head_units: list[Annotated[StrictInt, Field(ge=0, le=1024)]] | None = Field(
        default=None, min_length=1, max_length=8
    )
    input_scales: list[Annotated[float, Field(gt=0, le=1)]] | None = Field(
        default=None, min_length=1, max_length=4
    )
    lr: tuple[Annotated[float, Field(gt=0, le=1)], Annotated[float, Field(gt=0, le=1)]] | None = (
        None
    )
    prune_level: (
        tuple[Annotated[float, Field(ge=0, le=0.95)], Annotated[float, Field(ge=0, le=0.95)]] | None
    ) = None


DatasetId = Annotated[str, Field(pattern=DATASET_ID_PATTERN, max_length=15)]


class JobCreate(_Strict):
    dataset: BuiltinDataset | DatasetId = Field(
        description="A built-in data set, or the id of a dataset you uploaded "
        "(`POST /v1/datasets`); file paths are for the local CLI only"
    )
    limits: LimitsIn
    budget: BudgetIn
    seed: Annotated[StrictInt, Field(ge=0, le=2**31 - 1)] = 0
    flash_accounting: FlashAccounting = "dense"
    pruning_methods: list[PruningName] | None = Field(
        default=None,
        min_length=1,
        max_length=len(PRUNING_CHOICES),
        description="Pruning methods the search may use (default: none and the structured "
        "methods; sparse accounting adds the unstructured ones)",
    )
    space: SpaceIn | None = None
    strategy: Strategy = Field(
        default=DEFAULT_STRATEGY,
        description="How candidates are proposed: "
        + "; ".join(f"`{s.name}`: {s.description}" for s in STRATEGIES.values()),
    )
    target: Target = Field(default=DEFAULT_TARGET, description=TARGET_DESCRIPTION)
    early_stopping: bool = Field(
        default=False,
        description="Stop a trial whose accuracy, extrapolated optimistically at its known "
        "costs, could not join the front (its epochs so far count against the budget)",
    )


class Progress(BaseModel):
    budget: int
    trained: int = Field(
        description="Trials counted against the budget: charged completed + failed"
    )
    completed: int
    running: int
    failed: int = Field(description="Charged failed trials")
    infeasible: int
    uncharged: int = Field(
        description="Trials cut short by a graceful stop (failed, not counted against the budget)"
    )
    screened: int = Field(
        description="Candidates rejected by estimate before being stored as trials"
    )
    over_limit: int = Field(
        default=0,
        description="Completed trials over a limit as measured (kept, never on the front)",
    )
    stopped: int = Field(
        default=0,
        description="Trials early stopping ended (their epochs so far count against the budget)",
    )


class JobPublic(BaseModel):
    id: str
    status: str
    owner: str
    dataset: str
    limits: dict[str, int | None]
    budget: dict[str, int]
    seed: int
    flash_accounting: str
    strategy: str = Field(description="The search strategy; `finalize` for a finalize job")
    target: str = Field(description=TARGET_DESCRIPTION)
    early_stopping: bool = Field(
        default=False, description="Whether the job stops trials that cannot join the front"
    )
    finalizes: str | None = Field(
        default=None, description="A finalize job: the job whose trials it retrains"
    )
    progress: Progress
    best_accuracy: float | None
    hypervolume: float | None
    error: str | None
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Page(BaseModel, Generic[T]):
    data: list[T]
    count: int = Field(description="Total number of matching items (not just this page)")


class HypervolumePoint(BaseModel):
    """The job's front after one refresh (``GET /v1/jobs/{id}/hypervolume``)."""

    trained: int = Field(description="Trials counted against the budget at that refresh")
    hypervolume: float = Field(description="Normalized hypervolume of the front, in [0, 1]")
    best_accuracy: float | None = Field(
        description="Best objective accuracy on the front (int8 where measured); null: none"
    )


def _trial_public() -> type[BaseModel]:
    """``TrialPublic``: the fields of storage's ``TrialInfo`` (the one list of a trial's JSON
    fields), their types and, where a field documents itself, its description."""
    hints = get_type_hints(TrialInfo)
    return create_model(  # type: ignore[call-overload, no-any-return]
        "TrialPublic",
        **{
            f.name: (hints[f.name], Field(description=f.metadata.get("doc")))
            for f in dataclasses.fields(TrialInfo)
        },
    )


#: A trial as the API returns it (``GET …/trials``, ``…/trials/{index}``).
TrialPublic = _trial_public()


class FrontTrialPublic(TrialPublic):  # type: ignore[misc, valid-type]
    """A trial of a job's front (``/pareto``, ``/best``), with the flash its limit counts."""

    flash_accounting: Literal[FLASH_ACCOUNTINGS] = Field(  # type: ignore[valid-type]
        description="The job's flash accounting: what its flash limit and front count"
    )
    accounted_flash_bytes: int | None = Field(
        description="The flash the job's limit applies to: `flash_bytes` (the dense int8 "
        "flatbuffer) under dense accounting, `nnz_flash_bytes` (non-zero weights) under sparse"
    )
    runtime_flash: dict[str, Any] = Field(
        description="The TFLite Micro runtime's own flash, which comes on top of the model's "
        "`flash_bytes`: a measured range and where it comes from"
    )


class ArtifactPublic(BaseModel):
    kind: str
    filename: str
    size_bytes: int
    sha256: str
    url: str
    final: bool = Field(
        default=False, description="A file of the trial's final training (finalize)"
    )


class DatasetPublic(BaseModel):
    id: str = Field(description="Use it as a job's `dataset`")
    name: str
    owner: str
    size_bytes: int = Field(description="Size of the uploaded .npz file")
    sha256: str
    num_classes: int
    input_shape: list[int] = Field(description="[C, H, W] of one image")
    n_train: int = Field(description="Training samples (a job carves its validation split here)")
    n_test: int
    created_at: datetime


class Health(BaseModel):
    database: Literal["ok", "unreachable"]
    scheduler: Literal["running", "none", "stale", "unknown"]


class Problem(BaseModel):
    """Error body: what was wrong (``detail``) and what to do (``hint``)."""

    detail: str
    hint: str | None = None
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field validation errors (422 only)"
    )
