from __future__ import annotations

import subprocess
import sys

import pytest

from sparsearch.errors import PruningError
from sparsearch.pruning import METHODS, PruneReport, check_level, get_method
from sparsearch.vocabulary import STRUCTURED_METHODS


def test_every_method_of_the_vocabulary_is_implemented_and_agrees_on_structure() -> None:
    from sparsearch.pruning import _REGISTRY
    from sparsearch.vocabulary import PRUNING_METHODS

    assert tuple(PRUNING_METHODS) == METHODS and set(_REGISTRY) == set(PRUNING_METHODS)
    assert {"filter_norm", "magnitude"} <= set(METHODS)
    for name in METHODS:
        method = get_method(name)
        assert method.name == name
        assert method.structured == (name in STRUCTURED_METHODS)


def test_unknown_method_lists_valid_ones() -> None:
    with pytest.raises(PruningError) as info:
        get_method("l0_norm")
    assert "l0_norm" in info.value.message
    assert "filter_norm" in info.value.hint and "magnitude" in info.value.hint


def test_bad_options_are_pruning_errors() -> None:
    with pytest.raises(PruningError, match="invalid options"):
        get_method("magnitude", p=2)
    with pytest.raises(PruningError, match="p=3"):
        get_method("filter_norm", p=3)


def test_check_level_bounds() -> None:
    assert check_level(0) == 0.0 and check_level(0.95) == 0.95
    for bad in (-1e-9, 0.9500001, float("nan"), None):
        with pytest.raises(PruningError):
            check_level(bad)


def test_report_is_frozen_and_serialisable() -> None:
    report = PruneReport("magnitude", 0.5, 10, 10, 0.5, {"0": 4}, {"0": 4})
    assert report.to_dict()["channels_after"] == {"0": 4}
    assert report.params_removed == 0
    with pytest.raises(AttributeError):
        report.level = 0.1  # type: ignore[misc]


def test_import_does_not_load_torch_pruning() -> None:
    code = (
        "import sys, sparsearch.pruning as p; p.METHODS; "
        "assert 'torch_pruning' not in sys.modules; assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
