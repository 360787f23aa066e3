"""One exception tree for everything a user can get wrong or meet.

Every error carries a ``message`` (what was wrong) and a ``hint`` (what to do). The CLI prints
both and exits non-zero; the API maps them to 4xx responses. Nothing user-facing should ever
surface as a bare traceback.
"""

from __future__ import annotations


class SparsearchError(Exception):
    """Base class: ``message`` says what went wrong, ``hint`` what to do about it."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ConfigError(SparsearchError):
    """A setting, option or limit is invalid."""


class DatasetError(SparsearchError):
    """A dataset is unknown, missing or malformed."""


class SpaceError(SparsearchError):
    """A search-space configuration cannot be built (e.g. downsampling below 1x1)."""


class PruningError(SparsearchError):
    """A pruning method or setting is invalid."""


class StorageError(SparsearchError):
    """The database or artifact store cannot be used."""


class NotFoundError(SparsearchError):
    """A job, trial or artifact does not exist."""


class SearchError(SparsearchError):
    """A search cannot proceed (e.g. limits too tight for the space)."""


class TrialError(SparsearchError):
    """A single trial failed; the search records it and goes on."""


class ClusterError(SparsearchError):
    """The Ray cluster cannot be reached or refuses this process (address, token, auth mode)."""


class ToolchainError(TrialError):
    """A tool the job's deployment target needs (the Arm compiler of the C target) is missing
    on the machine that runs a trial: every trial would fail the same way, so the job stops
    (``interrupted``, resumable once the tool is installed) instead of spending its budget."""
