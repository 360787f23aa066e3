"""measured deployment numbers: estimates kept beside the measured flash/RAM, int8 accuracy on
TFLite Micro, export time, the deployment metadata, final training, final artifacts, and the
folder a job's artifacts live in

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 00:00:00
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TRIAL_COLUMNS = (
    ("est_flash_bytes", sa.BigInteger()),
    ("est_ram_bytes", sa.BigInteger()),
    ("est_activation_bytes", sa.BigInteger()),
    ("int8_accuracy", sa.Float()),
    ("int8_test_accuracy", sa.Float()),
    ("export_seconds", sa.Float()),
    ("deployment", sa.JSON()),
    ("final", sa.JSON()),
)


@contextlib.contextmanager
def _quiet_reflection() -> Iterator[None]:
    """SQLite's batch rebuild of ``artifacts`` reflects ``trials`` (its foreign key), whose
    expression indexes (0005) SQLAlchemy cannot reflect and warns about on stderr; they are
    not touched here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Skipped unsupported reflection", sa.exc.SAWarning)
        yield


def upgrade() -> None:
    # Plain ADD COLUMN on trials (no batch rebuild: it would lose 0005's expression indexes).
    for name, type_ in _TRIAL_COLUMNS:
        op.add_column("trials", sa.Column(name, type_, nullable=True))
    op.add_column(
        "trials", sa.Column("measured", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    # Trials stored before carried estimates only: they are the estimates.
    op.execute(
        "UPDATE trials SET est_flash_bytes = flash_bytes, est_ram_bytes = ram_bytes, "
        "est_activation_bytes = activation_bytes"
    )
    op.add_column("jobs", sa.Column("artifact_dir", sa.String(1024), nullable=True))
    with _quiet_reflection(), op.batch_alter_table("artifacts") as batch:
        batch.add_column(
            sa.Column("final", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.drop_constraint("uq_artifacts_trial_id_kind", type_="unique")
        batch.create_unique_constraint(
            "uq_artifacts_trial_id_kind_final", ["trial_id", "kind", "final"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM artifacts WHERE final")
    with _quiet_reflection(), op.batch_alter_table("artifacts") as batch:
        batch.drop_constraint("uq_artifacts_trial_id_kind_final", type_="unique")
        batch.create_unique_constraint("uq_artifacts_trial_id_kind", ["trial_id", "kind"])
        batch.drop_column("final")
    op.drop_column("jobs", "artifact_dir")
    op.drop_column("trials", "measured")
    for name, _ in reversed(_TRIAL_COLUMNS):
        op.drop_column("trials", name)
