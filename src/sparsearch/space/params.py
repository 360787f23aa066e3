"""The search space as plain parameter definitions, and the decoding of a point into a candidate.

``space/`` owns what a configuration means; ``search/`` (its codec) turns these definitions into
numbers for its strategies. Encoding: a fixed maximum of ``max_blocks`` blocks, each with its own
settings, and ``n_blocks`` saying how many are used. Settings of unused blocks are inactive:
``decode`` ignores them, the codec drops them from a point's canonical form and encodes them as
zeros for the model, so two points that differ only there are the same trial (a flat, honest
encoding).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from sparsearch.errors import ConfigError, SpaceError
from sparsearch.space.spec import (
    BLOCK_KINDS,
    DOWNSAMPLES,
    HEAD_POOLS,
    ArchSpec,
    BlockSpec,
    PruningSpec,
)
from sparsearch.vocabulary import (
    NO_PRUNING,
    PRUNING_CHOICES,
    PRUNING_METHODS,
    STRUCTURED_METHODS,
    KnobInfo,
)

ValueType = Literal["int", "float", "str"]


@dataclass(frozen=True)
class ParamDef:
    """One search dimension: a range (``bounds``, maybe log-scaled) or a choice (``values``)."""

    name: str
    value_type: ValueType
    bounds: tuple[float, float] | None = None
    values: tuple[Any, ...] | None = None
    log: bool = False
    ordered: bool = False
    #: Active only when the parameter ``when[0]`` takes one of the values ``when[1]`` (a
    #: pruning method's knobs, the level without a method); inactive settings are dropped.
    when: tuple[str, tuple[Any, ...]] | None = None

    def active(self, params: dict[str, Any]) -> bool:
        return self.when is None or params.get(self.when[0]) in self.when[1]


def knob_param(method: str, knob: str) -> str:
    """The search dimension of a pruning method's knob: ``prune_<method>_<knob>``."""
    return f"prune_{method}_{knob}"


#: Kernel sizes the builder and the estimator support.
KERNEL_SIZES: tuple[int, ...] = (1, 3, 5, 7)


@dataclass(frozen=True)
class SpaceConfig:
    """Bounds of the default SpArSe-style space (about 20-25 parameters).

    Learning rates and batch sizes were tuned on digits with 8 trials x 6 epochs
    (benchmarks/acceptance_digits.py): batch 16 with learning rates from 2e-3 to 4e-2 trained the
    small nets 5-10 points better than batch 32 from 1e-3. Widths down to 2 channels, input
    scales down to 1/4 and 1x1 kernels (pointwise layers) are there for tight limits:
    benchmarks/space_defaults.py (estimate-only, on shapes and limits other than the
    search-quality regimes) shows they raise the estimate-feasible share of the space 1.1-4x
    under tight limits (8 KiB / 3 KiB on 28x28: 2.4% -> 9.5%) while the largest feasible
    networks stay within about 30% of the old space's. Six blocks (allowed, ``max_blocks``)
    lowered the feasible share and added 8 dimensions, so the default keeps four."""

    max_blocks: int = 4
    kernels: tuple[int, ...] = KERNEL_SIZES
    channels: tuple[int, int] = (2, 64)
    head_units: tuple[int, ...] = (0, 16, 32, 64)
    input_scales: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    lr: tuple[float, float] = (2e-3, 4e-2)
    #: Default: no pruning or a structured method (unstructured ones need sparse accounting).
    pruning_methods: tuple[str, ...] = (NO_PRUNING, *sorted(STRUCTURED_METHODS))
    prune_level: tuple[float, float] = (0.0, 0.8)

    def __post_init__(self) -> None:
        if not 1 <= self.max_blocks <= 6:
            raise ConfigError(f"max_blocks must be 1..6, got {self.max_blocks}")
        lo, hi = self.channels
        if not 1 <= lo < hi <= 512:
            raise ConfigError(
                f"channel bounds must satisfy 1 <= low < high <= 512, got {self.channels}"
            )
        if not 0.0 <= self.prune_level[0] <= self.prune_level[1] <= 0.95:
            raise ConfigError(f"prune_level must lie within [0, 0.95], got {self.prune_level}")
        lo, hi = self.lr
        if not 0.0 < lo < hi <= 1.0:
            raise ConfigError(
                f"lr bounds must satisfy 0 < low < high <= 1, got {list(self.lr)}",
                "give [low, high] with low first, e.g. [0.002, 0.04] (searched on a log scale)",
            )
        _check_choices("kernels", self.kernels, lambda k: k in KERNEL_SIZES, str(KERNEL_SIZES))
        _check_choices("head_units", self.head_units, lambda u: 0 <= u <= 1024, "0..1024")
        _check_choices("input_scales", self.input_scales, lambda v: 0.0 < v <= 1.0, "(0, 1]")
        if not self.pruning_methods:
            raise ConfigError("pruning_methods is empty", f"allow at least {NO_PRUNING!r}")
        unknown = [m for m in self.pruning_methods if m not in PRUNING_CHOICES]
        if unknown:
            raise ConfigError(
                f"unknown pruning method {unknown[0]!r}",
                f"choose among {', '.join(PRUNING_CHOICES)}",
            )


