"""Rich rendering for the CLI: the live search progress and the Pareto front table.

Progress always goes to stderr so that stdout can carry exactly one JSON document.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsearch.units import format_size


class SearchProgress:
    """A Rich progress bar over trained trials with the counters of DESIGN.md's contract."""

    def __init__(self, console: Console, budget: int) -> None:
        self._bar = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._bar.add_task("search", total=budget, stats="starting Ray and Ax ...")

    def __enter__(self) -> SearchProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.__exit__(*exc)

    def update(self, p: Any) -> None:
        best = f"{p.best_accuracy:.3f}" if p.best_accuracy is not None else "-"
        stats = (
            f"trained {p.trained} · running {p.running} · failed {p.failed} · "
            f"infeasible {p.infeasible} · best {best} · HV {p.hypervolume:.3f}"
        )
        self._bar.update(self._task, completed=p.trained, stats=stats)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pruning(p: dict[str, Any] | None) -> str:
    if not p or p.get("method", "none") == "none" or not p.get("level"):
        return "none"
    return f"{p['method']} {p['level']:.2f}"


def front_table(trials: Iterable[dict[str, Any]], *, title: str) -> Table:
    table = Table(title=title)
    for col in ("trial", "accuracy", "test acc", "flash", "RAM", "MACs", "pruning"):
        table.add_column(col, justify="right" if col not in ("pruning",) else "left")
    for t in trials:
        table.add_row(
            str(t["index"]),
            _pct(t.get("accuracy")),
            _pct(t.get("test_accuracy")),
            format_size(t.get("flash_bytes")),
            format_size(t.get("ram_bytes")),
            f"{t['macs']:,}" if t.get("macs") is not None else "-",
            _pruning(t.get("pruning")),
        )
    return table


def jobs_table(jobs: Iterable[dict[str, Any]]) -> Table:
    jobs = list(jobs)
    table = Table(title="jobs")
    # The id is what `pareto`/`pull` take: never elide or wrap it; other columns give way on
    # narrow terminals.
    id_width = max((len(str(j["id"])) for j in jobs), default=2)
    table.add_column("id", no_wrap=True, min_width=id_width)
    table.add_column("status", no_wrap=True)
    for col in ("dataset", "flash", "RAM", "trials", "best acc", "HV", "created"):
        table.add_column(col, overflow="fold")
    for j in jobs:
        lim, bud = j.get("limits") or {}, j.get("budget") or {}
        hv = j.get("hypervolume")
        table.add_row(
            j["id"],
            j["status"],
            j.get("dataset", ""),
            format_size(lim.get("flash_bytes")),
            format_size(lim.get("ram_bytes")),
            str(bud.get("trials", "")),
            _pct(j.get("best_accuracy")),
            "-" if hv is None else f"{hv:.3f}",
            str(j.get("created_at") or "")[:16].replace("T", " "),
        )
    return table
