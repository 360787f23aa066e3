"""A trial's learning curve: its float accuracy on a fixed validation sample after every epoch
of training, and of fine-tuning after pruning (issue 22: what early stopping reads).

The sample is the first ``CURVE_SAMPLE`` images of the trial's validation split (fixed, so the
points of all trials of a job compare), scored in eval mode under ``no_grad``: no random
numbers are drawn and no running statistic changes, so a trial trains the same weights with or
without its curve. Each point is ``{"epoch", "accuracy", "seconds", "phase"}``: epochs trained
so far (fine-tuning epochs counted after the training ones), the sample accuracy, seconds since
the trial started, and ``"train"`` or ``"prune"`` (the fine-tuning of a pruning method).

``report(point) -> bool``, when given, sees every point as it is made (the driver's channel in
a search: early stopping); True means stop: ``record`` raises ``StopTraining``, which
``run_trial`` turns into a ``TrialStopped`` outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from sparsearch.worker.train import evaluate

#: Validation images a curve point is scored on (all of them when the split is smaller).
CURVE_SAMPLE = 1000

#: A point's reporter: True asks the trial to stop.
Reporter = Callable[[dict[str, Any]], bool]


class StopTraining(Exception):
    """The reporter asked the trial to stop after its last point."""


@dataclass
class Curve:
    """Collects a trial's curve points (``record``, or ``hook(phase)`` for a trainer)."""

    x: np.ndarray
    y: np.ndarray
    start: float = field(default_factory=time.perf_counter)
    points: list[dict[str, Any]] = field(default_factory=list)
    epochs: float = 0.0
    report: Reporter | None = None

    @classmethod
    def of(
        cls,
        x_val: np.ndarray,
        y_val: np.ndarray,
        start: float | None = None,
        report: Reporter | None = None,
    ) -> Curve:
        n = min(CURVE_SAMPLE, len(x_val))
        began = start if start is not None else time.perf_counter()
        return cls(x_val[:n], y_val[:n], began, report=report)

    def record(self, model: nn.Module, epochs: float, phase: str) -> None:
        """A point after ``epochs`` more epochs of ``phase``."""
        self.epochs += epochs
        self.points.append(
            {
                "epoch": round(self.epochs, 4),
                "accuracy": evaluate(model, self.x, self.y) if len(self.x) else None,
                "seconds": round(time.perf_counter() - self.start, 3),
                "phase": phase,
            }
        )
        if self.report is not None and self.report(dict(self.points[-1])):
            raise StopTraining

    def hook(self, phase: str) -> Callable[[nn.Module, float], None]:
        """``record`` for ``phase``: a trainer's ``on_epoch``."""
        return lambda model, epochs: self.record(model, epochs, phase)
