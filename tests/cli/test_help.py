"""Every help screen reads cleanly at 80 and 100 columns: one line per command in each command
list, no Typer type labels in angle brackets (``<str>``, ``<int>``, ``<bool>``), no line
wider than the terminal, and each command's summary is its docstring's first line."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from sparsearch.cli import app

WIDTHS = (80, 100)
#: Typer's own labels: <str>, <int>, <path>, <bool>, <bo|random|...>, <list[str]>.
ANGLE_TYPE = re.compile(r"<[a-z][\w|,.\[\] -]*>")


def _commands(group=None, path=()):
    """(path, click command) for the app and every command and group under it."""
    group = group or typer.main.get_command(app)
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


ALL = list(_commands())
GROUPS = [(path, cmd) for path, cmd in ALL if hasattr(cmd, "commands")]


def _id(value) -> str:
    return " ".join(value) or "sparsearch" if isinstance(value, tuple) else "-"


def _help(path: tuple[str, ...], width: int) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": str(width)}, prog_name="sparsearch"
    )
    assert result.exit_code == 0, result.output
    return result.output


def _panel(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"╭─ {title}"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("╰"))
    return [ln.strip("│").rstrip() for ln in lines[start + 1 : end]]


def test_the_tree_is_what_the_app_has() -> None:
    names = {" ".join(path) for path, _ in ALL}
    assert {"search", "pull", "finalize", "prune", "token revoke", "db upgrade"} <= names
    assert len(ALL) >= 18


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("path", "command"), ALL, ids=_id)
def test_help_fits_and_shows_no_angle_types(path, command, width: int) -> None:
    text = _help(path, width)
    assert not ANGLE_TYPE.findall(text), ANGLE_TYPE.findall(text)
    too_wide = [ln for ln in text.splitlines() if len(ln) > width]
    assert not too_wide, too_wide
    if command.help:  # the summary opens the screen, unwrapped
        assert command.help.split("\n\n")[0] in " ".join(text.split())


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(("path", "group"), GROUPS, ids=_id)
def test_each_command_summary_is_one_line(path, group, width: int) -> None:
    rows = _panel(_help(path, width), "Commands")
    visible = [name for name, cmd in group.commands.items() if not cmd.hidden]
    # One row per command: a continuation row starts with blanks where the name would be.
    assert [row.split()[0] for row in rows] == visible, "\n".join(rows)
    for row, name in zip(rows, visible, strict=True):
        summary = group.commands[name].help.split("\n\n")[0]
        assert " ".join(row.split()[1:]) == summary, row


def test_summaries_are_sentences_short_enough_for_80_columns() -> None:
    for path, command in ALL:
        first = (command.help or "").split("\n\n")[0]
        assert first and "\n" not in first, (path, first)
        assert len(first) <= 64, (path, first)


def test_option_metavars_say_what_to_give() -> None:
    text = " ".join(_help(("search",), 100).split())
    for shown in ("--flash SIZE", "--trials N", "--db URL", "--artifacts DIR", "--resume JOB"):
        option, metavar = shown.split()
        assert re.search(rf"{option} {metavar} ", text), shown
    assert re.search(r"--json Print one JSON", text)  # a flag: no type at all
    pull = " ".join(_help(("pull",), 100).split())
    assert "Usage: sparsearch pull [OPTIONS] {JOB}" in pull
