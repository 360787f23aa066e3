"""trial page indexes: pages sorted by accuracy, flash or RAM read in index order, and a
job's front found without visiting its other trials

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As in models.INDEXED_TRIAL_SORTS (a migration keeps its own copy: it must not change later).
KEYS = ("accuracy", "flash_bytes", "ram_bytes")


def _name(key: str, descending: bool) -> str:
    return f"ix_trials_sort_{key}_{'desc' if descending else 'asc'}"


def upgrade() -> None:
    op.create_index("ix_trials_job_id_pareto", "trials", ["job_id", "pareto"])
    for key in KEYS:
        for descending in (False, True):
            op.create_index(
                _name(key, descending),
                "trials",
                [
                    "job_id",
                    sa.text(f"({key} IS NULL)"),
                    sa.text(f"{key} DESC" if descending else key),
                    "index",
                ],
            )


def downgrade() -> None:
    for key in KEYS:
        for descending in (False, True):
            op.drop_index(_name(key, descending), table_name="trials")
    op.drop_index("ix_trials_job_id_pareto", table_name="trials")
