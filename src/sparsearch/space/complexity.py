"""Complexity-driven pruning of an architecture before training (seed 001: PA / FA / MA).

Given a mode — ``params`` (PA), ``flops`` (FA) or ``memory`` (MA) — each prunable unit of the
network (a block's filters, the hidden dense layer's units) has a complexity c_l: its layers'
parameters (K²·Ci·Co), multiply-accumulates (K²·Ci·Co·Ho·Wo) or memory
(4·(K²·Ci·Co + Ho·Wo·Co) bytes, weights plus output). A unit is drawn with probability
c_l / Σc, a fraction ``step`` of its filters is removed (at random: the pruned network is
trained once from scratch, so which filters does not matter), and this repeats until the whole
model's complexity is at most the target. The classifier's outputs are never pruned.

Pure Python and seeded: the same architecture, mode, target and seed give the same widths, so
the search's estimate of a candidate pruned this way is the cost of the model it trains.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import replace

from sparsearch.errors import PruningError
from sparsearch.space._shapes import Layer, layer_shapes
from sparsearch.space.spec import ArchSpec

#: The complexity each mode measures (seed 001's PA, FA and MA).
COMPLEXITY_MODES: tuple[str, ...] = ("params", "flops", "memory")
#: Fraction of a drawn unit's filters removed per step (at least one filter).
DEFAULT_STEP = 0.1
#: A unit keeps at least this many filters.
MIN_WIDTH = 1


def _check_mode(mode: str) -> str:
    if mode not in COMPLEXITY_MODES:
        raise PruningError(
            f"unknown complexity mode {mode!r}",
            f"choose one of {', '.join(COMPLEXITY_MODES)} (params, FLOPs or memory)",
        )
    return mode


def layer_complexity(layer: Layer, mode: str) -> int:
    """c_l of one layer under ``mode`` (0 for parameter-free layers)."""
    _check_mode(mode)
    if layer.kind not in ("conv", "dwconv", "dense"):
        return 0
    if mode == "params":
        return layer.weights
    if mode == "flops":
        return layer.macs
    c, h, w = layer.out_shape
    return 4 * (layer.weights + c * h * w)


def complexity(arch: ArchSpec, mode: str) -> int:
    """The whole model's complexity under ``mode``."""
    return sum(layer_complexity(layer, mode) for layer in layer_shapes(arch))


def _units(arch: ArchSpec, mode: str) -> dict[str, int]:
    """Prunable units (``"b<i>"`` for block i, ``"head"`` for the hidden dense layer) and their
    complexity: every layer whose output channels are the unit's."""
    units: dict[str, int] = {}
    for layer in layer_shapes(arch):
        if layer.kind in ("conv", "dwconv") and layer.block >= 0:
            # A depthwise layer's outputs are its input's channels (the previous unit's);
            # its cost goes with the unit whose width it follows.
            key = f"b{layer.block}" if layer.kind == "conv" else _owner(arch, layer.block)
        elif layer.kind == "dense" and layer.relu:
            key = "head"
        else:
            continue
        if key is not None:
            units[key] = units.get(key, 0) + layer_complexity(layer, mode)
    return units


def _owner(arch: ArchSpec, block: int) -> str | None:
    """The unit whose width a depthwise layer of ``block`` follows: the previous block (none
    for the first block, whose depthwise input is the image)."""
    return f"b{block - 1}" if block > 0 else None


def _width(arch: ArchSpec, unit: str) -> int:
    return arch.head_units if unit == "head" else arch.blocks[int(unit[1:])].channels


def _with_width(arch: ArchSpec, unit: str, width: int) -> ArchSpec:
    if unit == "head":
        return replace(arch, head_units=width)
    i = int(unit[1:])
    blocks = list(arch.blocks)
    blocks[i] = replace(blocks[i], channels=width)
    return replace(arch, blocks=tuple(blocks))


def prune_to_complexity(
    arch: ArchSpec,
    mode: str,
    *,
    target: int | None = None,
    ratio: float | None = None,
    fits: Callable[[ArchSpec], bool] | None = None,
    step: float = DEFAULT_STEP,
    seed: int = 0,
) -> ArchSpec:
    """``arch`` with fewer filters, until its ``mode`` complexity is at most ``target`` (or
    at most ``(1 - ratio)`` of the original's, or until ``fits(arch)`` holds: a resource
    target such as estimated flash, RAM or MACs, the layers still drawn by their ``mode``
    complexity). Seeded and deterministic. PruningError when the target cannot be met (every
    unit already at one filter) or the arguments are bad."""
    _check_mode(mode)
    if sum(x is not None for x in (target, ratio, fits)) != 1:
        raise PruningError(
            "give exactly one of a target, a ratio and a fits rule", "e.g. ratio=0.5"
        )
    if not 0.0 < step < 1.0:
        raise PruningError(f"step {step!r} is outside (0, 1)", "e.g. step=0.1 (10% a step)")
    start = complexity(arch, mode)
    if ratio is not None:
        if not 0.0 <= ratio < 1.0:
            raise PruningError(
                f"pruning ratio {ratio!r} is outside [0, 1)", "e.g. 0.5 removes half"
            )
        target = math.floor((1.0 - ratio) * start)
    if target is not None and target < 0:
        raise PruningError(f"target complexity {target} is negative", "give a positive target")

    def met(candidate: ArchSpec, value: int) -> bool:
        return fits(candidate) if fits is not None else value <= target  # type: ignore[operator]

    rng = random.Random(seed)
    current = arch
    value = start
    while not met(current, value):
        units = {u: c for u, c in _units(current, mode).items() if _width(current, u) > MIN_WIDTH}
        total = sum(units.values())
        if not units or total <= 0:
            goal = "the target" if target is None else f"target {target}"
            raise PruningError(
                f"cannot meet {goal} by removing filters: at {mode} complexity {value} every "
                f"prunable layer of this network is down to {MIN_WIDTH} filter",
                "use a smaller network, a lower ratio or a larger target",
            )
        names = sorted(units)
        unit = rng.choices(names, weights=[units[n] for n in names], k=1)[0]
        width = _width(current, unit)
        remove = max(1, math.floor(step * width + 1e-9))
        current = _with_width(current, unit, max(MIN_WIDTH, width - remove))
        value = complexity(current, mode)
    return current
