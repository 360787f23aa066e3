"""The CLI's tables fit the terminal: on 60, 80 (a pipe) and 200 columns every row is one line,
ids are whole, the key numbers are there; narrow terminals drop the least important columns.
A sparse job's front shows its accounted (non-zero) flash and says so in the header."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sparsearch.cli import search as search_cli
from sparsearch.cli.render import front_table, jobs_table, short_time
from sparsearch.cli.tokens import _tokens_table

WIDTHS = (60, 80, 200)
NOW = datetime.now(UTC)
SPARSEARCH = str(Path(sys.executable).with_name("sparsearch"))


def render(renderable: Any, width: int) -> list[str]:
    console = Console(width=width, file=io.StringIO(), color_system=None, legacy_windows=False)
    console.print(renderable)
    return console.file.getvalue().splitlines()


def row_of(lines: list[str], key: str) -> str:
    """The one line that holds ``key`` (a row's id), whole."""
    [line] = [ln for ln in lines if key in ln]
    return line


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip("│┃ ").split("│" if "│" in line else "┃")]


def header(lines: list[str]) -> list[str]:
    [line] = [ln for ln in lines if ln.startswith("┃")]
    return cells(line)


JOBS = [
    {
        "id": "4c3cff7718e4",
        "status": "interrupted",
        "dataset": "fashion-mnist",
        "limits": {"flash_bytes": 24576, "ram_bytes": 6144},
        "budget": {"trials": 100},
        "progress": {"trained": 57, "budget": 100, "screened": 12345},
        "strategy": "evolution",
        "target": "c",
        "best_accuracy": 0.84412,
        "hypervolume": 0.28913,
        "created_at": NOW.isoformat(),
    },
    {
        "id": "0123456789ab",
        "status": "completed",
        "dataset": "npz:/home/someone/data/sets/very/long/path/to/the_dataset.npz",
        "limits": {"flash_bytes": 1048576, "ram_bytes": 262144},
        "budget": {"trials": 5},
        "progress": {"trained": 5, "budget": 5},
        "best_accuracy": None,
        "hypervolume": None,
        "created_at": "2024-02-03T04:05:06+00:00",
    },
]

TRIALS = [
    {
        "index": 12,
        "accuracy": 0.91234,
        "test_accuracy": 0.9,
        "flash_bytes": 18734,
        "nnz_flash_bytes": 9000,
        "ram_bytes": 5900,
        "macs": 1_234_567,
        "pruning": {"method": "magnitude", "level": 0.75},
    },
    {
        "index": 3,
        "accuracy": 0.8,
        "test_accuracy": None,
        "flash_bytes": 8734,
        "nnz_flash_bytes": 4000,
        "ram_bytes": 2900,
        "macs": 123,
        "pruning": {"method": "none", "level": 0.0},
    },
]
TITLE = "Pareto front of job 4c3cff7718e4 (completed, hypervolume 0.289)"


@pytest.mark.parametrize("width", WIDTHS)
def test_jobs_rows_are_one_line_with_whole_ids(width: int) -> None:
    lines = render(jobs_table(JOBS), width)
    assert all(len(ln) <= width for ln in lines), "\n".join(lines)
    first, second = row_of(lines, "4c3cff7718e4"), row_of(lines, "0123456789ab")
    assert cells(first)[:4] == ["4c3cff7718e4", "interrupted", "57/100", "0.844"]
    assert cells(second)[:4] == ["0123456789ab", "completed", "5/5", "-"]
    # title, top border, header, rule, 2 rows, bottom border: no cell wrapped onto a 2nd line
    assert len(lines) == 7, "\n".join(lines)


def test_jobs_narrow_drops_columns_wide_shows_all() -> None:
    assert header(render(jobs_table(JOBS), 60)) == ["id", "status", "trials", "best", "flash"]
    at_80 = header(render(jobs_table(JOBS), 80))
    assert at_80[:6] == ["id", "status", "trials", "best", "flash", "RAM"]
    wide = render(jobs_table(JOBS), 200)
    assert header(wide) == [
        "id", "status", "trials", "best", "flash", "RAM", "strategy", "target", "dataset",
        "HV", "screened", "created",
    ]  # fmt: skip
    assert cells(row_of(wide, "4c3cff7718e4"))[4:] == [
        "24.0 KiB", "6.0 KiB", "evolution", "c", "fashion-mnist", "0.289", "12.3k",
        short_time(NOW.isoformat()),
    ]  # fmt: skip
    # A job from a server that predates strategies, targets and screening.
    second = cells(row_of(wide, "0123456789ab"))
    assert (second[6], second[7], second[10]) == ("-", "-", "-")
    assert JOBS[1]["dataset"] in row_of(wide, "0123456789ab")  # room enough: not cut
    assert "2024-02-03" in row_of(wide, "0123456789ab")  # another year: the date


