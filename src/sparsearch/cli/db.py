"""``sparsearch db``: database maintenance."""

from __future__ import annotations

import typer

from sparsearch.cli._help import Command, Group
from sparsearch.cli.common import DbOption, fail, masked, say, settings_from
from sparsearch.errors import SparsearchError

db_app = typer.Typer(help="Database maintenance.", cls=Group, no_args_is_help=True)


@db_app.command("upgrade", cls=Command)
def db_upgrade(db: str | None = DbOption) -> None:
    """Apply database migrations (also done on first use)."""
    from sparsearch.storage import upgrade

    try:
        settings = settings_from(db)
        upgrade(settings.database_url)
    except SparsearchError as e:
        fail(e)
    say(f"database {masked(settings.database_url)} is up to date")
