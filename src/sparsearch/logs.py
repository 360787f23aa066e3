"""Logging set-up: human text or JSON lines on stderr for the service commands, and the quiet
set-up of the interactive CLI (sparsearch's own warnings only, everything under ``--debug``).

Log calls that concern a job or a trial pass ``extra={"job_id": ..., "trial_index": ...}``;
the JSON format turns those into fields, so a log pipeline can filter one job's lines without
parsing messages.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

#: Levels the settings and ``--log-level`` accept.
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Record attributes copied into a JSON line when a log call passed them in ``extra``.
CONTEXT_FIELDS: tuple[str, ...] = ("job_id", "trial_index")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``,
    ``job_id``/``trial_index`` when the call passed them (and not None), ``exc`` with a
    traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return jsonlib.dumps(line, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at each record, not the one at set-up: a caller
    that swaps stderr (a test runner, a daemon) never leaves it writing to a closed file."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(
    level: str = "INFO", json: bool = False, stream: TextIO | None = None
) -> None:
    """Send log records to ``stream`` (stderr) as text or JSON lines.

    sparsearch's loggers log at ``level``; other libraries (Alembic, Ax, Ray, uvicorn) only
    say warnings. Calling it again replaces the handler it installed (never anyone else's).
    ValueError for an unknown level.
    """
    name = level.upper()
    if name not in LOG_LEVELS:
        raise ValueError(f"unknown log level {level!r}; choose one of {', '.join(LOG_LEVELS)}")
    handler = logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    handler._sparsearch = True  # type: ignore[attr-defined]  # ours, to replace on reconfigure
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_sparsearch", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("sparsearch").setLevel(getattr(logging, name))


class _OwnRecords(logging.Filter):
    """Passes sparsearch's own records; libraries' only under ``--debug``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.name == "sparsearch" or record.name.startswith("sparsearch.")


def configure_cli_logging(debug: bool = False) -> None:
    """The CLI's stderr belongs to its progress bar and messages: only sparsearch's own
    warnings get through (libraries' lines are dropped). ``debug`` shows every logger at DEBUG,
    libraries included."""
    configure_logging("DEBUG" if debug else "WARNING")
    root = logging.getLogger()
    handler = next(h for h in root.handlers if getattr(h, "_sparsearch", False))
    if debug:
        root.setLevel(logging.DEBUG)
    else:
        handler.addFilter(_OwnRecords())


def debug_enabled() -> bool:
    """Whether sparsearch logs at DEBUG (``--debug``, ``SPARSEARCH_LOG_LEVEL=DEBUG``): libraries
    that are quietened otherwise then keep their chatter."""
    return logging.getLogger("sparsearch").isEnabledFor(logging.DEBUG)