def test_jobs_cut_a_long_dataset_rather_than_drop_it() -> None:
    lines = render(jobs_table(JOBS), 120)
    assert "dataset" in header(lines)
    assert "npz:/home/someone/d…" in row_of(lines, "0123456789ab")


def test_job_without_progress_shows_its_budget() -> None:
    job = {**JOBS[0], "progress": None}
    assert cells(row_of(render(jobs_table([job]), 80), job["id"]))[2] == "100"


def test_markup_in_values_is_printed_as_is() -> None:
    job = {**JOBS[0], "dataset": "[bold]x[/bold]"}
    assert "[bold]x[/bold]" in row_of(render(jobs_table([job]), 200), job["id"])


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("accounting", ["dense", "sparse"])
def test_front_rows_are_one_line_with_the_accounted_flash(width: int, accounting: str) -> None:
    lines = render(front_table(TRIALS, title=TITLE, flash_accounting=accounting), width)
    assert all(len(ln) <= width for ln in lines), "\n".join(lines)
    assert "4c3cff7718e4" in "\n".join(lines)  # the title's id, never split
    heads = header(lines)
    flash = "flash (nnz)" if accounting == "sparse" else "flash"
    assert heads[:4] == ["trial", "accuracy", flash, "RAM"]
    best = cells(next(ln for ln in lines if ln.startswith("│")))
    assert best[:2] == ["12", "0.912"]
    assert best[2] == ("8.8 KiB" if accounting == "sparse" else "18.3 KiB")
    assert len([ln for ln in lines if ln.startswith("│")]) == len(TRIALS)


def test_front_wide_shows_everything_with_short_formats() -> None:
    lines = render(front_table(TRIALS, title=TITLE, flash_accounting="sparse"), 200)
    assert header(lines) == [
        "trial", "accuracy", "flash (nnz)", "RAM", "float acc", "MACs", "pruning", "test acc",
        "dense flash",
    ]  # fmt: skip
    assert cells(lines[4]) == [
        "12", "0.912", "8.8 KiB", "5.8 KiB", "0.912", "1.23M", "magnitude 75%", "0.900",
        "18.3 KiB",
    ]  # fmt: skip
    dense = render(front_table(TRIALS, title=TITLE), 200)
    assert "dense flash" not in header(dense) and "flash" in header(dense)


def test_front_prefers_the_servers_accounted_flash() -> None:
    trial = {**TRIALS[0], "accounted_flash_bytes": 1000}
    lines = render(front_table([trial], title=TITLE, flash_accounting="sparse"), 80)
    assert cells(lines[4])[2] == "1000 B"


