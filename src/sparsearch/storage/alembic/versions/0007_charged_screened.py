"""charged trials, screened candidates, holder kinds: whether a trial counts against its job's
budget, how many candidates a job's screen rejected, and whether a holder is a scheduler or a
local CLI run

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN with constant server defaults (SQLite too, no batch rebuild): trials
    # stored before were all counted against their budgets, jobs screened nothing, and every
    # registered holder was a scheduler.
    op.add_column(
        "trials", sa.Column("charged", sa.Boolean(), server_default=sa.true(), nullable=False)
    )
    op.add_column("jobs", sa.Column("screened", sa.Integer(), server_default="0", nullable=False))
    op.add_column(
        "schedulers",
        sa.Column("kind", sa.String(16), server_default="scheduler", nullable=False),
    )


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: a rebuilt trials table would
    # lose 0005's expression indexes, which SQLite's reflection does not see.
    op.drop_column("schedulers", "kind")
    op.drop_column("jobs", "screened")
    op.drop_column("trials", "charged")
