import pytest

from sparsearch.search.pareto import Point, normalize, normalized_hypervolume, pareto_indices

LIMITS = dict(num_classes=10, flash_limit=1000, ram_limit=1000)


def test_normalize_maps_reference_to_origin():
    assert normalize(Point(0, 0.1, 1000, 1000), **LIMITS) == pytest.approx((0.0, 0.0, 0.0))
    assert normalize(Point(0, 1.0, 0, 0), **LIMITS) == pytest.approx((1.0, 1.0, 1.0))


def test_front_drops_dominated_and_keeps_tradeoffs():
    pts = [
        Point(0, 0.9, 500, 500),
        Point(1, 0.8, 600, 600),  # 1 dominated by 0
        Point(2, 0.7, 100, 900),
        Point(3, 0.95, 900, 100),
        Point(4, 0.9, 500, 500),
    ]
    assert pareto_indices(pts) == [0, 2, 3, 4]  # identical points 0 and 4 both stay
    assert pareto_indices([]) == []


def test_hypervolume_of_hand_made_fronts():
    # One point at (0.5, 0.5, 0.5) in normalized space: a cube of side 0.5.
    half = Point(0, 0.55, 500, 500)
    assert normalized_hypervolume([half], **LIMITS) == pytest.approx(0.125)
    # (1, .5, .5) and (.5, 1, .5): 0.25 + 0.25 - overlap 0.125.
    a, b = Point(0, 1.0, 500, 500), Point(1, 0.55, 0, 500)
    assert normalized_hypervolume([a, b], **LIMITS) == pytest.approx(0.375)
    # A dominated point adds nothing; below-chance accuracy adds nothing.
    assert normalized_hypervolume([a, b, Point(2, 0.5, 600, 600)], **LIMITS) == pytest.approx(0.375)
    assert normalized_hypervolume([Point(0, 0.05, 10, 10)], **LIMITS) == pytest.approx(0.0)
    assert normalized_hypervolume([], **LIMITS) == 0.0
