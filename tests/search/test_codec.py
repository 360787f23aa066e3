"""The codec and the space on pruning settings: each method's searched knobs are dimensions
that exist only under their method, decode into the trial's options, and move with it."""

from __future__ import annotations

import random

from sparsearch.search.codec import Codec
from sparsearch.space.params import SpaceConfig, decode, knob_param, parameters
from sparsearch.vocabulary import PRUNING_METHODS, STRUCTURED_METHODS


def _point(codec: Codec, **settings):
    base = codec.from_unit([0.3] * codec.dim)
    return codec.canonical({**base, **settings})


def test_the_default_space_searches_every_structured_method_and_its_knobs() -> None:
    names = {d.name for d in parameters(SpaceConfig())}
    searched = {
        knob_param(m, k.name)
        for m in STRUCTURED_METHODS
        for k in PRUNING_METHODS[m].knobs
        if k.searched
    }
    assert searched and searched <= names
    assert "prune_complexity_mode" in names and "prune_magnitude_scope" not in names
    sparse = {d.name for d in parameters(SpaceConfig(pruning_methods=("none", "magnitude")))}
    assert "prune_magnitude_scope" in sparse and "prune_complexity_mode" not in sparse


def test_knobs_of_another_method_are_inactive_and_decode_into_options() -> None:
    codec = Codec(SpaceConfig())
    point = _point(
        codec, prune_method="complexity", prune_level=0.5, prune_complexity_mode="flops",
        prune_filter_norm_p=2,
    )  # fmt: skip
    assert "prune_filter_norm_p" not in point and point["prune_complexity_mode"] == "flops"
    _, pruning, _ = decode(point, codec.space, (1, 8, 8), 10)
    assert (pruning.method, pruning.level) == ("complexity", 0.5)
    assert pruning.options == {"mode": "flops"}
    none = _point(codec, prune_method="none", prune_level=0.5, prune_complexity_mode="flops")
    assert "prune_level" not in none and "prune_complexity_mode" not in none
    # two points that differ only in an inactive knob are the same trial
    a = dict(point, prune_filter_norm_p=1)
    assert codec.key(a) == codec.key(dict(point, prune_filter_norm_p=2))
    assert codec.features(a) == codec.features(dict(point, prune_filter_norm_p=2))


def test_mutating_the_method_brings_its_knobs() -> None:
    codec = Codec(SpaceConfig())
    rng = random.Random(0)
    point = _point(codec, prune_method="none")
    seen = set()
    for _ in range(300):
        point = codec.mutate(point, rng)
        method = point.get("prune_method", "none")
        seen.add(method)
        for d in codec.defs:
            if d.when is not None:
                assert (d.name in point) == d.active(point), (d.name, point)
    assert len(seen) >= 3


def test_a_space_that_fixes_the_method_keeps_its_level_and_knobs() -> None:
    space = SpaceConfig(pruning_methods=("complexity",), prune_level=(0.2, 0.6))
    codec = Codec(space)
    assert "prune_method" not in {d.name for d in codec.defs}
    point = _point(codec, prune_level=0.4, prune_complexity_mode="memory")
    assert point["prune_level"] == 0.4 and point["prune_complexity_mode"] == "memory"
    _, pruning, _ = decode(point, space, (1, 8, 8), 10)
    assert pruning.method == "complexity" and pruning.option("mode") == "memory"
