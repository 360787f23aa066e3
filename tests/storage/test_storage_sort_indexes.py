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
    query = trial_page_query("sqlite", f"-{key}" if descending else key, None, pareto, True)
    with storage._engine.connect() as conn:
        compiled = query.compile(conn)
        params = compiled.construct_params({"job_id": "j", "owner": "o", "limit": 50, "offset": 0})
        values = tuple(params[name] for name in compiled.positiontup)
        plan = list(conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", values))
    # The page's indices come from the IN list's subquery: its scan of the job's trials reads
    # the sort index in order (no sort of every trial of the job). The steps under it are the
    # owner check.
    (ranking,) = [node for node, _, _, step in plan if step.startswith("LIST SUBQUERY")]
    under = [step for _, parent, _, step in plan if parent == ranking]
    assert (
        under[0].startswith("SEARCH trials USING")
        and trial_sort_index_name(key, descending) in under[0]
    ), plan
    assert not any("TEMP B-TREE" in step for _, parent, _, step in plan if parent == ranking), plan


def test_json_columns_read_nan_written_by_older_versions() -> None:
    # orjson reads JSON columns; the standard library's NaN token (json.dumps writes it,
    # and SQLite stores it) still reads, through the fallback.
    assert _json_loads(b'{"a": [1, 2.5, "x"], "b": null}') == {"a": [1, 2.5, "x"], "b": None}
    value = _json_loads('{"flash_bytes": NaN}')
    assert math.isnan(value["flash_bytes"])


def _plan_nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_postgres_runs_every_page_step_once_with_or_without_statistics(storage: Storage) -> None:
    # A join (or IN) of the ranked indices with the trials let PostgreSQL plan a nested loop
    # that re-ran the ranking once per trial of the job while the table had no statistics
    # (50-400 ms a page). The array form runs each step once, before and after ANALYZE.
    job = storage.create_job(dataset="digits", config={}, owner="o")
    for i in range(300):
        storage.add_trial(
            job.id, i, status="running", params={}, generator="sobol", gen_seconds=0.1,
            estimates={"flash_bytes": 1000 + (i * 37) % 500}, feasible=True, pruning={},
        )  # fmt: skip
        storage.finish_trial(job.id, i, status="completed", metrics={"accuracy": (i * 7) % 300})
    storage.set_pareto(job.id, range(0, 300, 10))
    for analyzed in (False, True):
        if analyzed:
            with storage._reader.connect() as conn:
                conn.exec_driver_sql("ANALYZE trials")
        for sort, pareto in (("-accuracy", True), ("flash_bytes", None), ("index", None)):
            query = trial_page_query("postgresql", sort, None, pareto, True)
            offset = 10 if pareto else 100  # the front has 30 trials
            args = {"job_id": job.id, "owner": "o", "limit": 50, "offset": offset}
            with storage._reader.connect() as conn:
                sql = str(query.compile(conn))
                cursor = conn.connection.dbapi_connection.cursor()
                cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", args)
                (plan,) = cursor.fetchone()[0]
            nodes = _plan_nodes(plan["Plan"])
            loops = [(n["Node Type"], n.get("Index Name"), n["Actual Loops"]) for n in nodes]
            assert all(n[2] <= 1 for n in loops), (analyzed, sort, loops)
            assert plan["Plan"]["Actual Rows"] == (20 if pareto else 50)
