"""The search progress written to a log file (stderr not a terminal): whole lines, never cut
at the console's 80 columns, with the label, the best accuracy and the hypervolume."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from sparsearch.cli.render import SearchProgress


def _progress(trained: int, **extra: object) -> SimpleNamespace:
    counters = dict(
        trained=trained,
        running=0,
        failed=0,
        infeasible=0,
        screened=11,
        best_accuracy=0.849,
        hypervolume=0.4321,
    )
    counters.update(extra)
    return SimpleNamespace(**counters)


def _log_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()  # a file: not a terminal, 80 columns as Rich assumes for files
    return Console(file=buf, width=80, force_terminal=False, soft_wrap=True), buf


def test_a_log_file_gets_the_whole_last_line() -> None:
    console, buf = _log_console()
    with SearchProgress(console, 30) as bar:
        bar.update(_progress(29, running=1))
        bar.update(_progress(30))
    lines = buf.getvalue().splitlines()
    last = lines[-1]
    assert last.startswith("search 30/30 · trained 30 · running 0 · failed 0 · infeasible 0")
    assert "screened 11 · best 0.849 · HV 0.432" in last
    assert "…" not in buf.getvalue()
    assert len(last) > 80  # not cut to the console's width


def test_a_log_file_gets_one_line_per_change_not_per_poll() -> None:
    console, buf = _log_console()
    with SearchProgress(console, 4) as bar:
        for _ in range(5):  # the driver polls about every second: the same counts again
            bar.update(_progress(1, running=2))
        bar.update(_progress(1, running=2, screened=40))  # screened alone moves
        bar.update(_progress(2, running=1))
    lines = [ln for ln in buf.getvalue().splitlines() if ln.startswith("search")]
    assert [ln.split(" · ")[0] for ln in lines] == ["search 1/4", "search 2/4"]
    assert "best 0.849" in lines[-1]


def test_no_best_yet_reads_as_a_dash() -> None:
    console, buf = _log_console()
    with SearchProgress(console, 4) as bar:
        bar.update(_progress(0, best_accuracy=None, hypervolume=0.0, running=2))
    assert "best - · HV 0.000" in buf.getvalue()
