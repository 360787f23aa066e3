"""trial worker node: the Ray node id a trial ran on, next to its worker pid and host

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable, no default: trials stored before (and trials never trained) have no node. Plain
    # ADD COLUMN works on SQLite too and avoids a batch table rebuild.
    op.add_column("trials", sa.Column("worker_node", sa.String(64), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), not a batch rebuild: a rebuilt trials table would
    # lose 0005's expression indexes, which SQLite's reflection does not see.
    op.drop_column("trials", "worker_node")
