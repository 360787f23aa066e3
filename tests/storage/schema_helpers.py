"""What the migration tests check after upgrading: the database is at the head revision, its
schema is what the models declare (as far as Alembic can compare), and it has these indexes."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from sparsearch.storage import head_revision
from sparsearch.storage.engine import build_engine
from sparsearch.storage.models import Base


def assert_at_head(url: str, indexes: dict[str, str]) -> set[str]:
    """Assert the above for ``indexes`` (index name → table); returns the table names."""
    engine = build_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert context.get_current_revision() == head_revision()
            assert compare_metadata(context, Base.metadata) == []
            for name, table in indexes.items():
                assert name in {i["name"] for i in inspect(conn).get_indexes(table)}, name
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


#: Timestamps as the upgrade tests insert them.
TS = sa.DateTime(timezone=True)
#: The jobs columns the upgrade tests of 0008 and later insert (the table as of revision 0007).
JOBS = sa.table(
    "jobs",
    *(sa.column(c) for c in ("id", "status", "dataset", "owner")),
    sa.column("config", sa.JSON),
    sa.column("created_at", TS),
    sa.column("updated_at", TS),
)
