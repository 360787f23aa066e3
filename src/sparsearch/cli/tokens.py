"""``sparsearch token``: API tokens (bearer tokens for the HTTP API)."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from sparsearch.cli._help import Command, Group
from sparsearch.cli.common import (
    DbOption,
    check_int,
    fail,
    open_from,
    out,
    say,
    settings_from,
)
from sparsearch.errors import ConfigError, SparsearchError

token_app = typer.Typer(
    help="API tokens (bearer tokens for the HTTP API).", cls=Group, no_args_is_help=True
)


@token_app.command("create", cls=Command)
def token_create(
    owner: str = typer.Option(
        ..., metavar="NAME", help="Who the token belongs to (jobs are owned by this name)"
    ),
    name: str = typer.Option(
        "default", metavar="NAME", help="A label for the token, e.g. the machine"
    ),
    db: str | None = DbOption,
) -> None:
    """Create an API token; printed once, on the last line of stdout."""
    try:
        storage = open_from(settings_from(db))
        try:
            info, plaintext = storage.create_token(owner, name)
        except ValueError as e:  # the owner or name is not acceptable
            raise ConfigError(str(e), "pass a different --owner or --name") from e
    except SparsearchError as e:
        fail(e)
    say(
        f"token {info.id} ({info.name}) for {info.owner}: shown only now, the database keeps "
        "just its hash. Send it as `Authorization: Bearer <token>`; revoke it with "
        f"`sparsearch token revoke {info.id}`."
    )
    sys.stdout.write(plaintext + "\n")


@token_app.command("list", cls=Command)
def token_list(
    owner: str | None = typer.Option(None, metavar="NAME", help="Only this owner's tokens"),
    as_json: bool = typer.Option(False, "--json"),
    db: str | None = DbOption,
) -> None:
    """List API tokens: ids, owners and prefixes, never the tokens."""
    try:
        rows = [t.to_json() for t in open_from(settings_from(db)).list_tokens(owner)]
    except SparsearchError as e:
        fail(e)
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        out.print(_tokens_table(rows))


@token_app.command("revoke", cls=Command)
def token_revoke(
    token_id: int = typer.Argument(..., metavar="ID", help="Id from `sparsearch token list`"),
    db: str | None = DbOption,
) -> None:
    """Revoke an API token: requests with it are refused from now on."""
    try:
        check_int(token_id, "ID", low=1, hint="token ids are in `sparsearch token list`")
        info = open_from(settings_from(db)).revoke_token(token_id)
    except SparsearchError as e:
        fail(e)
    say(f"revoked token {info.id} ({info.name}) of {info.owner}")


def _tokens_table(rows: list[dict[str, Any]]) -> Any:
    """Tokens: id and prefix whole (what `revoke` takes, what a token starts with), owner,
    whether revoked; then the name and the times as the terminal's width allows."""
    from sparsearch.cli.render import Col, FitTable, short_time

    columns = [
        Col("id", 0, right=True, ident=True),
        Col("owner", 0, max_width=20),
        Col("prefix", 0, ident=True),
        Col("revoked", 0),
        Col("name", 1, max_width=20),
        Col("last used", 2),
        Col("created", 3),
    ]
    cells = [
        {
            "id": str(r.get("id")),
            "owner": str(r.get("owner")),
            "prefix": str(r.get("prefix")),
            "revoked": short_time(r.get("revoked_at")),
            "name": str(r.get("name")),
            "last used": short_time(r.get("last_used_at")),
            "created": short_time(r.get("created_at")),
        }
        for r in rows
    ]
    return FitTable("API tokens", columns, cells)
