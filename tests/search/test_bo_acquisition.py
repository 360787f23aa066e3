"""The bo strategy's acquisition: exact expected hypervolume improvement with known costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume

from sparsearch.search.strategies.bo import expected_hvi

HV = Hypervolume(ref_point=torch.zeros(3, dtype=torch.double))


def _hv(points) -> float:
    return HV.compute(torch.tensor(np.asarray(points, dtype=float)))


@pytest.mark.parametrize("seed", [0, 1])
def test_expected_hvi_matches_monte_carlo_over_the_accuracy(seed):
    rng = np.random.default_rng(seed)
    front = rng.uniform(0.1, 0.9, (6, 3))
    costs = rng.uniform(0.2, 0.9, (3, 2))
    mean, std = rng.uniform(0.2, 0.9, 3), rng.uniform(0.05, 0.3, 3)
    closed = expected_hvi(mean, std, costs, front)
    base = _hv(front)
    for i in range(3):
        acc = np.clip(rng.normal(mean[i], std[i], 1500), 0.0, None)
        gains = np.array([_hv(np.vstack([front, [a, *costs[i]]])) - base for a in acc])
        # within 4 standard errors of the Monte-Carlo mean
        assert closed[i] == pytest.approx(gains.mean(), abs=4 * gains.std() / 1500**0.5 + 1e-6)


def test_a_certain_candidate_improves_by_its_exact_hypervolume_gain():
    front = np.array([[0.5, 0.5, 0.5], [0.8, 0.2, 0.3]])
    cand = np.array([[0.6, 0.6]])
    gain = _hv(np.vstack([front, [0.7, 0.6, 0.6]])) - _hv(front)
    assert expected_hvi([0.7], [1e-9], cand, front)[0] == pytest.approx(gain, rel=1e-6)
    # Dominated for sure: no improvement; an empty front: the box times the expected accuracy.
    assert expected_hvi([0.3], [1e-9], [[0.4, 0.4]], front)[0] == pytest.approx(0.0, abs=1e-9)
    assert expected_hvi([0.5], [1e-9], cand, np.empty((0, 3)))[0] == pytest.approx(0.18)
