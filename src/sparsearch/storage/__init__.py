"""Storage: jobs, trials and artifacts in SQLite or PostgreSQL plus an artifact directory.

Only this package talks SQL. Open one with :func:`open_storage` (migrates on first use);
everything it returns is a frozen record (:class:`JobInfo`, :class:`TrialInfo`,
:class:`ArtifactInfo`).
"""

from .engine import mask_url
from .migrations import head_revision, upgrade
from .records import (
    ACTIVE_JOB_STATUSES,
    ARTIFACT_KINDS,
    BUDGET_TRIAL_STATUSES,
    ESTIMATE_KEYS,
    FINISHED_JOB_STATUSES,
    FINISHED_TRIAL_STATUSES,
    JOB_STATUSES,
    METRIC_KEYS,
    TRIAL_STATUSES,
    ArtifactInfo,
    ConflictError,
    JobInfo,
    TrialInfo,
)
from .repository import Storage, open_storage

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "ARTIFACT_KINDS",
    "BUDGET_TRIAL_STATUSES",
    "ESTIMATE_KEYS",
    "FINISHED_JOB_STATUSES",
    "FINISHED_TRIAL_STATUSES",
    "JOB_STATUSES",
    "METRIC_KEYS",
    "TRIAL_STATUSES",
    "ArtifactInfo",
    "ConflictError",
    "JobInfo",
    "Storage",
    "TrialInfo",
    "head_revision",
    "mask_url",
    "open_storage",
    "upgrade",
]
