"""What a search job asks for: data set, hard limits, budget, seed, flash accounting, space.

The one validated description of a job, shared by the CLI, the API, storage (as JSON in the job
row) and the driver. Validation errors say what was wrong and what to do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sparsearch.errors import ConfigError
from sparsearch.space.params import SpaceConfig
from sparsearch.vocabulary import (
    DEFAULT_STRATEGY,
    FLASH_ACCOUNTINGS,
    PRUNING_CHOICES,
    PRUNING_METHODS,
    STRATEGIES,
    STRUCTURED_METHODS,
)

# The product's caps on a job, wherever it is created (CLI, API, a script). A server may set a
# lower trial budget per job (``SPARSEARCH_MAX_TRIALS``, a policy of that deployment); the
# API's schema takes every other bound from here.
#: Largest flash or RAM limit: far above any microcontroller, low enough to catch typos.
MAX_BYTES = 1 << 30
#: Largest MACs limit.
MAX_MACS = 10**12
MAX_TRIALS = 10_000
MAX_PARALLEL = 64
MAX_EPOCHS = 200


@dataclass(frozen=True)
class Limits:
    """Hard limits in bytes (``macs`` optional). Candidates over a limit are never trained.

    ``ram_margin_bytes``: RAM of the limit kept free for what the reference-kernel arena does
    not count (CMSIS-NN scratch buffers, the application): a model must fit
    ``ram_bytes - ram_margin_bytes`` (:attr:`model_ram_bytes`)."""

    flash_bytes: int
    ram_bytes: int
    macs: int | None = None
    ram_margin_bytes: int = 0

    @property
    def model_ram_bytes(self) -> int:
        """The RAM a model may use: the limit less the margin."""
        return self.ram_bytes - self.ram_margin_bytes

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
class JobConfig:
    dataset: str
    limits: Limits
    budget: Budget
    seed: int = 0
    flash_accounting: str = "dense"
    space: SpaceConfig = field(default_factory=SpaceConfig)
    train_limit: int | None = None  # stratified subset of the training split (benchmarks)
    strategy: str = DEFAULT_STRATEGY

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
                "use --flash-accounting sparse to search unstructured pruning",
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
    ) -> JobConfig:
        if flash_accounting not in FLASH_ACCOUNTINGS:
            raise ConfigError(
                f"flash_accounting must be one of {FLASH_ACCOUNTINGS}, got {flash_accounting!r}"
            )
        return cls(
            dataset=dataset,
            limits=Limits(flash_bytes, ram_bytes, macs, ram_margin_bytes),
            budget=Budget(trials, parallel, epochs),
            seed=seed,
            flash_accounting=flash_accounting,
            space=space or default_space(flash_accounting),
            train_limit=train_limit,
            strategy=strategy,
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["space"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["space"].items()}
        return d

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
        )

    def with_budget(self, **changes: Any) -> JobConfig:
        return replace(self, budget=replace(self.budget, **changes))
