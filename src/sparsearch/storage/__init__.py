"""Storage: jobs, trials and artifacts in SQLite or PostgreSQL plus an artifact directory.

Only this package talks SQL. Open one with :func:`open_storage` (migrates on first use);
everything it returns is a frozen record (:class:`JobInfo`, :class:`TrialInfo`,
:class:`ArtifactInfo`, :class:`TokenInfo`, :class:`DatasetInfo`).
"""

from ..vocabulary import (
    ACTIVE_JOB_STATUSES,
    ARTIFACT_KINDS,
    BUDGET_TRIAL_STATUSES,
    FINISHED_JOB_STATUSES,
    FINISHED_TRIAL_STATUSES,
    JOB_STATUSES,
    TRIAL_STATUSES,
    UNFINISHED_JOB_STATUSES,
)
from .engine import mask_url
from .migrations import head_revision, upgrade
from .queries import JOB_SORT_KEYS, TRIAL_SORT_KEYS
from .records import (
    DATASET_ID_PATTERN,
    ESTIMATE_KEYS,
    METRIC_KEYS,
    SCHEDULER_STATES,
    ArtifactInfo,
    ClaimInfo,
    ConflictError,
    DatasetInfo,
    JobInfo,
    TokenInfo,
    TrialInfo,
    is_dataset_id,
)
from .repository import Storage, open_storage

__all__ = [
    "ACTIVE_JOB_STATUSES",
    "ARTIFACT_KINDS",
    "BUDGET_TRIAL_STATUSES",
    "DATASET_ID_PATTERN",
    "ESTIMATE_KEYS",
    "FINISHED_JOB_STATUSES",
    "FINISHED_TRIAL_STATUSES",
    "JOB_SORT_KEYS",
    "JOB_STATUSES",
    "METRIC_KEYS",
    "SCHEDULER_STATES",
    "TRIAL_SORT_KEYS",
    "TRIAL_STATUSES",
    "UNFINISHED_JOB_STATUSES",
    "ArtifactInfo",
    "ClaimInfo",
    "ConflictError",
    "DatasetInfo",
    "JobInfo",
    "Storage",
    "TokenInfo",
    "TrialInfo",
    "head_revision",
    "is_dataset_id",
    "mask_url",
    "open_storage",
    "upgrade",
]
