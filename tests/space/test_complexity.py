"""Complexity-driven pruning of an architecture (seed 001, PA / FA / MA), torch-free: targets
met, seeded, the unit drawn in proportion to its complexity, clear errors."""

from __future__ import annotations

import collections

import pytest

from sparsearch.errors import PruningError
from sparsearch.space import complexity as cx
from sparsearch.space.estimate import estimate
from sparsearch.space.spec import ArchSpec, BlockSpec

ARCH = ArchSpec(
    input_shape=(1, 28, 28),
    num_classes=10,
    blocks=(
        BlockSpec("conv", 3, 16, "pool"),
        BlockSpec("dsconv", 3, 32, "stride"),
        BlockSpec("conv", 3, 32, "none"),
    ),
    head_pool="gap",
    head_units=24,
)


@pytest.mark.parametrize("mode", cx.COMPLEXITY_MODES)
@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_the_target_is_met_and_not_overshot_by_more_than_a_step(mode, ratio):
    start = cx.complexity(ARCH, mode)
    pruned = cx.prune_to_complexity(ARCH, mode, ratio=ratio, seed=0)
    value = cx.complexity(pruned, mode)
    assert value <= (1 - ratio) * start
    assert value > 0.5 * (1 - ratio) * start  # a step removes 10% of one unit, not half a net
    assert pruned.num_classes == ARCH.num_classes and len(pruned.blocks) == len(ARCH.blocks)
    assert all(p.channels <= a.channels for p, a in zip(pruned.blocks, ARCH.blocks, strict=True))


def test_params_mode_is_the_estimators_weight_count():
    est = estimate(ARCH)
    # params mode counts conv and dense weights; the estimator adds one bias per output
    assert cx.complexity(ARCH, "params") == est.params - sum(
        layer.biases for layer in cx.layer_shapes(ARCH)
    )
    assert cx.complexity(ARCH, "flops") == est.macs


def test_an_absolute_target_is_met():
    pruned = cx.prune_to_complexity(ARCH, "flops", target=200_000, seed=3)
    assert cx.complexity(pruned, "flops") <= 200_000


def test_the_same_seed_gives_the_same_widths_and_another_seed_may_not():
    a = cx.prune_to_complexity(ARCH, "params", ratio=0.6, seed=7)
    b = cx.prune_to_complexity(ARCH, "params", ratio=0.6, seed=7)
    assert a == b
    others = {cx.prune_to_complexity(ARCH, "params", ratio=0.6, seed=s) for s in range(8)}
    assert len(others) > 1


def test_units_are_drawn_in_proportion_to_their_complexity():
    """Over many single steps, the most complex unit is pruned most often (memory mode: the
    first block's large output map dominates)."""
    units = cx._units(ARCH, "flops")
    heaviest = max(units, key=units.get)
    counts = collections.Counter()
    for seed in range(300):
        one_step = cx.prune_to_complexity(
            ARCH, "flops", target=cx.complexity(ARCH, "flops") - 1, seed=seed
        )
        changed = [u for u in units if cx._width(one_step, u) != cx._width(ARCH, u)]
        counts.update(changed)
    share = counts[heaviest] / 300
    expected = units[heaviest] / sum(units.values())
    assert abs(share - expected) < 0.1, (counts, units)


def test_bad_input_is_a_clear_error():
    with pytest.raises(PruningError, match="outside \\[0, 1\\)"):
        cx.prune_to_complexity(ARCH, "params", ratio=1.0)
    with pytest.raises(PruningError, match="unknown complexity mode"):
        cx.prune_to_complexity(ARCH, "latency", ratio=0.5)
    with pytest.raises(PruningError, match="exactly one"):
        cx.prune_to_complexity(ARCH, "params")
    with pytest.raises(PruningError, match="down to 1 filter"):
        cx.prune_to_complexity(ARCH, "params", target=10)
