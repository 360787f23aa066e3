"""both deployment targets' measured numbers on trials: the TFLite Micro target's model file and
arena (``tflm_flash_bytes``, ``tflm_ram_bytes``), the C target's Cortex-M4 firmware
(``c_flash_bytes``, ``c_ram_bytes``, ``c_stack_bytes``, ``instructions``) and ``c_error``, why
the C numbers are null

Trials measured before this revision were measured on TFLite Micro: their ``flash_bytes`` and
``ram_bytes`` are copied to the ``tflm_*`` columns. No trial has C numbers yet.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-17 00:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIAL_COLUMNS = (
    ("tflm_flash_bytes", sa.BigInteger()),
    ("tflm_ram_bytes", sa.BigInteger()),
    ("c_flash_bytes", sa.BigInteger()),
    ("c_ram_bytes", sa.BigInteger()),
    ("c_stack_bytes", sa.BigInteger()),
    ("instructions", sa.BigInteger()),
    ("c_error", sa.Text()),
)


def upgrade() -> None:
    # Plain ADD COLUMN on trials (no batch rebuild: it would lose 0005's expression indexes).
    for name, type_ in _TRIAL_COLUMNS:
        op.add_column("trials", sa.Column(name, type_, nullable=True))
    # Measured trials were measured on TFLM: their flash / RAM are that target's numbers.
    trials = sa.table(
        "trials",
        sa.column("measured", sa.Boolean()),
        *(sa.column(c, sa.BigInteger()) for c in ("flash_bytes", "ram_bytes")),
        *(sa.column(c, sa.BigInteger()) for c in ("tflm_flash_bytes", "tflm_ram_bytes")),
    )
    op.execute(
        trials.update()
        .where(trials.c.measured.is_(True))
        .values(tflm_flash_bytes=trials.c.flash_bytes, tflm_ram_bytes=trials.c.ram_bytes)
    )


def downgrade() -> None:
    for name, _ in reversed(_TRIAL_COLUMNS):
        op.drop_column("trials", name)
