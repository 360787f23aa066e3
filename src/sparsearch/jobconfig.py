"""What a search job asks for: data set, hard limits, budget, seed, flash accounting, space.

The one validated description of a job, shared by the CLI, the API, storage (as JSON in the job
row) and the driver. Validation errors say what was wrong and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sparsearch.errors import ConfigError, NotFoundError
from sparsearch.space.params import SpaceConfig
from sparsearch.vocabulary import (
    DEFAULT_STRATEGY,
    DEFAULT_TARGET,
    FLASH_ACCOUNTINGS,
    PRUNING_CHOICES,
    PRUNING_METHODS,
    STRATEGIES,
    STRUCTURED_METHODS,
    TARGETS,
    target_of,
)

# The product's caps on a job, wherever it is created (CLI, API, a script). A server may set a
# lower trial budget per job (``SPARSEARCH_MAX_TRIALS``, a policy of that deployment); the
# API's schema takes every other bound from here.
#: Largest flash or RAM limit: far above any microcontroller, low enough to catch typos.
MAX_BYTES = 1 << 30
#: Largest MACs limit.
MAX_MACS = 10**12
#: Largest instructions limit (Cortex-M4 instructions per inference, target ``c``).
MAX_INSTRUCTIONS = 10**12
MAX_TRIALS = 10_000
MAX_PARALLEL = 64
MAX_EPOCHS = 200


@dataclass(frozen=True)
class Limits:
    """Hard limits in bytes (``macs`` and ``instructions`` optional). Candidates over a limit
    (by estimate) are never trained; a trial over one as measured is kept infeasible.

    ``instructions``: a latency budget, Cortex-M4 instructions per inference (target ``c``).

    ``ram_margin_bytes``: RAM of the limit kept free for what the reference-kernel arena does
    not count (CMSIS-NN scratch buffers, the application): a model must fit
    ``ram_bytes - ram_margin_bytes`` (:attr:`model_ram_bytes`)."""

    flash_bytes: int
    ram_bytes: int
    macs: int | None = None
    ram_margin_bytes: int = 0
    instructions: int | None = None

    @property
    def model_ram_bytes(self) -> int:
        """The RAM a model may use: the limit less the margin."""
        return self.ram_bytes - self.ram_margin_bytes

    def fits(
        self, flash: int, ram: int, macs: int | None = None, instructions: int | None = None
    ) -> bool:
        """Whether a model of ``flash`` (as the job accounts it), ``ram``, ``macs`` and
        ``instructions`` is within every limit: the one rule, for estimates and measurements
        alike. None (a limit or a value) is unlimited or unknown: it never refuses."""
        return (
            flash <= self.flash_bytes
            and ram <= self.model_ram_bytes
            and (self.macs is None or macs is None or macs <= self.macs)
            and (
                self.instructions is None
                or instructions is None
                or instructions <= self.instructions
            )
        )

    def misses(
        self, flash: int, ram: int, macs: int | None = None, instructions: int | None = None
    ) -> list[str]:
        """What :meth:`fits` refuses, one phrase per limit, e.g. ``"RAM 6244 B > 6144 B"``."""
        out = []
        if flash > self.flash_bytes:
            out.append(f"flash {flash} B > {self.flash_bytes} B")
        if ram > self.model_ram_bytes:
            out.append(f"RAM {ram} B > {self.model_ram_bytes} B")
        if self.macs is not None and macs is not None and macs > self.macs:
            out.append(f"MACs {macs} > {self.macs}")
        if (
            self.instructions is not None
            and instructions is not None
            and instructions > self.instructions
        ):
            out.append(f"instructions {instructions} > {self.instructions}")
        return out

    def __post_init__(self) -> None:
        margin = self.ram_margin_bytes
        if isinstance(margin, bool) or not isinstance(margin, int) or margin < 0:
            raise ConfigError(
                f"ram_margin_bytes must be a non-negative integer, got {margin!r}",
                "give a size like 1KiB, or 0 for no margin",
            )
        for name, top in (("flash_bytes", MAX_BYTES), ("ram_bytes", MAX_BYTES), ("macs", MAX_MACS)):
            value = getattr(self, name)
            if value is None and name == "macs":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(
                    f"limit {name} must be a positive integer, got {value!r}",
                    "give sizes like 24KiB or 6144",
                )
            if value > top:
                raise ConfigError(
                    f"limit {name} is {value}, above the largest accepted ({top})",
                    "check the units: 24KiB is 24576 bytes",
                )
        n = self.instructions
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
                raise ConfigError(
                    f"limit instructions must be a positive integer, got {n!r}",
                    "give Cortex-M4 instructions per inference, e.g. 2000000",
                )
            if n > MAX_INSTRUCTIONS:
                raise ConfigError(
                    f"limit instructions is {n}, above the largest accepted ({MAX_INSTRUCTIONS})",
                    "give instructions per inference, e.g. 2000000 (about 12 ms at 168 MHz)",
                )
        if margin >= self.ram_bytes:
            raise ConfigError(
                f"the RAM margin ({margin} B) leaves nothing of the RAM limit ({self.ram_bytes} B)",
                "use a margin smaller than the RAM limit",
            )


@dataclass(frozen=True)
class Budget:
    """``trials`` counts trained trials (completed + failed); ``parallel`` trials run at once."""

    trials: int
    parallel: int = 1
    epochs: int = 6

    def __post_init__(self) -> None:
        for name, top in (
            ("trials", MAX_TRIALS),
            ("parallel", MAX_PARALLEL),
            ("epochs", MAX_EPOCHS),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
                raise ConfigError(f"{name} must be an integer from 1 to {top}, got {value!r}")

    @property
    def finetune_epochs(self) -> int:
        """Epochs of fine-tuning after pruning: a third of the training epochs, at least one."""
        return max(1, self.epochs // 3)


def default_space(flash_accounting: str) -> SpaceConfig:
    """Every pruning method; unstructured ones only where the flash limit counts non-zeros
    (they cannot shrink a dense model)."""
    if flash_accounting == "sparse":
        return SpaceConfig(pruning_methods=PRUNING_CHOICES)
    return SpaceConfig()  # no pruning and the structured methods


@dataclass(frozen=True)
class FinalizePlan:
    """What a finalize job retrains: trials of job ``job_id`` (``trials``, with the ``params``
    each was searched with, in order), from scratch on the whole training split (train +
    validation) for the job's ``budget.epochs``; results go to those trials' ``final``."""

    job_id: str
    trials: tuple[int, ...]
    params: tuple[dict[str, Any], ...]

    def __post_init__(self) -> None:
        if not self.trials or len(self.trials) != len(self.params):
            raise ConfigError(
                "a finalize job needs at least one trial, each with its parameters",
                "choose trials with --trials 3,7 or --front",
            )
        if len(set(self.trials)) != len(self.trials):
            raise ConfigError(f"trials {list(self.trials)} repeat an index", "list each once")


@dataclass(frozen=True)
class JobConfig:
    dataset: str
    limits: Limits
    budget: Budget
    seed: int = 0
    flash_accounting: str = "dense"
    space: SpaceConfig = field(default_factory=SpaceConfig)
    train_limit: int | None = None  # stratified subset of the training split (benchmarks)
    strategy: str = DEFAULT_STRATEGY
    #: Set on a finalize job: it retrains these trials of another job instead of searching.
    finalize: FinalizePlan | None = None
    #: What the job deploys to: its limits, objectives and front measure this target.
    target: str = DEFAULT_TARGET
    #: Stop a running trial whose accuracy, extrapolated optimistically at its known costs,
    #: could not join the front (``search/stopping.py``); its epochs so far count against the
    #: budget, so more candidates train for the same compute. Off by default until measured.
    early_stopping: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategy {self.strategy!r}",
                f"choose among {', '.join(STRATEGIES)}",
            )
        if self.flash_accounting not in FLASH_ACCOUNTINGS:
            raise ConfigError(
                f"flash_accounting must be one of {FLASH_ACCOUNTINGS}, "
                f"got {self.flash_accounting!r}"
            )
        if self.target not in TARGETS:
            raise ConfigError(
                f"unknown target {self.target!r}",
                f"choose among {', '.join(TARGETS)} (c: interpreter-free C firmware; tflm: "
                "TensorFlow Lite Micro)",
            )
        if self.target == "c" and self.flash_accounting == "sparse":
            raise ConfigError(
                "flash_accounting sparse counts non-zero weights for a sparse TFLM runtime; the "
                "C target measures the firmware as built, with dense kernels",
                "use --target tflm with --flash-accounting sparse, or dense accounting",
            )
        if self.limits.instructions is not None and self.target != "c":
            raise ConfigError(
                f"an instructions limit needs target c: instructions are measured for the C "
                f"target only, not for {self.target}",
                "use --target c with --max-instructions, or drop --max-instructions",
            )
        if not isinstance(self.early_stopping, bool):
            raise ConfigError(f"early_stopping must be true or false, got {self.early_stopping!r}")
        if self.early_stopping and self.finalize is not None:
            raise ConfigError(
                "a finalize job trains every chosen trial to the end", "drop early_stopping"
            )
        if (
            not isinstance(self.seed, int)
            or isinstance(self.seed, bool)
            or not 0 <= self.seed < 2**31
        ):
            raise ConfigError(f"seed must be an integer in [0, 2**31), got {self.seed!r}")
        unstructured = [
            m
            for m in self.space.pruning_methods
            if m in PRUNING_METHODS and m not in STRUCTURED_METHODS
        ]
        if unstructured and self.flash_accounting != "sparse":
            raise ConfigError(
                f"{unstructured[0]} pruning (unstructured) cannot shrink dense flash",
                "use --flash-accounting sparse to search unstructured pruning"
                + (
                    " (with --target tflm: the C target's kernels are dense)"
                    if self.target == "c"
                    else ""
                ),
            )
        if self.train_limit is not None and (
            not isinstance(self.train_limit, int) or self.train_limit < 10
        ):
            raise ConfigError(f"train_limit must be an integer >= 10, got {self.train_limit!r}")
        if not self.dataset or "\x00" in self.dataset:
            raise ConfigError("dataset name is empty or contains NUL")

    @classmethod
    def create(
        cls,
        *,
        dataset: str,
        flash_bytes: int,
        ram_bytes: int,
        trials: int,
        parallel: int = 1,
        epochs: int = 6,
        seed: int = 0,
        macs: int | None = None,
        flash_accounting: str = "dense",
        space: SpaceConfig | None = None,
        train_limit: int | None = None,
        strategy: str = DEFAULT_STRATEGY,
        ram_margin_bytes: int = 0,
        target: str = DEFAULT_TARGET,
        instructions: int | None = None,
        early_stopping: bool = False,
    ) -> JobConfig:
        if flash_accounting not in FLASH_ACCOUNTINGS:
            raise ConfigError(
                f"flash_accounting must be one of {FLASH_ACCOUNTINGS}, got {flash_accounting!r}"
            )
        return cls(
            dataset=dataset,
            limits=Limits(flash_bytes, ram_bytes, macs, ram_margin_bytes, instructions),
            budget=Budget(trials, parallel, epochs),
            seed=seed,
            flash_accounting=flash_accounting,
            space=space or default_space(flash_accounting),
            train_limit=train_limit,
            strategy=strategy,
            target=target,
            early_stopping=early_stopping,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["space"].items()}
        if self.finalize is None:
            del d["finalize"]  # search jobs' configs stay as they were
        else:
            d["finalize"] = {
                "job_id": self.finalize.job_id,
                "trials": list(self.finalize.trials),
                "params": [dict(p) for p in self.finalize.params],
            }
        return d

    def finalizing(
        self,
        source_job: str,
        trials: list[int],
        params: list[dict],
        epochs: int,
        target: str | None = None,
    ) -> JobConfig:
        """The config of a job that retrains ``trials`` of ``source_job`` (this is its config)
        for ``epochs`` on the whole training split: same data, seed, limits and space, and the
        same target unless ``target`` names another (ConfigError where it cannot serve)."""
        plan = FinalizePlan(source_job, tuple(trials), tuple(dict(p) for p in params))
        budget = Budget(len(trials), min(self.budget.parallel, len(trials)), epochs)
        return replace(
            self,
            budget=budget,
            train_limit=None,
            finalize=plan,
            target=self.target if target is None else target,
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JobConfig:
        space = SpaceConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in d.get("space", {}).items()}
        )
        return cls(
            dataset=d["dataset"],
            limits=Limits(**d["limits"]),
            budget=Budget(**d["budget"]),
            seed=d.get("seed", 0),
            flash_accounting=d.get("flash_accounting", "dense"),
            space=space,
            train_limit=d.get("train_limit"),
            # Jobs stored before strategies existed ran Bayesian optimization (then on Ax).
            strategy=d.get("strategy", DEFAULT_STRATEGY),
            target=target_of(d),
            early_stopping=bool(d.get("early_stopping", False)),
            finalize=(
                FinalizePlan(
                    d["finalize"]["job_id"],
                    tuple(int(i) for i in d["finalize"]["trials"]),
                    tuple(dict(p) for p in d["finalize"]["params"]),
                )
                if d.get("finalize")
                else None
            ),
        )

    def with_budget(self, **changes: Any) -> JobConfig:
        return replace(self, budget=replace(self.budget, **changes))


# --- finalize jobs ----------------------------------------------------------------------------

#: A finalize job trains this many times the search's epochs unless told otherwise.
DEFAULT_EPOCH_FACTOR = 4


def plan_finalize(
    storage: Any,
    job_id: str,
    *,
    trials: list[int] | None = None,
    front: bool = False,
    epochs: int | None = None,
    owner: str | None = None,
    target: str | None = None,
) -> tuple[JobConfig, list[int]]:
    """The config of a finalize job for ``job_id``'s ``trials`` (``front``: every front trial;
    neither: the most accurate front trial, int8 where measured), and those indices; its
    target is the job's unless ``target`` names another.
    ConfigError / NotFoundError say what cannot be finalized and why."""
    job = storage.get_job(job_id, owner=owner)
    cfg = JobConfig.from_dict(job.config)
    if cfg.finalize is not None:
        raise ConfigError(
            f"job {job_id} is itself a finalize job",
            f"finalize trials of the search job {cfg.finalize.job_id}",
        )
    if trials and front:
        raise ConfigError("--trials and --front choose trials two ways", "pass one of them")
    if front:
        _, on_front = storage.front(job_id)
        chosen = [t.index for t in on_front]
        if not chosen:
            raise NotFoundError(f"job {job_id} has no trial on its front yet", "wait for one")
    elif trials:
        chosen = list(dict.fromkeys(int(i) for i in trials))
    else:
        _, best = storage.best_front_trial(job_id)
        if best is None:
            raise NotFoundError(
                f"job {job_id} has no trial on its front yet",
                "wait for a trial to complete, or pass --trials N",
            )
        chosen = [best.index]
    params = []
    for index in chosen:
        trial = storage.get_trial(job_id, index)
        if trial.status != "completed":
            raise ConfigError(
                f"trial {index} of job {job_id} is {trial.status}, not completed",
                "finalize completed trials (see `sparsearch pareto`)",
            )
        params.append(trial.params)
    epochs = epochs if epochs is not None else DEFAULT_EPOCH_FACTOR * cfg.budget.epochs
    return cfg.finalizing(job_id, chosen, params, epochs, target), chosen


def mark_queued(storage: Any, finalize_job: Any) -> None:
    """Set every planned trial's final status to queued (right after the job is created)."""
    cfg = JobConfig.from_dict(finalize_job.config)
    assert cfg.finalize is not None
    for index in cfg.finalize.trials:
        storage.set_final(
            cfg.finalize.job_id,
            index,
            {"status": "queued", "job": finalize_job.id, "epochs": cfg.budget.epochs},
        )
