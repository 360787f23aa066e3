"""Plain-data descriptions of a candidate: architecture, pruning, training.

These frozen dataclasses cross every boundary (driver -> Ray worker -> storage -> API), so they
hold only numbers and strings and round-trip through ``to_dict``/``from_dict`` (JSON-safe).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from sparsearch.vocabulary import NO_PRUNING, STRUCTURED_METHODS

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
    """How a trained model is pruned. ``method`` is a registered pruning method name or ``none``;
    ``level`` in [0, 0.95] is the fraction removed (filters for structured methods, weights for
    unstructured ones)."""

    method: str = NO_PRUNING
    level: float = 0.0

    @property
    def active(self) -> bool:
        return self.method != NO_PRUNING and self.level > 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PruningSpec:
        return cls(**d) if d else cls()


def pruned_width(width: int, level: float) -> int:
    """Channels left after removing a fraction ``level`` of ``width`` filters (at least one).

    The one place this rounding lives: the estimator and the structured pruners both use it, so
    the estimated cost and the pruned model always agree."""
    return max(1, width - int(math.floor(level * width + 1e-9)))


def effective_arch(arch: ArchSpec, pruning: PruningSpec) -> ArchSpec:
    """The architecture that exists after pruning. Structured methods shrink every block's
    channels and the hidden dense layer; unstructured ones keep shapes (they only add zeros)."""
    if not pruning.active or pruning.method not in STRUCTURED_METHODS:
        return arch
    blocks = tuple(
        replace(b, channels=pruned_width(b.channels, pruning.level)) for b in arch.blocks
    )
    units = pruned_width(arch.head_units, pruning.level) if arch.head_units else 0
    return replace(arch, blocks=blocks, head_units=units)


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "pruning": self.pruning.to_dict(),
            "train": asdict(self.train),
            "export_onnx": self.export_onnx,
            "deploy": self.deploy,
            "label": self.label,
            "final": self.final,
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
        )
