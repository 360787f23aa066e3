"""Rich rendering for the CLI: the live search progress and the tables (front, jobs), which
fit the terminal's width (a pipe counts as 80 columns).

Progress always goes to stderr so that stdout can carry exactly one JSON document.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsearch.units import format_size
from sparsearch.vocabulary import accounted_flash_field


class SearchProgress:
    """Progress over trained trials with the counters of DESIGN.md's contract.

    On a terminal, a Rich progress bar. Elsewhere (stderr redirected to a log file) plain whole
    lines: one when the search starts and one as each trial ends, and the last state at the end,
    never cut at the console's width (a bar there would be drawn once, cut at 80 columns)."""

    def __init__(self, console: Console, budget: int) -> None:
        self._console, self._budget = console, budget
        self._live = console.is_terminal
        self._start = time.monotonic()
        self._line = self._stats = ""  # the last state, as a log line and its counters
        self._printed = ""  # the counters of the last line printed
        self._counts: tuple[int, ...] | None = None  # the counts that line showed
        self._bar = Progress(
            TextColumn("[bold]search"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self._bar.add_task("search", total=budget, stats="starting Ray ...")

    def __enter__(self) -> SearchProgress:
        if self._live:
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live:
            self._bar.__exit__(*exc)
        elif self._stats != self._printed:  # e.g. screened moved since
            self._print()

    def update(self, p: Any) -> None:
        best = f"{p.best_accuracy:.3f}" if p.best_accuracy is not None else "-"
        stopped = getattr(p, "stopped", 0)
        stats = (
            f"trained {p.trained} · running {p.running} · failed {p.failed} · "
            + (f"stopped {stopped} ({p.stopped_epochs:g} epochs) · " if stopped else "")
            + f"infeasible {p.infeasible} · screened {getattr(p, 'screened', 0)} · best {best} · "
            f"HV {p.hypervolume:.3f}"
        )
        if self._live:
            self._bar.update(self._task, completed=p.trained, stats=stats)
            return
        elapsed = timedelta(seconds=int(time.monotonic() - self._start))
        self._stats, self._line = stats, f"search {p.trained}/{self._budget} · {stats} · {elapsed}"
        counts = (p.trained, p.failed, p.infeasible, stopped)
        if counts != self._counts:  # per trial ended: not per poll, nor per trial started
            self._counts = counts
            self._print()

    def _print(self) -> None:
        self._printed = self._stats
        self._console.print(escape(self._line), highlight=False, soft_wrap=True)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _pruning(p: dict[str, Any] | None) -> str:
    if not p or p.get("method", "none") == "none" or not p.get("level"):
        return "none"
    knobs = " ".join(f"{k}={v}" for k, v in (p.get("options") or {}).items())
    return f"{p['method']} {p['level'] * 100:.3g}%" + (f" ({knobs})" if knobs else "")


def _count(n: int | None) -> str:
    """A count in about 5 characters: 950, 12.3k, 4.56M, 120M."""
    if n is None:
        return "-"
    for scale, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= scale:
            v = n / scale
            digits = 2 if v < 10 else 1 if v < 100 else 0
            return f"{v:.{digits}f}{suffix}"
    return str(n)


def short_time(value: Any, *, now: datetime | None = None) -> str:
    """An ISO timestamp as ``MM-DD HH:MM`` this year, ``YYYY-MM-DD`` before ('-' if none)."""
    if not value:
        return "-"
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)[:16].replace("T", " ")
    now = now or datetime.now(t.tzinfo or UTC)
    return t.strftime("%m-%d %H:%M") if t.year == now.year else t.strftime("%Y-%m-%d")


@dataclass(frozen=True)
class Col:
    """A column of a :class:`FitTable`. ``keep`` orders what goes first when the terminal is
    narrow (lower stays longer). An ``ident`` column (ids users copy) always stays and is never
    wrapped, folded or cut; the others stay on one line, cut with an ellipsis beyond
    ``max_width``."""

    header: str
    keep: int
    right: bool = False
    ident: bool = False
    #: Longer values are cut with an ellipsis (free text such as a dataset path).
    max_width: int | None = None


class FitTable:
    """A Rich table that fits the width it is rendered at: every row on one line, ids whole.

    The table is built when rendered, with the columns that fit (the most important first; free
    text counted up to its ``max_width``), so ``Console.print`` on any terminal, or a pipe
    (80 columns), gets its own fit. Free text is cut only when it does not fit."""

    def __init__(self, title: str, columns: list[Col], rows: list[dict[str, str]]) -> None:
        """``rows`` map each column's header to its cell."""
        self.title, self.columns = title, columns
        self.rows = [[r[c.header] for c in columns] for r in rows]

    def table(self, cols: list[int], *, capped: bool = True) -> Table:
        table = Table(title=self.title)
        for i in cols:
            c = self.columns[i]
            width = max([cell_len(c.header), *(cell_len(r[i]) for r in self.rows)])
            table.add_column(
                c.header,
                justify="right" if c.right else "left",
                no_wrap=True,
                overflow="ellipsis",
                min_width=width if c.ident else None,
                max_width=c.max_width if capped and not c.ident else None,
            )
        for r in self.rows:
            table.add_row(*(escape(r[i]) for i in cols))
        return table

    def _keep(self, i: int) -> tuple[int, int]:
        return (self.columns[i].keep, i)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(1 << 20)  # Measurement.get clamps to max_width

        def fits(table: Table) -> bool:
            return Measurement.get(console, unbounded, table).maximum <= options.max_width

        # The ids always stay, then each other column that fits, the most important first.
        cols = [i for i, c in enumerate(self.columns) if c.ident]
        for i in sorted(set(range(len(self.columns))) - set(cols), key=self._keep):
            if fits(self.table(sorted([*cols, i]))):
                cols = sorted([*cols, i])
        whole = self.table(cols, capped=False)
        yield whole if fits(whole) else self.table(cols)


def accounted_flash(trial: dict[str, Any], flash_accounting: str) -> int | None:
    """The flash a trial's limit counts: ``nnz_flash_bytes`` under sparse accounting."""
    if "accounted_flash_bytes" in trial:  # the server says
        return trial["accounted_flash_bytes"]
    key = accounted_flash_field(flash_accounting)
    return trial.get(key)


def front_table(
    trials: Iterable[dict[str, Any]], *, title: str, flash_accounting: str = "dense"
) -> FitTable:
    """The front: int8 accuracy on TFLM (float where not measured), the accounted flash
    ("flash (nnz)" under sparse accounting), RAM, each marked ``~`` when estimated rather than
    measured; then float accuracy, MACs, pruning, int8 test accuracy and (sparse) the dense
    flash as width allows."""
    sparse = flash_accounting == "sparse"
    columns = [
        Col("trial", 0, right=True, ident=True),
        Col("accuracy", 0, right=True),
        Col("flash (nnz)" if sparse else "flash", 0, right=True),
        Col("RAM", 0, right=True),
        Col("float acc", 1, right=True),
        Col("MACs", 2, right=True),
        Col("pruning", 2),
        Col("test acc", 3, right=True),
    ]
    if sparse:
        columns.append(Col("dense flash", 4, right=True))
    rows = []
    for t in trials:
        mark = "~" if t.get("measured") is False else ""
        int8 = t.get("int8_accuracy")
        test = t.get("int8_test_accuracy")
        rows.append(
            {
                "trial": str(t["index"]),
                "accuracy": _pct(t.get("accuracy") if int8 is None else int8),
                columns[2].header: mark + format_size(accounted_flash(t, flash_accounting)),
                "RAM": mark + format_size(t.get("ram_bytes")),
                "float acc": _pct(t.get("accuracy")),
                "MACs": _count(t.get("macs")),
                "pruning": _pruning(t.get("pruning")),
                "test acc": _pct(t.get("test_accuracy") if test is None else test),
                "dense flash": format_size(t.get("flash_bytes")),  # shown under sparse only
            }
        )
    return FitTable(title, columns, rows)


def final_table(finals: Iterable[dict[str, Any]], *, title: str) -> FitTable:
    """Final trainings: trial, status, int8 test accuracy (whole test split, TFLM), flash,
    RAM, then the float test accuracy, epochs and whether it is within the limits."""
    columns = [
        Col("trial", 0, right=True, ident=True),
        Col("status", 0),
        Col("int8 test", 0, right=True),
        Col("flash", 0, right=True),
        Col("RAM", 0, right=True),
        Col("float test", 1, right=True),
        Col("epochs", 2, right=True),
        Col("fits", 2),
    ]
    rows = []
    for item in finals:
        f = item.get("final") or {}
        fits = f.get("feasible")
        rows.append(
            {
                "trial": str(item["index"]),
                "status": str(f.get("status", "-")),
                "int8 test": _pct(f.get("int8_test_accuracy")),
                "flash": format_size(f.get("flash_bytes")),
                "RAM": format_size(f.get("ram_bytes")),
                "float test": _pct(f.get("test_accuracy")),
                "epochs": str(f.get("epochs", "")),
                "fits": "" if fits is None else ("yes" if fits else "OVER A LIMIT"),
            }
        )
    return FitTable(title, columns, rows)


def _trials(j: dict[str, Any]) -> str:
    """Trained/budget ("3/5"), or the budget alone when there is no progress."""
    budget = (j.get("budget") or {}).get("trials", "")
    p = j.get("progress") or {}
    return f"{p['trained']}/{p.get('budget', budget)}" if "trained" in p else str(budget)


def jobs_table(jobs: Iterable[dict[str, Any]]) -> FitTable:
    """Jobs: id (what `pareto`/`pull` take, always whole), status, trials (trained/budget),
    best accuracy; then the limits, strategy, target, dataset, hypervolume, screened candidates and
    creation time as width allows."""
    columns = [
        Col("id", 0, ident=True),
        Col("status", 0),
        Col("trials", 0, right=True),
        Col("best", 0, right=True),
        Col("flash", 1, right=True),
        Col("RAM", 1, right=True),
        Col("strategy", 2),
        Col("target", 2),
        Col("dataset", 2, max_width=20),
        Col("HV", 3, right=True),
        Col("screened", 3, right=True),
        Col("created", 4),
    ]
    rows = []
    for j in jobs:
        lim = j.get("limits") or {}
        hv = j.get("hypervolume")
        screened = (j.get("progress") or {}).get("screened")
        rows.append(
            {
                "id": str(j["id"]),
                "status": str(j["status"]),
                "trials": _trials(j),
                "best": _pct(j.get("best_accuracy")),
                "flash": format_size(lim.get("flash_bytes")),
                "RAM": format_size(lim.get("ram_bytes")),
                "strategy": str(j.get("strategy") or "-"),
                "target": str(j.get("target") or "-"),
                "dataset": str(j.get("dataset", "")),
                "HV": "-" if hv is None else f"{hv:.3f}",
                "screened": _count(screened),
                "created": short_time(j.get("created_at")),
            }
        )
    return FitTable("jobs", columns, rows)
