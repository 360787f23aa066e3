"""How the pages write numbers: sizes, percentages, counts, durations and times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sparsearch.units import format_size
from sparsearch.vocabulary import JOB_STATUSES


def size(n: int | None) -> str:
    """Bytes as the CLI writes them (1024-based): ``23.4 KiB``; ``–`` for none."""
    return "–" if n is None else format_size(int(n))


def pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f} %"


def count(n: int | None) -> str:
    return "–" if n is None else f"{int(n):,}"


def seconds(v: float | None) -> str:
    if v is None:
        return "–"
    if v < 60:
        return f"{v:.1f} s"
    return f"{int(v // 60)} min {int(v % 60)} s"


def when(value: datetime | str | None) -> str:
    """A UTC time as ``2026-12-01 19:04 UTC``."""
    if value is None:
        return "–"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def hv(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


FILTERS: dict[str, Any] = {
    "size": size,
    "pct": pct,
    "count": count,
    "seconds": seconds,
    "when": when,
    "iso": iso,
    "hv": hv,
}
GLOBALS: dict[str, Any] = {"JOB_STATUSES": JOB_STATUSES}
