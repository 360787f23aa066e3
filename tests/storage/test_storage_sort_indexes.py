"""The trial page indexes: migration 0005 creates them on both backends (the objectives' sort
indexes and the front's), and on SQLite a page sorted by an objective is read in index order
(no sort over every trial of the job)."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import text

from sparsearch.storage import Storage
from sparsearch.storage.engine import _json_loads
from sparsearch.storage.models import INDEXED_TRIAL_SORTS, trial_sort_index_name
from sparsearch.storage.queries import trial_page_query

EXPECTED = {trial_sort_index_name(k, d) for k in INDEXED_TRIAL_SORTS for d in (False, True)}


def _index_names(storage: Storage) -> set[str]:
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'trials'"
        if storage.dialect == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE tablename = 'trials'"
    )
    with storage._engine.connect() as conn:
        return set(conn.execute(text(sql)).scalars())


def test_migrations_create_the_sort_indexes(storage: Storage) -> None:
    assert len(EXPECTED) == 6
    assert _index_names(storage) >= EXPECTED | {"ix_trials_job_id_pareto"}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", INDEXED_TRIAL_SORTS)
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("pareto", [None, True])
def test_sqlite_reads_objective_pages_in_index_order(
    storage: Storage, key: str, descending: bool, pareto: bool | None
) -> None:
    query = trial_page_query(f"-{key}" if descending else key, None, pareto, True)
    with storage._engine.connect() as conn:
        compiled = query.compile(conn)
        params = compiled.construct_params({"job_id": "j", "owner": "o", "limit": 50, "offset": 0})
        values = tuple(params[name] for name in compiled.positiontup)
        plan = [row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values)]
    # The first step is the page's own scan (later ones are the count and the owner check).
    assert (
        plan[0].startswith("SEARCH trials USING")
        and trial_sort_index_name(key, descending) in plan[0]
    ), plan
    assert not any("TEMP B-TREE FOR ORDER BY" in step for step in plan), plan


def test_json_columns_read_nan_written_by_older_versions() -> None:
    # orjson reads JSON columns; the standard library's NaN token (json.dumps writes it,
    # and SQLite stores it) still reads, through the fallback.
    assert _json_loads(b'{"a": [1, 2.5, "x"], "b": null}') == {"a": [1, 2.5, "x"], "b": None}
    value = _json_loads('{"flash_bytes": NaN}')
    assert math.isnan(value["flash_bytes"])
