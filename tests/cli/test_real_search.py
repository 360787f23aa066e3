"""One real small ``sparsearch search`` on Ray (subprocess, --json), and the commands that read
what it stored: ``jobs``, ``pareto``, ``pull`` in every format, with ``--db`` alone."""

from __future__ import annotations

import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_helpers import (
    FLASH,
    RAM,
    SEARCH_ARGS,
    TRIAL_KEYS,
    Cli,
    clean_env,
    job_rows,
    run_cli,
    sqlite_url,
)

# -- 3. a real search --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> SimpleNamespace:
    """One real small search with --json, shared by the tests of the other commands."""
    root = tmp_path_factory.mktemp("cli-search")
    db, artifacts = sqlite_url(root / "r.db"), root / "a"
    env = clean_env(
        SPARSEARCH_RAY_ADDRESS=ray_address,
        SPARSEARCH_DATABASE_URL=sqlite_url(root / "unused.db"),
        SPARSEARCH_ARTIFACT_DIR=str(root / "unused-artifacts"),
        SPARSEARCH_HEARTBEAT_SECONDS="0.5",
    )
    proc = run_cli(
        *SEARCH_ARGS, "--db", db, "--artifacts", artifacts, "--json", env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return SimpleNamespace(
        proc=proc, doc=json.loads(proc.stdout), db=db, artifacts=artifacts, env=env, root=root
    )


def _stored_artifact(run: SimpleNamespace, index: int, kind: str) -> bytes:
    from sparsearch.storage import open_storage

    storage = open_storage(run.db, run.artifacts)
    try:
        return storage.read_artifact(run.doc["job_id"], index, kind)
    finally:
        storage.close()


def _best_front_trial(doc: dict[str, Any]) -> dict[str, Any]:
    """What `pull` takes by default: the highest int8 accuracy, lowest index among ties."""
    return min(doc["pareto"], key=lambda t: (-t["int8_accuracy"], t["index"]))


@pytest.mark.slow
def test_search_json_is_one_document_with_every_trial(searched: SimpleNamespace) -> None:
    stdout, stderr = searched.proc.stdout, searched.proc.stderr
    doc = json.loads(stdout)  # the whole of stdout is exactly one JSON document
    assert stdout.strip().count("\n") == 0, stdout
    assert "Traceback" not in stderr

    assert {"job_id", "status", "limits", "hypervolume", "trials", "pareto"} <= set(doc)
    assert doc["status"] == "completed"
    assert doc["limits"]["flash_bytes"] == FLASH and doc["limits"]["ram_bytes"] == RAM
    assert isinstance(doc["hypervolume"], float) and 0.0 <= doc["hypervolume"] <= 1.0

    trained = [t for t in doc["trials"] if t["status"] in ("completed", "failed")]
    assert len(trained) == 3, [(t["index"], t["status"], t.get("error")) for t in doc["trials"]]
    for t in doc["trials"]:
        assert set(t) >= TRIAL_KEYS, TRIAL_KEYS - set(t)
    assert [t["index"] for t in doc["trials"]] == list(range(len(doc["trials"])))

    assert doc["pareto"], "no trial on the front"
    assert [t["index"] for t in doc["pareto"]] == [t["index"] for t in doc["trials"] if t["pareto"]]
    for t in doc["pareto"]:
        assert t["status"] == "completed" and t["feasible"]
        assert t["test_accuracy"] is not None and 0.0 <= t["test_accuracy"] <= 1.0
        assert t["flash_bytes"] <= FLASH and t["ram_bytes"] <= RAM

    # The stderr echo shows the parsed limits in bytes.
    assert "24576" in stderr and "6144" in stderr
    assert doc["job_id"] in stderr
    # Only sparsearch speaks on stderr (job line, progress bar): no BoTorch, Optuna or Ray lines.
    noise = r"INFO|WARNING|botorch|optuna|\b[Rr]ay\b"
    chatter = [ln for ln in stderr.splitlines() if re.search(noise, ln)]
    assert chatter == [], chatter


@pytest.mark.slow
def test_jobs_lists_the_job(searched: SimpleNamespace) -> None:
    job_id = searched.doc["job_id"]
    proc = run_cli("jobs", "--json", "--db", searched.db, env=searched.env)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["id"], r["status"]) for r in rows] == [(job_id, "completed")]
    assert rows[0]["limits"]["flash_bytes"] == FLASH
    assert rows[0]["progress"]["trained"] == rows[0]["budget"]["trials"]

    completed = run_cli(
        "jobs", "--status", "completed", "--json", "--db", searched.db, env=searched.env
    )
    assert [r["id"] for r in json.loads(completed.stdout)] == [job_id]
    failed = run_cli("jobs", "--status", "failed", "--json", "--db", searched.db, env=searched.env)
    assert json.loads(failed.stdout) == []

    table = run_cli("jobs", "--db", searched.db, env=searched.env)
    assert table.returncode == 0, table.stderr
    assert job_id in table.stdout  # the id users copy into `pareto`/`pull` is never elided


