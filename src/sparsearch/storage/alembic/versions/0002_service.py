"""service: job owner, cancel flag and heartbeat; API tokens; scheduler heartbeats

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Existing jobs become the local user's (server default), not cancel-requested. Plain
    # ADD COLUMN works on SQLite too (constant defaults) and avoids a batch table rebuild.
    op.add_column("jobs", sa.Column("owner", sa.String(64), server_default="local", nullable=False))
    op.add_column(
        "jobs",
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.add_column("jobs", sa.Column("scheduler_id", sa.String(128), nullable=True))
    op.add_column("jobs", sa.Column("heartbeat_at", _TS, nullable=True))
    op.create_index("ix_jobs_owner", "jobs", ["owner"])

    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_tokens_token_hash"),
    )
    op.create_index("ix_tokens_owner", "tokens", ["owner"])

    op.create_table(
        "schedulers",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("heartbeat_at", _TS, nullable=False),
        sa.Column("stopped_at", _TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedulers"),
    )


def downgrade() -> None:
    op.drop_table("schedulers")
    op.drop_index("ix_tokens_owner", table_name="tokens")
    op.drop_table("tokens")
    op.drop_index("ix_jobs_owner", table_name="jobs")
    # Rebuilds the table on SQLite (foreign keys are off while migrating, see migrations.py).
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("scheduler_id")
        batch.drop_column("cancel_requested")
        batch.drop_column("owner")