@pytest.mark.parametrize("accounting", [None, "dense", "sparse"])
def test_print_front_follows_the_jobs_accounting(monkeypatch, accounting: str | None) -> None:
    console = Console(width=80, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(search_cli, "out", console)
    doc = {"job_id": "4c3cff7718e4", "status": "completed", "hypervolume": 0.3, "pareto": TRIALS}
    if accounting:
        doc["flash_accounting"] = accounting
    search_cli.print_front(doc)
    lines = console.file.getvalue().splitlines()
    assert header(lines)[2] == ("flash (nnz)" if accounting == "sparse" else "flash")


@pytest.mark.parametrize("target", [None, "tflm", "c"])
def test_print_front_says_what_the_jobs_target_measures(monkeypatch, target: str | None) -> None:
    console = Console(width=200, file=io.StringIO(), color_system=None)
    monkeypatch.setattr(search_cli, "out", console)
    doc = {"job_id": "4c3cff7718e4", "status": "completed", "hypervolume": 0.3, "pareto": TRIALS}
    if target:
        doc["target"] = target
    search_cli.print_front(doc)
    text = " ".join(console.file.getvalue().split())
    if target == "c":  # the C model's firmware: no .tflite, no TFLM runtime on top
        assert "Cortex-M4 firmware image" in text and "static RAM + peak stack" in text
        assert ".tflite" not in text and "TFLM runtime" not in text
    else:  # a job from before targets deployed to TFLM
        assert "the stripped .tflite" in text and "TFLM runtime itself" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_tokens_rows_are_one_line_with_whole_ids(width: int) -> None:
    rows = [
        {"id": 7, "owner": "alice", "name": "laptop", "prefix": "ssk_AbCdEf12",
         "created_at": NOW.isoformat(), "last_used_at": None, "revoked_at": None},
        {"id": 1234, "owner": "a-rather-long-owner-name", "name": "ci-runner-with-a-long-name",
         "prefix": "ssk_ZyXwVu98", "created_at": "2024-01-01T00:00:00+00:00",
         "last_used_at": NOW.isoformat(), "revoked_at": NOW.isoformat()},
    ]  # fmt: skip
    lines = render(_tokens_table(rows), width)
    assert all(len(ln) <= width for ln in lines), "\n".join(lines)
    assert cells(row_of(lines, "ssk_AbCdEf12"))[:4] == ["7", "alice", "ssk_AbCdEf12", "-"]
    revoked = cells(row_of(lines, "ssk_ZyXwVu98"))
    assert revoked[0] == "1234" and revoked[3] == short_time(NOW.isoformat())
    assert len(lines) == 7, "\n".join(lines)
    if width == 200:
        assert header(lines) == [
            "id", "owner", "prefix", "revoked", "name", "last used", "created",
        ]  # fmt: skip
        assert "2024-01-01" in row_of(lines, "ssk_ZyXwVu98")


def test_short_time() -> None:
    now = datetime(2026, 5, 6, tzinfo=UTC)
    assert short_time("2026-01-02T03:04:05.123456+00:00", now=now) == "01-02 03:04"
    assert short_time("2025-12-31T23:59:00+00:00", now=now) == "2025-12-31"
    assert short_time(None) == "-"


# -- the commands, through a pipe (Rich's 80 columns) -------------------------------------------


@pytest.fixture
def sparse_job(tmp_path: Path) -> tuple[str, str]:
    """A sqlite database with a completed sparse-accounting job whose front has two trials."""
    from sparsearch.jobconfig import JobConfig
    from sparsearch.storage import open_storage

    db = f"sqlite:///{tmp_path / 'runs.db'}"
    with open_storage(db, tmp_path / "artifacts") as storage:
        cfg = JobConfig.create(
            dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=2,
            flash_accounting="sparse",
            target="tflm",  # sparse accounting is a TFLM notion
        )  # fmt: skip
        job = storage.create_job(dataset="digits", config=cfg.to_dict())
        for i, (acc, flash, nnz) in enumerate([(0.95, 20480, 7168), (0.9, 10240, 3072)]):
            est = {"flash_bytes": flash, "nnz_flash_bytes": nnz, "ram_bytes": 4096, "macs": 5000}
            storage.add_trial(
                job.id, i, status="running", params={}, generator="Sobol", gen_seconds=0.1,
                estimates=est, feasible=True, pruning={"method": "magnitude", "level": 0.5},
            )  # fmt: skip
            storage.finish_trial(
                job.id, i, status="completed", metrics={"accuracy": acc, "test_accuracy": acc},
                train_seconds=1.0, effective_spec={}, artifacts={},
            )  # fmt: skip
        storage.set_pareto(job.id, [0, 1])
        storage.set_job_status(job.id, "running")
        storage.set_job_status(job.id, "completed")
        storage.update_job_summary(job.id, hypervolume=0.5, best_accuracy=0.95)
    return db, job.id


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run([SPARSEARCH, *args], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_jobs_and_pareto_through_a_pipe(sparse_job: tuple[str, str]) -> None:
    db, job_id = sparse_job
    jobs = _cli("jobs", "--db", db).stdout.splitlines()
    assert all(len(ln) <= 80 for ln in jobs), "\n".join(jobs)
    assert cells(row_of(jobs, job_id))[:4] == [job_id, "completed", "2/2", "0.950"]

    front = _cli("pareto", job_id, "--db", db).stdout.splitlines()
    assert all(len(ln) <= 80 for ln in front), "\n".join(front)
    assert header(front)[2] == "flash (nnz)"
    rows = [cells(ln) for ln in front if ln.startswith("│")]
    # stored with estimates only: marked "~" (measured trials show plain sizes)
    assert [r[:3] for r in rows] == [["0", "0.950", "~7.0 KiB"], ["1", "0.900", "~3.0 KiB"]]

    # --json is untouched by the tables: the stored trial documents, as before
    listed = json.loads(_cli("pareto", job_id, "--json", "--db", db).stdout)
    assert [t["nnz_flash_bytes"] for t in listed] == [7168, 3072]


@pytest.mark.parametrize("screened", [None, 37])
def test_the_progress_line_shows_screened_candidates(screened: int | None) -> None:
    from types import SimpleNamespace

    from sparsearch.cli.render import SearchProgress

    counters = dict(
        trained=2, running=1, failed=0, infeasible=3, best_accuracy=0.9, hypervolume=0.1
    )
    if screened is not None:  # a driver's Progress before the field existed has none
        counters["screened"] = screened
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=False)
    with SearchProgress(console, 8) as bar:
        bar.update(SimpleNamespace(**counters))
    assert f"infeasible 3 · screened {screened or 0} · best 0.900" in buf.getvalue()
