"""Structured logs: the JSON formatter, configure_logging, the settings and CLI that drive it, and
the scheduler's progress lines carrying the job id and trial index as fields."""

from __future__ import annotations

import io
import json
import logging
import sys
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sparsearch.config import Settings
from sparsearch.errors import ConfigError
from sparsearch.logs import JsonFormatter, configure_logging
from sparsearch.search.driver import Progress


@pytest.fixture
def restore_logging():
    """configure_logging changes process-wide state: put it back after the test."""
    root, ours = logging.getLogger(), logging.getLogger("sparsearch")
    handlers, root_level, our_level = list(root.handlers), root.level, ours.level
    yield
    for h in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(h)
    root.setLevel(root_level)
    ours.setLevel(our_level)


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def _record(msg: str, *args, **extra) -> logging.LogRecord:
    record = logging.LogRecord("sparsearch.x", logging.WARNING, __file__, 1, msg, args, None)
    record.__dict__.update(extra)
    return record


def test_json_formatter_fields_and_extras():
    record = _record("job %s: %s", "j1", "done", job_id="j1", trial_index=0)
    line = json.loads(JsonFormatter().format(record))
    assert set(line) == {"ts", "level", "logger", "msg", "job_id", "trial_index"}
    assert line["level"] == "WARNING" and line["logger"] == "sparsearch.x"
    assert line["msg"] == "job j1: done"
    assert line["job_id"] == "j1" and line["trial_index"] == 0  # 0 is present, not dropped
    ts = datetime.fromisoformat(line["ts"])
    assert ts.tzinfo is not None and ts.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - ts).total_seconds()) < 60


def test_json_formatter_leaves_out_missing_context_and_keeps_tracebacks():
    plain = json.loads(JsonFormatter().format(_record("hello", job_id="j", trial_index=None)))
    assert plain["job_id"] == "j" and "trial_index" not in plain
    assert "job_id" not in json.loads(JsonFormatter().format(_record("no context")))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in line["exc"] and "Traceback" in line["exc"]


def test_configure_logging_json_levels_and_reconfigure(restore_logging):
    buf = io.StringIO()
    configure_logging("info", json=True, stream=buf)
    log = logging.getLogger("sparsearch.service.scheduler")
    log.debug("not shown")
    log.info("job %s claimed", "abc", extra={"job_id": "abc"})
    logging.getLogger("otherlib.module").info("other libraries: warnings only")
    logging.getLogger("otherlib.module").warning("shown")
    lines = _lines(buf)
    assert [(x["logger"], x["msg"]) for x in lines] == [
        ("sparsearch.service.scheduler", "job abc claimed"),
        ("otherlib.module", "shown"),
    ]
    assert lines[0]["job_id"] == "abc"

    text = io.StringIO()
    configure_logging("DEBUG", json=False, stream=text)  # replaces the JSON handler
    log.debug("now shown")
    assert buf.getvalue().count("\n") == 2
    assert text.getvalue().rstrip().endswith("DEBUG sparsearch.service.scheduler: now shown")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud")


def test_log_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPARSEARCH_LOG_FORMAT", "JSON")
    monkeypatch.setenv("SPARSEARCH_LOG_LEVEL", "debug")
    settings = Settings()
    assert (settings.log_format, settings.log_level) == ("json", "DEBUG")
    monkeypatch.delenv("SPARSEARCH_LOG_FORMAT")
    monkeypatch.delenv("SPARSEARCH_LOG_LEVEL")
    assert (Settings().log_format, Settings().log_level) == ("text", "INFO")
    monkeypatch.setenv("SPARSEARCH_LOG_FORMAT", "xml")
    with pytest.raises(ValidationError):
        Settings()


def test_log_level_option_overrides_the_setting_and_reaches_serves_child(restore_logging):
    from sparsearch.cli.service import _setup_logging
    from sparsearch.service.supervisor import settings_env

    settings = Settings(log_level="WARNING", log_format="json")
    assert _setup_logging(settings, None).log_level == "WARNING"
    chosen = _setup_logging(settings, "debug")
    assert chosen.log_level == "DEBUG" and chosen.log_format == "json"
    assert logging.getLogger("sparsearch").level == logging.DEBUG
    env = settings_env(chosen, base={})
    assert (env["SPARSEARCH_LOG_LEVEL"], env["SPARSEARCH_LOG_FORMAT"]) == ("DEBUG", "json")
    with pytest.raises(ConfigError, match="unknown log level"):
        _setup_logging(settings, "chatty")


def test_scheduler_progress_lines_carry_job_and_trial(caplog):
    from sparsearch.service.scheduler import _log_progress

    caplog.set_level(logging.INFO, logger="sparsearch")
    _log_progress(Progress("job1", 4, trial_index=2, last_event="trial 2 started (Sobol)"))
    _log_progress(Progress("job1", 4, last_event="job-level event"))
    first, second = caplog.records
    assert (first.job_id, first.trial_index) == ("job1", 2)
    assert first.getMessage() == "job job1: trial 2 started (Sobol)"
    line = json.loads(JsonFormatter().format(second))
    assert line["job_id"] == "job1" and "trial_index" not in line
