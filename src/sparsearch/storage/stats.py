"""Aggregates for monitoring (part of ``Storage``): counts by status and timing histograms.

Read-only and owner-blind: every method sums over all owners and returns numbers only, never
ids or names. Each is a single aggregate query (``COUNT``/``SUM`` with one ``CASE`` per
histogram bucket), so a scrape costs the same however many trials are stored.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from sqlalchemy import case, func, select

from ..vocabulary import (
    BUDGET_TRIAL_STATUSES,
    DEFAULT_STRATEGY,
    JOB_STATUSES,
    STRATEGIES,
    TARGETS,
    TRIAL_STATUSES,
    target_of,
)
from ._base import StorageBase
from .models import Job, Trial

#: A job's strategy read from its JSON config (NULL for jobs stored before strategies: ``bo``).
JOB_STRATEGY = func.coalesce(Job.config["strategy"].as_string(), DEFAULT_STRATEGY)
#: A job's target read from its JSON config, as ``vocabulary.target_of`` reads it: jobs stored
#: before targets (no key) count as the target they deployed to then.
JOB_TARGET = func.coalesce(func.nullif(Job.config["target"].as_string(), ""), target_of({}))

#: Trial columns :meth:`StatsMixin.trial_seconds` can summarise.
SECONDS_COLUMNS: dict[str, object] = {
    "train_seconds": Trial.train_seconds,
    "gen_seconds": Trial.gen_seconds,
}


class StatsMixin(StorageBase):
    def job_counts(self) -> dict[tuple[str, str, str], int]:
        """Jobs per ``(status, strategy, target)``, every triple of ``JOB_STATUSES`` x
        ``STRATEGIES`` x ``TARGETS`` present (0 when none)."""
        query = select(Job.status, JOB_STRATEGY, JOB_TARGET, func.count()).group_by(
            Job.status, JOB_STRATEGY, JOB_TARGET
        )
        with self._tx("counting jobs by status, strategy and target") as s:
            found = {
                (status, str(strategy), str(target)): int(n)
                for status, strategy, target, n in s.execute(query)
            }
        counts = {
            (status, name, target): 0
            for status in JOB_STATUSES
            for name in STRATEGIES
            for target in TARGETS
        }
        return counts | found

    def job_strategy_counts(self) -> dict[tuple[str, str], int]:
        """Jobs per ``(status, strategy)``, every pair of ``JOB_STATUSES`` x ``STRATEGIES``
        present (0 when none): :meth:`job_counts` summed over targets."""
        counts = {(status, name): 0 for status in JOB_STATUSES for name in STRATEGIES}
        for (status, strategy, _), n in self.job_counts().items():
            counts[(status, strategy)] = counts.get((status, strategy), 0) + n
        return counts

    def screened_counts(self) -> dict[str, int]:
        """Candidates the jobs' screens rejected by estimate, summed per strategy (every
        strategy of ``STRATEGIES`` present)."""
        query = select(JOB_STRATEGY, func.coalesce(func.sum(Job.screened), 0)).group_by(
            JOB_STRATEGY
        )
        with self._tx("counting screened candidates") as s:
            found = {str(strategy): int(n) for strategy, n in s.execute(query)}
        return dict.fromkeys(STRATEGIES, 0) | found

    def uncharged_trial_count(self) -> int:
        """Completed or failed trials that are not charged (cut short by a graceful stop: they
        count against no budget), all jobs."""
        query = (
            select(func.count())
            .select_from(Trial)
            .where(Trial.status.in_(BUDGET_TRIAL_STATUSES), Trial.charged.is_(False))
        )
        with self._tx("counting uncharged trials") as s:
            return int(s.scalar(query) or 0)

    def trial_status_counts(self) -> dict[str, int]:
        """Trials per status (all jobs), every status of ``TRIAL_STATUSES`` present."""
        query = select(Trial.status, func.count()).group_by(Trial.status)
        with self._tx("counting trials by status") as s:
            found = {status: int(n) for status, n in s.execute(query)}
        return {status: found.get(status, 0) for status in TRIAL_STATUSES}

    def trial_seconds(
        self,
        column: Literal["train_seconds", "gen_seconds"],
        buckets: Sequence[float],
    ) -> tuple[list[int], float, int]:
        """A histogram of a trial timing column over every trial that has a value.

        Returns ``(bucket_counts, sum, count)``: ``bucket_counts[i]`` is the number of values
        ``<= buckets[i]`` (cumulative, as Prometheus' ``le`` buckets), ``count`` the number of
        non-NULL values (the ``+Inf`` bucket). ``buckets`` must be finite and increasing;
        ValueError for an unknown column or bad buckets.
        """
        if column not in SECONDS_COLUMNS:
            raise ValueError(
                f"unknown timing column {column!r}; choose one of {', '.join(SECONDS_COLUMNS)}"
            )
        bounds = [float(b) for b in buckets]
        if not all(math.isfinite(b) for b in bounds) or any(
            a >= b for a, b in zip(bounds, bounds[1:], strict=False)
        ):
            raise ValueError(f"buckets must be finite and increasing, got {list(buckets)}")
        col = SECONDS_COLUMNS[column]
        terms = [func.sum(case((col <= b, 1), else_=0)) for b in bounds]
        query = select(func.count(col), func.coalesce(func.sum(col), 0.0), *terms)
        with self._tx(f"summarising trial {column}") as s:
            count, total, *counts = s.execute(query).one()
        return [int(c or 0) for c in counts], float(total or 0.0), int(count or 0)
