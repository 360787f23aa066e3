"""SQLAlchemy models. Private to ``storage/``: other packages see ``records`` only.

A schema change here needs a new migration in ``alembic/versions`` (the test suite compares
the migrated schema with these models).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Deterministic constraint names on every backend, so later migrations can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: storage keeps timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UTCDateTime}


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"), Index("ix_jobs_owner", "owner"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    dataset: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]]
    error: Mapped[str | None] = mapped_column(Text)
    hypervolume: Mapped[float | None] = mapped_column(Float)
    best_accuracy: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    owner: Mapped[str] = mapped_column(String(64), default="local", server_default="local")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The scheduler that claimed the job last, and its last sign of life for this job.
    scheduler_id: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None]
    # Candidates the job's screen rejected by estimate (never stored as trials).
    screened: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Absolute folder of the job's artifact files, recorded when it was created: `pull`,
    # `pareto` and the API find them with the database alone (NULL: the storage's own folder).
    artifact_dir: Mapped[str | None] = mapped_column(String(1024))
    # [trained, hypervolume, best_accuracy] after each refresh of the front, by trained count
    # (``JobsMixin.update_job_summary``); NULL for a job never refreshed (or stored before).
    hypervolume_trace: Mapped[list[list[Any]] | None] = mapped_column(JSON)


class Trial(Base):
    __tablename__ = "trials"
    __table_args__ = (
        UniqueConstraint("job_id", "index"),
        Index("ix_trials_job_id_status", "job_id", "status"),
        # The front of a job (/pareto, the most read page) without visiting its other trials.
        Index("ix_trials_job_id_pareto", "job_id", "pareto"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(64), ForeignKey("jobs.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    params: Mapped[dict[str, Any]]
    generator: Mapped[str | None] = mapped_column(String(64))
    gen_seconds: Mapped[float | None] = mapped_column(Float)
    train_seconds: Mapped[float | None] = mapped_column(Float)
    accuracy: Mapped[float | None] = mapped_column(Float)
    test_accuracy: Mapped[float | None] = mapped_column(Float)
    flash_bytes: Mapped[int | None] = mapped_column(BigInteger)
    ram_bytes: Mapped[int | None] = mapped_column(BigInteger)
    activation_bytes: Mapped[int | None] = mapped_column(BigInteger)
    macs: Mapped[int | None] = mapped_column(BigInteger)
    nnz_flash_bytes: Mapped[int | None] = mapped_column(BigInteger)
    param_count: Mapped[int | None] = mapped_column(BigInteger)
    # The estimator's numbers, kept when measured ones (stripped .tflite size, TFLM arena)
    # replace flash_bytes / ram_bytes / activation_bytes; `measured` says which those are.
    est_flash_bytes: Mapped[int | None] = mapped_column(BigInteger)
    est_ram_bytes: Mapped[int | None] = mapped_column(BigInteger)
    est_activation_bytes: Mapped[int | None] = mapped_column(BigInteger)
    measured: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    int8_accuracy: Mapped[float | None] = mapped_column(Float)
    int8_test_accuracy: Mapped[float | None] = mapped_column(Float)
    export_seconds: Mapped[float | None] = mapped_column(Float)
    # Both deployment targets' measured numbers (vocabulary.TARGET_METRICS): the TFLM target's
    # model file and arena, the C target's Cortex-M4 firmware; c_error says why the C numbers
    # are null (null when measured).
    tflm_flash_bytes: Mapped[int | None] = mapped_column(BigInteger)
    tflm_ram_bytes: Mapped[int | None] = mapped_column(BigInteger)
    c_flash_bytes: Mapped[int | None] = mapped_column(BigInteger)
    c_ram_bytes: Mapped[int | None] = mapped_column(BigInteger)
    c_stack_bytes: Mapped[int | None] = mapped_column(BigInteger)
    instructions: Mapped[int | None] = mapped_column(BigInteger)
    c_error: Mapped[str | None] = mapped_column(Text)
    # What firmware needs of the shipped model (quantization, preprocessing, operators, ...).
    deployment: Mapped[dict[str, Any] | None]
    # The learning curve: {"epoch", "accuracy", "seconds", "phase"} per epoch (worker.curve).
    curve: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    # The trial's final training (`finalize`): status, epochs, metrics, deployment.
    final: Mapped[dict[str, Any] | None]
    feasible: Mapped[bool] = mapped_column(Boolean)
    pareto: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Counts against the job's budget once completed or failed; false for trials a graceful
    # stop cut short.
    charged: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    pruning: Mapped[dict[str, Any]]
    effective_spec: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_pid: Mapped[int | None] = mapped_column(Integer)
    worker_host: Mapped[str | None] = mapped_column(String(255))
    worker_node: Mapped[str | None] = mapped_column(String(64))  # Ray node id (hex)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


#: Trial sort keys served in index order (the three objectives, both directions): a page
#: sorted by one of them reads its rows off the index instead of sorting every trial of the
#: job. Each index matches ``queries.trial_order``: NULLs last, ties by ascending index.
INDEXED_TRIAL_SORTS: tuple[str, ...] = ("accuracy", "flash_bytes", "ram_bytes")


def trial_sort_index_name(key: str, descending: bool) -> str:
    return f"ix_trials_sort_{key}_{'desc' if descending else 'asc'}"


for _key in INDEXED_TRIAL_SORTS:
    _column = getattr(Trial, _key)
    for _descending in (False, True):
        Index(
            trial_sort_index_name(_key, _descending),
            Trial.job_id,
            _column.is_(None),
            _column.desc() if _descending else _column,
            Trial.index,
        )


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("trial_id", "kind", "final"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(Integer, ForeignKey("trials.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    # A file of the trial's final training (`finalize`) rather than of its search run.
    final: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    path: Mapped[str] = mapped_column(String(1024))
    effective_spec: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Token(Base):
    """An API token; only the sha256 of the plaintext is stored."""

    __tablename__ = "tokens"
    __table_args__ = (UniqueConstraint("token_hash"), Index("ix_tokens_owner", "owner"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    token_hash: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]


class Scheduler(Base):
    """A process that holds jobs and its heartbeat: a scheduler (the API reports whether one is
    alive) or a local ``sparsearch search`` (``kind`` "cli")."""

    __tablename__ = "schedulers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="scheduler", server_default="scheduler")
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None]


class JobClaim(Base):
    """Every time a scheduler took a job (first run, resume, takeover): the claim history."""

    __tablename__ = "job_claims"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    scheduler_id: Mapped[str | None] = mapped_column(String(128))
    previous_status: Mapped[str] = mapped_column(String(16))
    claimed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Dataset(Base):
    """A dataset uploaded to the service; its ``.npz`` is ``<artifact_dir>/datasets/<id>.npz``."""

    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_owner", "owner"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    num_classes: Mapped[int] = mapped_column(Integer)
    input_shape: Mapped[list[int]] = mapped_column(JSON)  # [C, H, W]
    n_train: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AppSecret(Base):
    """A value the server generates once and every process shares (the dashboard's
    cookie-signing key): ``AppSecretsMixin.secret``."""

    __tablename__ = "app_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DashboardSession(Base):
    """A dashboard sign-in (``TokensMixin.start_session``): its cookie carries a random secret,
    stored here as its sha256. Signing out deletes the row, so a copied cookie stops working;
    a row past ``expires_at`` is refused and swept at the next sign-in."""

    __tablename__ = "dashboard_sessions"
    __table_args__ = (Index("ix_dashboard_sessions_expires_at", "expires_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the secret
    token_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class AuthFailure(Base):
    """Failed authentications of one client (remote address) since it was last quiet
    (``TokensMixin.record_auth_failure``): the count, and the backoff it earned."""

    __tablename__ = "auth_failures"
    __table_args__ = (Index("ix_auth_failures_forget_at", "forget_at"),)

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[datetime]
    blocked_until: Mapped[datetime | None]
    #: When the row is forgotten: ``forget_after`` past the last failure or the backoff's end.
    forget_at: Mapped[datetime]
