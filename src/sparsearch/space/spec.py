"""Plain-data descriptions of a candidate: architecture, pruning, training.

These frozen dataclasses cross every boundary (driver -> Ray worker -> storage -> API), so they
hold only numbers and strings and round-trip through ``to_dict``/``from_dict`` (JSON-safe).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sparsearch.errors import SpaceError
from sparsearch.vocabulary import NO_PRUNING, PRUNING_METHODS

BlockKind = Literal["conv", "dsconv"]
Downsample = Literal["none", "stride", "pool"]
HeadPool = Literal["gap", "flatten"]

BLOCK_KINDS: tuple[str, ...] = ("conv", "dsconv")
DOWNSAMPLES: tuple[str, ...] = ("none", "stride", "pool")
HEAD_POOLS: tuple[str, ...] = ("gap", "flatten")


@dataclass(frozen=True)
class BlockSpec:
    """One block: a conv (k x k) or depthwise-separable conv (k x k depthwise + 1x1 pointwise),
    BatchNorm + ReLU after each conv, then optional downsampling: ``stride`` (stride 2 in the
    k x k conv) or ``pool`` (2x2 max-pool after the block). On a one-row model input the block
    is 1-D: 1 x k kernels, stride 2 and a 1 x 2 max-pool along the length only."""

    kind: BlockKind
    kernel: int
    channels: int
    downsample: Downsample = "none"


@dataclass(frozen=True)
class ArchSpec:
    """A sequential CNN for a given input: blocks, then a head (global average pool or flatten,
    an optional hidden dense layer of ``head_units``, then the classifier)."""

    input_shape: tuple[int, int, int]  # dataset resolution, (C, H, W)
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    input_scale: float = 1.0
    head_pool: HeadPool = "gap"
    head_units: int = 0

    @property
    def model_input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) the model sees after input scaling (at least 1x1)."""
        c, h, w = self.input_shape
        return c, max(1, round(h * self.input_scale)), max(1, round(w * self.input_scale))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["blocks"] = [asdict(b) for b in self.blocks]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ArchSpec:
        return cls(
            input_shape=tuple(int(v) for v in d["input_shape"]),  # type: ignore[arg-type]
            num_classes=int(d["num_classes"]),
            blocks=tuple(BlockSpec(**b) for b in d["blocks"]),
            input_scale=float(d.get("input_scale", 1.0)),
            head_pool=d.get("head_pool", "gap"),
            head_units=int(d.get("head_units", 0)),
        )


@dataclass(frozen=True)
class PruningSpec:
    """How a candidate is pruned. ``method`` is a registered pruning method name or ``none``;
    ``level`` in [0, 0.95] is the fraction removed of what the method counts (filters for the
    structured methods, weights for the unstructured ones; the complexity-driven method removes
    that fraction of its mode's complexity). ``options`` holds the method's knobs and schedule
    (``vocabulary.PRUNING_METHODS[method].knobs``); a knob left out takes its default."""

    method: str = NO_PRUNING
    level: float = 0.0
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.options and self.method in PRUNING_METHODS:
            try:
                checked = PRUNING_METHODS[self.method].check_options(self.options)
            except ValueError as e:
                raise SpaceError(
                    str(e), "see `sparsearch prune --help` for each method's options"
                ) from None
            object.__setattr__(self, "options", checked)

    @property
    def active(self) -> bool:
        return self.method != NO_PRUNING and self.level > 0

    def option(self, name: str) -> Any:
        """The value of knob ``name``: the one given, else the method's default."""
        if name in self.options:
            return self.options[name]
        info = PRUNING_METHODS[self.method]
        if name == "schedule":
            return info.schedules[0]
        if name == "steps":
            return DEFAULT_STEPS
        return info.knob(name).default

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "level": self.level}
        if self.options:
            d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PruningSpec:
        if not d:
            return cls()
        return cls(
            method=d.get("method", NO_PRUNING),
            level=float(d.get("level", 0.0)),
            options=dict(d.get("options") or {}),
        )


#: Steps of an iterative schedule when none is given.
DEFAULT_STEPS = 3


@dataclass(frozen=True)
class TrainSpec:
    """How a candidate is trained: epochs before pruning, fine-tune epochs after it."""

    lr: float = 3e-3
    epochs: int = 6
    finetune_epochs: int = 2
    batch_size: int = 64
    seed: int = 0


@dataclass(frozen=True)
class TrialSpec:
    """Everything a worker needs to run one trial, and nothing that needs a database."""

    arch: ArchSpec
    pruning: PruningSpec = field(default_factory=PruningSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    export_onnx: bool = True
    #: Export the int8 model and measure it on TFLite Micro (the trial's real flash / RAM and
    #: int8 accuracy). Off only where a test or tool wants the float model alone.
    deploy: bool = True
    #: Names the model in the files it ships as (e.g. "job 3f2a... trial 7").
    label: str = ""
    #: A final training: on the whole training split (train + validation), scored on the
    #: whole test split (``finalize``).
    final: bool = False
    #: The job's deployment target: under ``c`` a C model that cannot be generated, built or
    #: matched to TFLM fails the trial; under ``tflm`` its numbers are left null with why.
    target: str = "tflm"

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "pruning": self.pruning.to_dict(),
            "train": asdict(self.train),
            "export_onnx": self.export_onnx,
            "deploy": self.deploy,
            "label": self.label,
            "final": self.final,
            "target": self.target,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrialSpec:
        return cls(
            arch=ArchSpec.from_dict(d["arch"]),
            pruning=PruningSpec.from_dict(d.get("pruning")),
            train=TrainSpec(**d.get("train", {})),
            export_onnx=bool(d.get("export_onnx", True)),
            deploy=bool(d.get("deploy", True)),
            label=str(d.get("label", "")),
            final=bool(d.get("final", False)),
            target=str(d.get("target", "tflm")),
        )
