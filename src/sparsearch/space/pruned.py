"""The pruning rules the estimator shares with the pruners: how many filters a level leaves, and
the architecture a pruning setting trains (so a candidate's estimated cost is its trained cost).
"""

from __future__ import annotations

import math
from dataclasses import replace

from sparsearch.errors import PruningError, SpaceError
from sparsearch.space.complexity import prune_to_complexity
from sparsearch.space.spec import ArchSpec, PruningSpec
from sparsearch.vocabulary import STRUCTURED_METHODS


def pruned_width(width: int, level: float) -> int:
    """Channels left after removing a fraction ``level`` of ``width`` filters (at least one).

    The one place this rounding lives: the estimator and the structured pruners both use it, so
    the estimated cost and the pruned model always agree."""
    return max(1, width - int(math.floor(level * width + 1e-9)))


def effective_arch(arch: ArchSpec, pruning: PruningSpec) -> ArchSpec:
    """The architecture that exists after pruning (for methods whose cost is not exact, the
    largest it can be). Filter-removing methods shrink every block's channels and the hidden
    dense layer by ``level``; the complexity-driven method shrinks the architecture until its
    mode's complexity fell by ``level`` (``space.complexity``; SpaceError where the network
    cannot lose that much); unstructured ones keep shapes (they only add zeros)."""
    if not pruning.active or pruning.method not in STRUCTURED_METHODS:
        return arch
    if pruning.method == "complexity":
        try:
            return prune_to_complexity(
                arch,
                pruning.option("mode"),
                ratio=pruning.level,
                step=pruning.option("step"),
                seed=pruning.option("seed"),
            )
        except PruningError as e:  # a candidate that cannot be built as asked
            raise SpaceError(e.message, e.hint) from None
    blocks = tuple(
        replace(b, channels=pruned_width(b.channels, pruning.level)) for b in arch.blocks
    )
    units = pruned_width(arch.head_units, pruning.level) if arch.head_units else 0
    return replace(arch, blocks=blocks, head_units=units)
