"""Pareto front and normalized hypervolume over (accuracy, flash, RAM), as DESIGN.md defines.

Objectives are mapped to [0, 1] so that larger is better and the numbers compare across jobs:
accuracy as (acc - chance) / (1 - chance), flash as 1 - flash/limit, RAM as 1 - ram/limit;
the reference point is the origin (chance accuracy, flash = limit, RAM = limit).

"Flash" is the job's *accounted* flash (``vocabulary.accounted_flash_field``): the dense
flatbuffer size, or the non-zero weights under ``flash_accounting: sparse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    """One feasible completed trial in objective space (``flash`` under the job's accounting)."""

    index: int
    accuracy: float
    flash: int
    ram: int


def normalize(
    p: Point, *, num_classes: int, flash_limit: int, ram_limit: int
) -> tuple[float, float, float]:
    chance = 1.0 / num_classes
    return (
        (p.accuracy - chance) / (1.0 - chance),
        1.0 - p.flash / flash_limit,
        1.0 - p.ram / ram_limit,
    )


def pareto_indices(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (max accuracy, min flash, min RAM). Identical points
    are all kept: neither dominates the other."""
    import torch
    from botorch.utils.multi_objective.pareto import is_non_dominated

    if not points:
        return []
    y = torch.tensor(
        [[p.accuracy, -float(p.flash), -float(p.ram)] for p in points], dtype=torch.double
    )
    mask = is_non_dominated(y, deduplicate=False)
    return [p.index for p, keep in zip(points, mask.tolist(), strict=True) if keep]


def normalized_hypervolume(
    points: Sequence[Point], *, num_classes: int, flash_limit: int, ram_limit: int
) -> float:
    """Hypervolume of the normalized front against the origin, in [0, 1]."""
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume
    from botorch.utils.multi_objective.pareto import is_non_dominated

    rows = [
        normalize(p, num_classes=num_classes, flash_limit=flash_limit, ram_limit=ram_limit)
        for p in points
    ]
    # Points at or below the reference in any objective add nothing; clamping keeps them harmless.
    y = torch.tensor(rows, dtype=torch.double).clamp(min=0.0, max=1.0) if rows else None
    if y is None:
        return 0.0
    front = y[is_non_dominated(y)]
    return float(Hypervolume(ref_point=torch.zeros(3, dtype=torch.double)).compute(front))


def refresh_front(
    storage: Any, job_id: str, cfg: Any, num_classes: int, screened: int | None = None
) -> tuple[float, float | None]:
    """Recompute a stored job's front from its feasible completed trials (objective accuracy:
    int8 where measured; flash as the job accounts it; RAM), flag it, and store the job's
    hypervolume and best accuracy (and ``screened`` when given), traced at its trained count
    (charged completed + failed, as the API's ``progress.trained``); returns (hv, best)."""
    from sparsearch.vocabulary import accounted_flash

    trials = storage.list_trials(job_id, status="completed")
    points = [
        Point(
            t.index,
            t.objective_accuracy,
            accounted_flash(cfg.flash_accounting, t.to_json()),
            t.ram_bytes,
        )
        for t in trials
        if t.feasible and t.objective_accuracy is not None
    ]
    storage.set_pareto(job_id, pareto_indices(points))
    hv = normalized_hypervolume(
        points,
        num_classes=num_classes,
        flash_limit=cfg.limits.flash_bytes,
        ram_limit=cfg.limits.model_ram_bytes,
    )
    best = max((p.accuracy for p in points), default=None)
    counts = storage.trial_counts([job_id]).get(job_id, {})
    trained = counts.get("completed", 0) + counts.get("failed", 0)
    storage.update_job_summary(
        job_id, hypervolume=hv, best_accuracy=best, screened=screened, trained=trained
    )
    return hv, best