@pytest.mark.slow
def test_the_search_held_its_job_with_heartbeats(searched: SimpleNamespace) -> None:
    """The CLI process held the job as a scheduler would: created running under its own holder
    (kind "cli"), beaten for while it ran, let go (holder stopped) at the end."""
    from sparsearch.storage import open_storage

    job_id = searched.doc["job_id"]
    with open_storage(searched.db, searched.artifacts) as storage:
        job = storage.get_job(job_id)
        claims = storage.list_claims(job_id)
    assert [c.previous_status for c in claims] == ["queued"]
    holder = claims[0].scheduler_id
    assert holder is not None and holder.startswith("cli:") and job.scheduler_id == holder
    assert job.heartbeat_at is not None and job.started_at is not None
    assert (job.heartbeat_at - job.started_at).total_seconds() >= 0.5  # beaten after the claim
    with closing(sqlite3.connect(searched.db.removeprefix("sqlite:///"))) as conn:
        kind, pid, started, beat, stopped = conn.execute(
            "SELECT kind, pid, started_at, heartbeat_at, stopped_at FROM schedulers WHERE id = ?",
            (holder,),
        ).fetchone()
    assert kind == "cli" and str(pid) in holder and stopped is not None and beat > started
    assert all(t["charged"] for t in searched.doc["trials"])
    assert searched.doc["strategy"] == "bo"


@pytest.mark.slow
def test_pareto_json_and_table(searched: SimpleNamespace) -> None:
    job_id = searched.doc["job_id"]
    front = [t["index"] for t in searched.doc["pareto"]]
    proc = run_cli("pareto", job_id, "--json", "--db", searched.db, env=searched.env)
    assert proc.returncode == 0, proc.stderr
    listed = json.loads(proc.stdout)
    assert sorted(t["index"] for t in listed) == sorted(front)
    accuracies = [t["accuracy"] for t in listed]  # most accurate first, as the API lists it
    assert accuracies == sorted(accuracies, reverse=True)

    table = run_cli("pareto", job_id, "--db", searched.db, env=searched.env)
    assert table.returncode == 0, table.stderr
    assert "Pareto front" in table.stdout and job_id in table.stdout


