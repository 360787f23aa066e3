"""server secrets and hypervolume traces: ``app_secrets`` keeps values the server generates
once (the dashboard's cookie-signing key) so that every API process and restart agrees, and
``jobs.hypervolume_trace`` the job's hypervolume after each refresh of its front

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "app_secrets",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_app_secrets"),
    )
    # Plain ADD COLUMN (no batch rebuild); jobs stored before have no trace (NULL).
    op.add_column("jobs", sa.Column("hypervolume_trace", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "hypervolume_trace")
    op.drop_table("app_secrets")
