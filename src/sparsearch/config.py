"""Settings from the environment (prefix ``SPARSEARCH_``), built explicitly, never at import."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sparsearch.jobconfig import MAX_TRIALS


def _default_home() -> Path:
    return Path.home() / ".sparsearch"


class Settings(BaseSettings):
    """Process-wide settings. Create with ``Settings()``; tests pass their own values."""

    model_config = SettingsConfigDict(env_prefix="SPARSEARCH_", extra="ignore")

    database_url: str = Field(
        default_factory=lambda: f"sqlite:///{_default_home() / 'sparsearch.db'}",
        description="SQLAlchemy URL; SQLite file by default, postgresql+psycopg://... for teams",
    )
    artifact_dir: Path = Field(
        default_factory=lambda: _default_home() / "artifacts",
        description="Directory where trial artifacts (state_dict, ONNX) are stored",
    )
    ray_address: str = Field(
        default="", description="Address of a Ray cluster; empty starts a private local Ray"
    )
    ray_num_cpus: int | None = Field(
        default=None, description="CPUs for a private local Ray (default: all)"
    )
    ray_object_store_mb: int = Field(
        default=200, description="Object store size for a private local Ray, MiB"
    )
    auth: Literal["on", "off"] = Field(
        default="on", description="Bearer-token auth for the API; 'off' only on loopback hosts"
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Worker processes serving the API (one per CPU core for throughput)",
    )
    api_threads: int | None = Field(
        default=None,
        ge=1,
        le=10,  # the connection pool's size (storage.engine.POOL_SIZE)
        description="Threads per API worker for database calls (default 2 on SQLite, 8 on "
        "PostgreSQL)",
    )
    max_trials: int = Field(
        default=500,
        ge=1,
        le=MAX_TRIALS,
        description="Largest trial budget per job this server accepts (a policy below the "
        "product's cap, jobconfig.MAX_TRIALS)",
    )
    max_active_jobs_per_owner: int = Field(
        default=4,
        ge=1,
        le=1000,
        description="Unfinished (queued, running, interrupted) jobs one owner may have",
    )
    scheduler_poll_seconds: float = Field(
        default=1.0, gt=0, le=60, description="How often an idle scheduler looks for jobs"
    )
    heartbeat_seconds: float = Field(
        default=5.0, gt=0, le=300, description="How often a scheduler records that it is alive"
    )
    stale_after_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="A heartbeat older than this counts as stale"
    )
    max_upload_mb: int = Field(
        default=64, ge=1, le=4096, description="Largest dataset upload the API accepts, MiB"
    )
    max_body_kb: int = Field(
        default=256,
        ge=1,
        le=65536,
        description="Largest request body the API reads on any route but an upload (JSON), "
        "KiB; uploads have SPARSEARCH_MAX_UPLOAD_MB",
    )
    max_dataset_mb: int = Field(
        default=512,
        ge=1,
        le=65536,
        description="Largest decompressed size of an uploaded dataset's arrays, MiB",
    )
    session_secret: str | None = Field(
        default=None,
        min_length=32,
        description="Key that signs the dashboard's session cookies (at least 32 characters); "
        "unset: generated once and stored in the database, so every API process and restart "
        "agrees. Changing it signs everybody out",
    )
    session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="How long a dashboard sign-in lasts, hours"
    )
    auth_failures_allowed: int = Field(
        default=10,
        ge=1,
        le=10_000,
        description="Failed authentications (wrong or malformed tokens, bearer or at /login) "
        "one client address may make before it is backed off",
    )
    auth_backoff_seconds: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        description="First backoff of a client past SPARSEARCH_AUTH_FAILURES_ALLOWED, seconds; "
        "each further failure doubles it",
    )
    auth_backoff_max_seconds: float = Field(
        default=900.0, gt=0, le=86400, description="Longest backoff of a client, seconds"
    )
    auth_forget_seconds: float = Field(
        default=3600.0,
        gt=0,
        le=7 * 86400,
        description="A client's failed authentications are forgotten after this long without "
        "one (counted from the end of its backoff), seconds",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Level of sparsearch's own log lines (serve, scheduler)"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="Log lines as text, or JSON with job_id/trial_index fields"
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _format_any_case(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
