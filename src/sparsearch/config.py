"""Settings from the environment (prefix ``SPARSEARCH_``), built explicitly, never at import."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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
