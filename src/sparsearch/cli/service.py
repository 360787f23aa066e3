"""Service commands: ``serve`` (the API plus a supervised scheduler) and ``scheduler``.

Like the rest of the CLI, nothing heavy (torch, Ray, BoTorch, FastAPI, uvicorn) is imported until a
command runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from sparsearch.cli.common import (
    ArtifactsOption,
    DbOption,
    check_int,
    err,
    fail,
    masked,
    open_from,
    say,
    settings_from,
)
from sparsearch.errors import ConfigError, SparsearchError

LogLevelOption = typer.Option(
    None,
    metavar="LEVEL",
    help="debug | info | warning | error (default: SPARSEARCH_LOG_LEVEL, else info)",
)


def _setup_logging(settings: Any, level: str | None) -> Any:
    """Configure logging from the settings (``SPARSEARCH_LOG_LEVEL``/``_FORMAT``); ``--log-level``
    overrides the level. Returns the settings with the level used, so the scheduler child that
    ``serve`` starts (it inherits the settings as ``SPARSEARCH_*``) logs alike."""
    from sparsearch.logs import LOG_LEVELS, configure_logging

    if level is not None:
        if level.upper() not in LOG_LEVELS:
            raise ConfigError(
                f"unknown log level {level!r}", "choose debug, info, warning or error"
            )
        settings = settings.model_copy(update={"log_level": level.upper()})
    configure_logging(settings.log_level, json=settings.log_format == "json")
    return settings


def serve(
    host: str = typer.Option("127.0.0.1", metavar="HOST", help="Address to listen on"),
    port: int = typer.Option(8000, metavar="PORT", help="Port to listen on (0 picks a free one)"),
    scheduler: bool = typer.Option(
        True, "--scheduler/--no-scheduler", help="Also run a supervised scheduler process"
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        metavar="N",
        help="API worker processes (default SPARSEARCH_API_WORKERS, 1); one per core for load",
    ),
    log_level: str | None = LogLevelOption,
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Serve the HTTP API and the dashboard, with a scheduler.

    The scheduler (a supervised child process, unless --no-scheduler) runs the submitted
    jobs."""
    from sparsearch.service.supervisor import bind, is_loopback, run_server

    try:
        settings = _setup_logging(settings_from(db, artifacts), log_level)
        if not 0 <= port <= 65535:
            raise ConfigError(f"--port must be in 0..65535, got {port}")
        if workers is not None:
            if not 1 <= workers <= 64:
                raise ConfigError(f"--workers must be in 1..64, got {workers}")
            settings = settings.model_copy(update={"api_workers": workers})
        if settings.auth == "off" and not is_loopback(host):
            raise ConfigError(
                f"SPARSEARCH_AUTH=off is only allowed on a loopback host, not {host!r}: "
                "anyone who can reach the server could submit and delete jobs",
                "serve on --host 127.0.0.1, or turn auth on and create tokens with "
                "`sparsearch token create --owner NAME`",
            )
        # a clear error (and migrations) before anything starts
        with open_from(settings) as storage:
            no_tokens = settings.auth == "on" and not any(
                t.revoked_at is None for t in storage.list_tokens()
            )
        try:
            sock = bind(host, port)
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {e.strerror or e}",
                "choose another --port (or stop what is using it)",
            ) from e
    except SparsearchError as e:
        fail(e)
    if no_tokens:
        err.print(
            "no API token yet: create one with `sparsearch token create --owner NAME`",
            highlight=False,
        )
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    auth = "auth on" if settings.auth == "on" else "auth OFF (local only)"

    def started(pid: int | None) -> None:
        what = f"scheduler pid {pid}" if pid is not None else "no scheduler"
        n = settings.api_workers
        served = f"{n} API workers, " if n > 1 else ""
        say(
            f"serving http://{shown}:{bound} ({auth}, {served}{what}, "
            f"database {masked(settings.database_url)}); Ctrl-C stops"
        )

    try:
        run_server(settings, sock, scheduler=scheduler, on_started=started)
    except SparsearchError as e:
        fail(e)
    finally:
        sock.close()


def scheduler_command(
    log_level: str | None = LogLevelOption,
    parent_pid: int | None = typer.Option(
        None, hidden=True, help="Exit when this process is no longer the parent (serve's child)"
    ),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Run queued and interrupted jobs from the database.

    One job at a time, until stopped (Ctrl-C or SIGTERM leave the running job interrupted, for
    the next scheduler to resume)."""
    from sparsearch.service.process import watch_parent
    from sparsearch.service.scheduler import Scheduler

    try:
        check_int(parent_pid, "--parent-pid", low=1)
        settings = _setup_logging(settings_from(db, artifacts), log_level)
        sched = Scheduler(settings)
    except SparsearchError as e:
        fail(e)
    if parent_pid is not None:
        watch_parent(parent_pid)  # serve's child: serve already said where it runs
    else:
        say(f"scheduler on database {masked(settings.database_url)}; Ctrl-C stops")
    try:
        sched.run_forever()
    except KeyboardInterrupt:
        pass  # the running job was left `interrupted`; the next scheduler resumes it
    except SparsearchError as e:
        fail(e)
