"""Service commands of the ``sparsearch`` CLI: ``serve``, ``scheduler`` and ``token``.

Registered onto :data:`sparsearch.cli.app` when ``sparsearch.cli`` is imported. Like the rest of
the CLI, nothing heavy (torch, Ray, Ax, FastAPI, uvicorn) is imported until a command runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from sparsearch.cli import (
    ArtifactsOption,
    DbOption,
    _fail,
    _masked,
    _open,
    _settings,
    app,
    err,
    out,
)
from sparsearch.errors import ConfigError, SparsearchError

token_app = typer.Typer(help="API tokens (bearer tokens for the HTTP API).", no_args_is_help=True)
app.add_typer(token_app, name="token")


LogLevelOption = typer.Option(
    None, help="debug | info | warning | error [env SPARSEARCH_LOG_LEVEL, default info]"
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


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on"),
    port: int = typer.Option(8000, help="Port to listen on (0 picks a free one)"),
    scheduler: bool = typer.Option(
        True, "--scheduler/--no-scheduler", help="Also run a supervised scheduler process"
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="API worker processes (default SPARSEARCH_API_WORKERS, 1); one per core for load",
    ),
    log_level: str | None = LogLevelOption,
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Serve the HTTP API (and, by default, a scheduler that runs the submitted jobs)."""
    from sparsearch.service.supervisor import bind, is_loopback, run_server

    try:
        settings = _setup_logging(_settings(db, artifacts), log_level)
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
        with _open(settings) as storage:  # a clear error (and migrations) before anything starts
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
        _fail(e)
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
        err.print(
            escape(
                f"serving http://{shown}:{bound} ({auth}, {served}{what}, "
                f"database {_masked(settings.database_url)}); Ctrl-C stops"
            ),
            highlight=False,
        )

    try:
        run_server(settings, sock, scheduler=scheduler, on_started=started)
    except SparsearchError as e:
        _fail(e)
    finally:
        sock.close()


@app.command("scheduler")
def scheduler_command(
    log_level: str | None = LogLevelOption,
    parent_pid: int | None = typer.Option(
        None, hidden=True, help="Exit when this process is no longer the parent (serve's child)"
    ),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
) -> None:
    """Run queued (and interrupted) jobs from the database, one at a time, until stopped."""
    from sparsearch.service.scheduler import Scheduler
    from sparsearch.service.supervisor import watch_parent

    try:
        settings = _setup_logging(_settings(db, artifacts), log_level)
        sched = Scheduler(settings)
    except SparsearchError as e:
        _fail(e)
    if parent_pid is not None:
        watch_parent(parent_pid)  # serve's child: serve already said where it runs
    else:
        err.print(
            escape(f"scheduler on database {_masked(settings.database_url)}; Ctrl-C stops"),
            highlight=False,
        )
    try:
        sched.run_forever()
    except KeyboardInterrupt:
        pass  # the running job was left `interrupted`; the next scheduler resumes it
    except SparsearchError as e:
        _fail(e)


@token_app.command("create")
def token_create(
    owner: str = typer.Option(..., help="Who the token belongs to (jobs are owned by this name)"),
    name: str = typer.Option("default", help="A label for the token, e.g. the machine"),
    db: str | None = DbOption,
) -> None:
    """Create an API token; it is printed once, alone on the last line of stdout."""
    try:
        storage = _open(_settings(db))
        try:
            info, plaintext = storage.create_token(owner, name)
        except ValueError as e:  # the owner or name is not acceptable
            raise ConfigError(str(e), "pass a different --owner or --name") from e
    except SparsearchError as e:
        _fail(e)
    err.print(
        escape(
            f"token {info.id} ({info.name}) for {info.owner}: shown only now, the database keeps "
            "just its hash. Send it as `Authorization: Bearer <token>`; revoke it with "
            f"`sparsearch token revoke {info.id}`."
        ),
        highlight=False,
    )
    sys.stdout.write(plaintext + "\n")


@token_app.command("list")
def token_list(
    owner: str | None = typer.Option(None, help="Only this owner's tokens"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """List API tokens (never the tokens themselves: their ids, owners and prefixes)."""
    try:
        rows = [t.to_json() for t in _open(_settings(db)).list_tokens(owner)]
    except SparsearchError as e:
        _fail(e)
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        out.print(_tokens_table(rows))


@token_app.command("revoke")
def token_revoke(
    token_id: int = typer.Argument(..., help="Id from `sparsearch token list`"),
    db: str | None = DbOption,
) -> None:
    """Revoke an API token: requests that send it are refused from now on."""
    try:
        info = _open(_settings(db)).revoke_token(token_id)
    except SparsearchError as e:
        _fail(e)
    err.print(escape(f"revoked token {info.id} ({info.name}) of {info.owner}"), highlight=False)


def _tokens_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="API tokens")
    for col in ("id", "owner", "name", "prefix", "created", "last used", "revoked"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for r in rows:
        table.add_row(
            str(r.get("id")),
            escape(str(r.get("owner"))),
            escape(str(r.get("name"))),
            escape(str(r.get("prefix"))),
            _when(r.get("created_at")),
            _when(r.get("last_used_at")),
            _when(r.get("revoked_at")),
        )
    return table


def _when(value: Any) -> str:
    """An ISO timestamp shortened to the minute ('-' when missing)."""
    if not value:
        return "-"
    return str(value).replace("T", " ")[:16]
