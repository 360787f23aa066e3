"""Where every activation lives in the one static buffer, decided at generation time.

A *group* is a set of tensors that share a start offset: a RESHAPE's output with its input
(the same bytes), and a layer's output with its input when the kernel may write over what it
reads (``Layer.in_place``) and nothing reads that input later. A group holds segments
``(size, first, last)`` (layer indices, inclusive); two groups conflict only where segments
alive at the same layer overlap in bytes. The graph input is alive from layer 0 (the caller
writes it before ``invoke``), the graph output to the end (the caller reads it after).

Placement is greedy first-fit (lowest offset free of every conflicting segment), tried in a few
orders (largest first, as TFLM's planner, then longest-lived and earliest first); the best
plan wins. ``lower_bound`` is the most bytes alive at one layer, which no plan can beat.

Torch-free and pure, so the cost estimator (``space/``) plans exactly as the generator does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

#: Offsets are multiples of this (word-aligned activations; costs at most 3 B a buffer).
ALIGN = 4


@dataclass(frozen=True)
class Segment:
    size: int
    first: int
    last: int


@dataclass(frozen=True)
class Plan:
    #: group start offset of each tensor index
    offsets: dict[int, int]
    arena_bytes: int
    lower_bound: int


@dataclass(frozen=True)
class Step:
    """What the planner needs of a layer: tensors read, tensor written, sizes, sharing."""

    inputs: tuple[int, ...]
    output: int
    alias: bool = False
    in_place: bool = False


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def plan(steps: Sequence[Step], sizes: dict[int, int], graph_input: int, graph_output: int) -> Plan:
    """Offsets of every activation tensor of ``steps``; ``sizes``: bytes of each tensor."""
    n = len(steps)
    first: dict[int, int] = {graph_input: 0}
    last: dict[int, int] = {graph_input: 0}
    for i, s in enumerate(steps):
        for t in s.inputs:
            last[t] = max(last.get(t, i), i)
        first.setdefault(s.output, i)
        last[s.output] = max(last.get(s.output, i), i)
    last[graph_output] = n
    group: dict[int, int] = {t: t for t in first}  # tensor -> group id (its root tensor)

    def root(t: int) -> int:
        while group[t] != t:
            t = group[t]
        return t

    members: dict[int, list[int]] = {t: [t] for t in first}
    for i, s in enumerate(steps):
        if not s.inputs:
            continue
        src = root(s.inputs[0])
        share = s.alias
        if s.in_place and not share:
            # only when nothing of the input's group is read after this layer
            share = all(last[m] <= i for m in members[src]) and root(s.output) == s.output
        if share and root(s.output) != src:
            out = root(s.output)
            members[src].extend(members.pop(out))
            for m in members[src]:
                group[m] = src
    groups = {g: [Segment(sizes[t], first[t], last[t]) for t in ts] for g, ts in members.items()}
    best: dict[int, int] | None = None
    best_size = 0
    for order in _orders(groups):
        offsets = _first_fit(order, groups)
        size = max((offsets[g] + s.size for g in groups for s in groups[g]), default=0)
        if best is None or size < best_size:
            best, best_size = offsets, size
    assert best is not None
    bound = max(  # a group's segments alive together share their start: the largest counts
        (
            sum(
                max((s.size for s in segs if s.first <= t <= s.last), default=0)
                for segs in groups.values()
            )
            for t in range(n + 1)
        ),
        default=0,
    )
    return Plan(
        offsets={t: best[root(t)] for t in first},
        arena_bytes=_align(best_size),
        lower_bound=bound,
    )


def _orders(groups: dict[int, list[Segment]]) -> list[list[int]]:
    def peak(g: int) -> int:
        return max(s.size for s in groups[g])

    def span(g: int) -> int:
        return max(s.last for s in groups[g]) - min(s.first for s in groups[g])

    def start(g: int) -> int:
        return min(s.first for s in groups[g])

    ids = sorted(groups)
    return [
        sorted(ids, key=lambda g: (-peak(g), start(g))),
        sorted(ids, key=lambda g: (-span(g), -peak(g))),
        sorted(ids, key=lambda g: (start(g), -peak(g))),
        sorted(ids, key=lambda g: (-peak(g) * (span(g) + 1), start(g))),
    ]


def _conflicts(a: list[Segment], b: list[Segment]) -> list[tuple[int, int]]:
    """(size in a, size in b) of each pair of segments alive at the same layer."""
    return [(x.size, y.size) for x in a for y in b if x.first <= y.last and y.first <= x.last]


def _first_fit(order: list[int], groups: dict[int, list[Segment]]) -> dict[int, int]:
    offsets: dict[int, int] = {}
    for g in order:
        # byte ranges [lo, hi) that g (starting at its offset) must not overlap, as
        # (other's offset, other's size, g's size at that time)
        taken = []
        for h, off in offsets.items():
            for mine, theirs in _conflicts(groups[g], groups[h]):
                taken.append((off, off + theirs, mine))
        candidate = 0
        for start_at in sorted({0, *(_align(hi) for _, hi, _ in taken)}):
            if all(start_at + mine <= lo or start_at >= hi for lo, hi, mine in taken):
                candidate = start_at
                break
        offsets[g] = candidate
    return offsets
