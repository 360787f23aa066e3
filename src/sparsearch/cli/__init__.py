"""The ``sparsearch`` command line (Typer + Rich), assembled from one module per command group.

``common`` holds what the groups share; the groups never import this module, so there is no
cycle. Heavy libraries (torch, Ray, BoTorch) are imported inside commands, so ``sparsearch --help``
starts fast. Every SparsearchError becomes a two-line message (what, then what to do) and exit
code 2; any other exception becomes ``error:`` / ``hint:`` too (exit 1), with the traceback
only under ``--debug`` or ``SPARSEARCH_LOG_LEVEL=DEBUG``.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import typer

from sparsearch.cli import compile as compile_cli
from sparsearch.cli import db, finalize, jobs, prune, search, service, tokens
from sparsearch.cli._help import Command, Group
from sparsearch.cli.common import print_error

log = logging.getLogger(__name__)


class _App(typer.Typer):
    """A Typer app whose unexpected exceptions are one ``error:`` / ``hint:`` pair."""

    debug = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as e:  # SystemExit and KeyboardInterrupt are not Exceptions
            if self.debug or _debug_from_env():
                raise
            log.debug("unexpected error", exc_info=True)
            print_error(
                f"unexpected {type(e).__name__}: {e}",
                "this is a bug or an unusual environment; rerun with `sparsearch --debug ...` "
                "for the traceback and report it",
            )
            sys.exit(1)


def _debug_from_env() -> bool:
    return os.environ.get("SPARSEARCH_LOG_LEVEL", "").strip().upper() == "DEBUG"


app = _App(
    help="Find neural networks that fit a microcontroller.",
    cls=Group,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _main(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show library log lines and full tracebacks (also: SPARSEARCH_LOG_LEVEL=DEBUG)",
    ),
) -> None:
    from sparsearch.logs import configure_cli_logging

    _App.debug = debug or _debug_from_env()
    configure_cli_logging(debug=_App.debug)


app.command(cls=Command)(search.search)
for command in (jobs.jobs, jobs.status, jobs.pareto, jobs.pull, jobs.submit, jobs.cancel):
    app.command(cls=Command)(command)
app.command(cls=Command)(finalize.finalize)
app.command(cls=Command)(finalize.export)
app.command(cls=Command)(prune.prune)
app.command("compile", cls=Command)(compile_cli.compile_model)
app.command(cls=Command)(service.serve)
app.command("scheduler", cls=Command)(service.scheduler_command)
app.add_typer(tokens.token_app, name="token")
app.add_typer(db.db_app, name="db")


def main() -> None:  # pragma: no cover - console entry
    app(prog_name="sparsearch")


__all__ = ["app", "main"]
