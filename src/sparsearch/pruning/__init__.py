"""Pruning methods behind one small interface (see :mod:`sparsearch.pruning.base`).

``get_method(name)`` returns a ready :class:`PruningMethod`. Method modules (torch, and
Torch-Pruning for structured removal) are imported only when a method is requested, so importing
this package is cheap and safe in the API and CLI processes.
"""

from __future__ import annotations

import importlib
from typing import Any

from sparsearch.errors import PruningError
from sparsearch.pruning.base import MAX_LEVEL, PruneReport, PruningMethod, check_level
from sparsearch.space.spec import PruningSpec
from sparsearch.vocabulary import NO_PRUNING, PRUNING_METHODS

# name -> (module, class) of the implementation of each method ``sparsearch.vocabulary``
# describes (tests/pruning/test_registry.py checks that the two agree).
_REGISTRY: dict[str, tuple[str, str]] = {
    "complexity": ("sparsearch.pruning.complexity", "Complexity"),
    "filter_norm": ("sparsearch.pruning.filter_norm", "FilterNorm"),
    "magnitude": ("sparsearch.pruning.magnitude", "Magnitude"),
    "relevance": ("sparsearch.pruning.relevance", "Relevance"),
    "sparsity_induction": ("sparsearch.pruning.sparsity_induction", "SparsityInduction"),
    "variational_dropout": ("sparsearch.pruning.variational_dropout", "VariationalDropout"),
}
METHODS: tuple[str, ...] = tuple(PRUNING_METHODS)

_LAZY_STATS = ("count_params", "zero_fraction")


def get_method(name: str, **options: Any) -> PruningMethod:
    """The pruning method registered as ``name``, constructed with ``options``
    (e.g. ``get_method("filter_norm", p=2)``)."""
    try:
        module_name, class_name = _REGISTRY[name]
    except (KeyError, TypeError):
        raise PruningError(
            f"unknown pruning method {name!r}",
            hint=f"valid methods: {', '.join(METHODS)} (or {NO_PRUNING!r} to skip pruning)",
        ) from None
    cls = getattr(importlib.import_module(module_name), class_name)
    try:
        return cls(**options)
    except TypeError as e:
        raise PruningError(
            f"invalid options for pruning method {name!r}: {e}",
            hint="check the method's documented options",
        ) from e


def method_for(pruning: PruningSpec) -> PruningMethod:
    """The method a pruning setting names, built with its knobs (defaults where not given)."""
    info = PRUNING_METHODS.get(pruning.method)
    if info is None:
        return get_method(pruning.method)  # the unknown-method error
    return get_method(pruning.method, **{k.name: pruning.option(k.name) for k in info.knobs})


def __getattr__(attr: str) -> Any:
    # torch-importing helpers, loaded on first use only.
    if attr in _LAZY_STATS:
        return getattr(importlib.import_module("sparsearch.pruning.stats"), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = [
    "MAX_LEVEL",
    "METHODS",
    "PruneReport",
    "PruningMethod",
    "check_level",
    "count_params",
    "get_method",
    "method_for",
    "zero_fraction",
]
