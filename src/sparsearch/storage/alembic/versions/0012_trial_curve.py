"""trials keep their learning curve (``curve``: float accuracy on a fixed validation sample
after each epoch of training and fine-tuning, ``worker.curve``); trials trained before have
none

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMN on trials (no batch rebuild: it would lose 0005's expression indexes).
    op.add_column("trials", sa.Column("curve", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("trials", "curve")