def _check_choices(name: str, values: tuple[Any, ...], ok: Any, allowed: str) -> None:
    """A choice list of the space: not empty, no repeats, every value within ``allowed``."""
    if not values:
        raise ConfigError(f"{name} is empty", f"list at least one value ({allowed})")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} repeats a value: {list(values)}", "list each value once")
    bad = [v for v in values if isinstance(v, bool) or not ok(v)]
    if bad:
        raise ConfigError(
            f"{name} value {bad[0]!r} is outside {allowed}", f"use values in {allowed}"
        )


def parameters(space: SpaceConfig) -> list[ParamDef]:
    """The search dimensions of ``space``; choices with a single value are left out (fixed)."""
    defs: list[ParamDef] = [
        ParamDef("input_scale", "float", values=space.input_scales, ordered=True),
    ]
    if space.max_blocks > 1:  # one block: n_blocks is fixed (decode's default)
        defs.append(ParamDef("n_blocks", "int", bounds=(1, space.max_blocks)))
    for i in range(space.max_blocks):
        defs += [
            ParamDef(f"b{i}_type", "str", values=BLOCK_KINDS),
            ParamDef(f"b{i}_kernel", "int", values=space.kernels, ordered=True),
            ParamDef(f"b{i}_channels", "int", bounds=space.channels, log=True),
            ParamDef(f"b{i}_down", "str", values=DOWNSAMPLES),
        ]
    defs += [
        ParamDef("head_pool", "str", values=HEAD_POOLS),
        ParamDef("head_units", "int", values=space.head_units, ordered=True),
        ParamDef("lr", "float", bounds=space.lr, log=True),
        ParamDef("prune_method", "str", values=space.pruning_methods),
    ]
    methods = tuple(m for m in space.pruning_methods if m != NO_PRUNING)
    if methods and space.prune_level[1] > space.prune_level[0]:
        defs.append(
            ParamDef(
                "prune_level", "float", bounds=space.prune_level, when=("prune_method", methods)
            )
        )
    for method in methods:
        for knob in PRUNING_METHODS[method].knobs:
            if knob.searched:
                defs.append(_knob_def(method, knob))
    return [d for d in defs if d.values is None or len(d.values) > 1]


def _knob_def(method: str, knob: KnobInfo) -> ParamDef:
    name = knob_param(method, knob.name)
    when = ("prune_method", (method,))
    if knob.values is not None:
        kind = "str" if all(isinstance(v, str) for v in knob.values) else "int"
        ordered = kind != "str"
        return ParamDef(name, kind, values=knob.values, ordered=ordered, when=when)  # type: ignore[arg-type]
    return ParamDef(
        name,
        "int" if knob.integer else "float",
        bounds=knob.bounds,
        log=knob.log,
        when=when,
    )


def decode(
    params: dict[str, Any], space: SpaceConfig, input_shape: tuple[int, int, int], num_classes: int
) -> tuple[ArchSpec, PruningSpec, float]:
    """Turn an optimizer point into (architecture, pruning, learning rate).

    Raises SpaceError for a point that names an unknown setting (a corrupted or foreign point)."""

    get = params.get

    try:
        n_blocks = int(get("n_blocks", 1))
        blocks = tuple(
            BlockSpec(
                kind=str(get(f"b{i}_type", BLOCK_KINDS[0])),  # type: ignore[arg-type]
                kernel=int(get(f"b{i}_kernel", space.kernels[0])),
                channels=int(params[f"b{i}_channels"]),
                downsample=str(get(f"b{i}_down", "none")),  # type: ignore[arg-type]
            )
            for i in range(n_blocks)
        )
        arch = ArchSpec(
            input_shape=tuple(input_shape),  # type: ignore[arg-type]
            num_classes=num_classes,
            blocks=blocks,
            input_scale=float(get("input_scale", space.input_scales[0])),
            head_pool=str(get("head_pool", HEAD_POOLS[0])),  # type: ignore[arg-type]
            head_units=int(get("head_units", space.head_units[0])),
        )
        method = str(get("prune_method", space.pruning_methods[0]))
        level = float(get("prune_level", space.prune_level[1])) if method != NO_PRUNING else 0.0
        options = {
            k.name: params[knob_param(method, k.name)]
            for k in (PRUNING_METHODS[method].knobs if method in PRUNING_METHODS else ())
            if knob_param(method, k.name) in params
        }
        lr = float(get("lr", (space.lr[0] * space.lr[1]) ** 0.5))
    except (KeyError, TypeError, ValueError) as e:
        raise SpaceError(f"cannot decode search point {params!r}: {e}") from e
    for b in blocks:
        if b.kind not in BLOCK_KINDS or b.downsample not in DOWNSAMPLES:
            raise SpaceError(f"unknown block setting in {b}")
    if method not in PRUNING_CHOICES:
        raise SpaceError(f"unknown pruning method {method!r} in search point {params!r}")
    return arch, PruningSpec(method=method, level=level, options=options), lr


def smallest_candidates(
    space: SpaceConfig, input_shape: tuple[int, int, int], num_classes: int
) -> list[ArchSpec]:
    """The cheapest networks the space can express (one narrow block, smallest input), one per
    block kind and downsampling: no candidate can need less flash or RAM than the best of them."""
    return [
        ArchSpec(
            input_shape=tuple(input_shape),
            num_classes=num_classes,  # type: ignore[arg-type]
            blocks=(BlockSpec(kind, min(space.kernels), space.channels[0], down),),
            input_scale=min(space.input_scales),
            head_pool="gap",
            head_units=min(space.head_units),
        )
        for kind in BLOCK_KINDS
        for down in DOWNSAMPLES
    ]