@pytest.mark.slow
def test_pull_onnx_of_the_default_trial_is_a_valid_model(
    searched: SimpleNamespace, tmp_path: Path
) -> None:
    import onnx

    job_id, best = searched.doc["job_id"], _best_front_trial(searched.doc)
    out = tmp_path / "nested" / "x.onnx"
    proc = run_cli(
        "pull",
        job_id,
        "--format",
        "onnx",
        "-o",
        out,
        "--db",
        searched.db,
        "--artifacts",
        searched.artifacts,
        env=searched.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert f"trial {best['index']}" in proc.stderr
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert out.read_bytes() == _stored_artifact(searched, best["index"], "onnx")


@pytest.mark.slow
def test_pull_state_dict_writes_the_stored_bytes(searched: SimpleNamespace, tmp_path: Path) -> None:
    job_id = searched.doc["job_id"]
    completed = [t for t in searched.doc["trials"] if t["status"] == "completed"]
    assert completed
    best = _best_front_trial(searched.doc)
    # Prefer a trial that is not the default one, so --trial is what picks it.
    trial = next((t for t in completed if t["index"] != best["index"]), completed[0])
    common = ["--db", searched.db, "--artifacts", searched.artifacts]

    out = tmp_path / "model.pt"
    proc = run_cli(
        "pull",
        job_id,
        "--format",
        "state_dict",
        "--trial",
        trial["index"],
        "-o",
        out,
        *common,
        env=searched.env,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == _stored_artifact(searched, trial["index"], "state_dict")

    # Without --trial: the most accurate trial on the front.
    default = tmp_path / "default.pt"
    proc = run_cli(
        "pull", job_id, "--format", "state_dict", "-o", default, *common, env=searched.env
    )
    assert proc.returncode == 0, proc.stderr
    assert default.read_bytes() == _stored_artifact(searched, best["index"], "state_dict")

    # The README's recipe: the bytes load into the network rebuilt from the effective spec.
    from sparsearch.worker.export import load_model

    load_model(best["effective_spec"], default.read_bytes())


@pytest.mark.slow
def test_pull_errors_on_a_real_job(searched: SimpleNamespace, tmp_path: Path) -> None:
    job_id = searched.doc["job_id"]
    cli = Cli(tmp_path)
    common = ["--db", searched.db, "--artifacts", searched.artifacts]
    out = tmp_path / "x.onnx"
    cli.fails(["pull", job_id, "--trial", "99", "-o", out, *common], "has no trial 99")
    cli.fails(["pull", job_id, "--format", "h5", "-o", out, *common], "unknown format 'h5'")
    assert not out.exists()
    cli.fails(["pull", job_id, "-o", tmp_path, *common], "cannot write", str(tmp_path))


@pytest.mark.slow
def test_search_without_json_prints_the_front_table(tmp_path: Path, ray_address: str) -> None:
    env = clean_env(
        SPARSEARCH_RAY_ADDRESS=ray_address, SPARSEARCH_ARTIFACT_DIR=str(tmp_path / "unused")
    )
    db_file = tmp_path / "t.db"
    proc = run_cli(
        *SEARCH_ARGS,
        "--db",
        sqlite_url(db_file),
        "--artifacts",
        tmp_path / "a",
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    ((job_id, status),) = job_rows(db_file)
    assert status == "completed"
    assert "Pareto front" in proc.stdout and job_id in proc.stdout
    assert not proc.stdout.lstrip().startswith("{")


@pytest.mark.slow
def test_pull_with_the_database_alone_finds_the_artifacts_the_search_wrote(
    searched: SimpleNamespace, tmp_path: Path
) -> None:
    """`search --artifacts DIR` records DIR with the job: `pull --db` needs nothing else (the
    environment's SPARSEARCH_ARTIFACT_DIR points elsewhere). The default format is the int8
    .tflite that ships, and TFLite Micro runs it with the arena the trial recorded."""
    from sparsearch.worker.tflm import run_tflm

    job_id, best = searched.doc["job_id"], _best_front_trial(searched.doc)
    out = tmp_path / "model.tflite"
    proc = run_cli("pull", job_id, "-o", out, "--db", searched.db, env=searched.env)
    assert proc.returncode == 0, proc.stderr
    assert f"trial {best['index']}" in proc.stderr and "tflite" in proc.stderr
    data = out.read_bytes()
    assert data == _stored_artifact(searched, best["index"], "tflite")
    assert len(data) == best["tflm_flash_bytes"] and best["measured"]
    run = run_tflm(data)
    arena = best["deployment"]["arena"]
    assert (run.arena_total, run.arena_head) == (best["tflm_ram_bytes"], arena["head"])
    assert run.arena_total == arena["total"]
    assert run.input["shape"] == [1, *best["deployment"]["input"]["shape_hwc"]]


@pytest.mark.slow
def test_pull_c_source_is_the_header_and_array_of_the_tflite(
    searched: SimpleNamespace, tmp_path: Path
) -> None:
    import io
    import zipfile

    job_id, best = searched.doc["job_id"], _best_front_trial(searched.doc)
    out = tmp_path / "model_data.zip"
    proc = run_cli(
        "pull", job_id, "--format", "c_source", "-o", out, "--db", searched.db, env=searched.env
    )
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(io.BytesIO(out.read_bytes())) as z:
        header = z.read("model_data.h").decode()
        source = z.read("model_data.cc").decode()
    assert f"g_model_data_len = {best['tflm_flash_bytes']};" in source
    for method in best["deployment"]["op_resolver"]:
        assert f"resolver.{method};" in header


@pytest.mark.slow
def test_finalize_retrains_the_best_trial_and_pull_then_takes_the_final_model(
    searched: SimpleNamespace, tmp_path: Path
) -> None:
    """Last in this file: it adds final models to the shared job."""
    from sparsearch.worker.tflm import run_tflm

    job_id, best = searched.doc["job_id"], _best_front_trial(searched.doc)
    proc = run_cli(
        "finalize", job_id, "--epochs", "3", "--json", "--db", searched.db, env=searched.env,
        timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["status"] == "completed" and doc["finalizes"] == job_id
    assert doc["strategy"] == "finalize" and doc["budget"]["epochs"] == 3
    (entry,) = doc["finalized"]
    final = entry["final"]
    assert entry["index"] == best["index"] and final["status"] == "completed"
    # Scored on the whole test split (digits: 360 images), on TFLite Micro.
    assert final["deployment"]["int8_eval_images"]["test"] == 360
    assert 0.0 < final["int8_test_accuracy"] <= 1.0

    out = tmp_path / "final.tflite"
    pulled = run_cli("pull", job_id, "-o", out, "--db", searched.db, env=searched.env)
    assert pulled.returncode == 0, pulled.stderr
    assert "final model" in pulled.stderr
    assert len(out.read_bytes()) == final["tflm_flash_bytes"]
    assert run_tflm(out.read_bytes()).arena_total == final["tflm_ram_bytes"]
    search_run = tmp_path / "search.tflite"
    pulled = run_cli(
        "pull", job_id, "--search-run", "-o", search_run, "--db", searched.db, env=searched.env
    )
    assert pulled.returncode == 0 and "search run" in pulled.stderr
    assert search_run.read_bytes() == _stored_artifact(searched, best["index"], "tflite")
    assert search_run.read_bytes() != out.read_bytes()  # retrained: other weights
