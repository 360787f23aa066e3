"""Help screens that read cleanly at 80 columns: the Typer command and group classes every
command of the app uses.

Typer writes a type in angle brackets beside every parameter (``<str>``, ``<int>``, ``<bool>``,
the built-in ``--help`` included). Here a flag shows none (it takes no value), an option
without its own ``metavar`` shows the classic name (TEXT, INTEGER, FLOAT, PATH), and an
argument whose metavar names it (JOB, MODEL, ID) shows no second label. Docstrings are
reflowed: in Rich mode Typer keeps their source line breaks, so a paragraph wrapped at 96
columns in the source would break mid-sentence at 80.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

#: Typer's bracketed type labels and the plain metavars shown instead.
_CLASSIC = {"<str>": "TEXT", "<int>": "INTEGER", "<float>": "FLOAT", "<path>": "PATH"}


class _NamedArgument(TyperArgument):
    """An argument whose metavar is its label: no type column beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


def tidy(params: Iterable[Any]) -> None:
    """Give each parameter the metavar its help shows (in place; explicit ones are kept)."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is not None:
            param.__class__ = _NamedArgument
        elif isinstance(param, TyperOption) and param.metavar is None:
            if param.is_flag:
                param.metavar = ""
                continue
            try:
                label = param.display_type(None)  # type: ignore[arg-type]
            except Exception:  # noqa: BLE001 - a type that needs a context keeps Typer's label
                continue
            if label in _CLASSIC:
                param.metavar = _CLASSIC[label]


def reflow(text: str | None) -> str | None:
    """``text`` with each paragraph on one line (paragraphs are separated by blank lines)."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


class _PlainHelp:
    """Reflowed help and plain metavars, for a command or a group (a mixin before the Typer
    class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflow(self.help)
        tidy(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        tidy([option] if option is not None else [])
        return option


class Command(_PlainHelp, TyperCommand):
    """A command whose help shows plain metavars and reflowed paragraphs (see the module's
    docstring)."""


class Group(_PlainHelp, TyperGroup):
    """A command group whose own options and ``--help`` show plain metavars."""
