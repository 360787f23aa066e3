"""``docs/cli.md`` from the Typer app itself, so the reference never drifts from the code.

Walks the click command tree and writes, per command, its usage, its help text and a table
of its arguments and options. Regenerate with ``python -m sparsearch.cli._docgen``
(``tests/test_docs.py`` fails when the committed file is stale).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

#: Where the reference lives, relative to the repository root.
CLI_DOC = Path("docs/cli.md")
REGENERATE = "python -m sparsearch.cli._docgen"

_HEADER = f"""# Command-line reference

Generated from the Typer app by `{REGENERATE}` (run from the repository root
after changing a command; `tests/test_docs.py` fails while this file is stale). Every command
also answers `--help`. Sizes take units (`24KiB` = 24 × 1024 B, `24KB` = 24,000 B, a bare number is
bytes); errors are an `error:` line and a `hint:` line on stderr, exit 2 for bad input.
"""


def _walk(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.hidden:
            yield from _walk(sub, (*path, name))


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _param_row(param: Any, ctx: Any) -> str | None:
    if getattr(param, "hidden", False):
        return None
    if param.param_type_name == "argument":
        name = f"`{param.metavar or param.name.upper()}`"
    else:
        flags = [*param.opts, *param.secondary_opts]
        metavar = "" if param.is_flag else (param.metavar or param.name.upper())
        name = ", ".join(f"`{f}`" for f in flags) + (f" `{metavar}`" if metavar else "")
    notes = []
    if param.required:
        notes.append("required")
    default = param.default
    shown = param.param_type_name == "option" and param.show_default is not False
    if isinstance(default, bool) and param.secondary_opts:  # --scheduler/--no-scheduler
        notes.append(f"default `{param.opts[0] if default else param.secondary_opts[0]}`")
    elif shown and default not in (None, ()) and default is not False and not callable(default):
        notes.append(f"default `{default}`")
    envvar = getattr(param, "envvar", None)
    if envvar and getattr(param, "show_envvar", False):
        notes.append(f"env `{envvar}`")
    text = _cell(getattr(param, "help", None) or "")
    if notes:
        text = f"{text} ({', '.join(notes)})" if text else ", ".join(notes)
    return f"| {_cell(name)} | {text} |"


def _section(path: tuple[str, ...], command: Any, root: Any) -> list[str]:
    name = " ".join(("sparsearch", *path))
    ctx = typer.Context(command, info_name=name)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [f"## `{name}`", ""]
    help_text = (command.help or "").strip()
    if help_text:
        lines += [*help_text.split("\n\n")[:1], ""]
    lines += ["```", f"{name} {usage}".rstrip(), "```", ""]
    rest = help_text.split("\n\n")[1:]
    for paragraph in rest:
        lines += [" ".join(paragraph.split()), ""]
    subcommands = [(n, c) for n, c in getattr(command, "commands", {}).items() if not c.hidden]
    if subcommands:
        lines += ["| command | what |", "|---|---|"]
        for sub_name, sub in subcommands:
            summary = (sub.help or "").split("\n\n")[0]
            anchor = "sparsearch-" + "-".join((*path, sub_name))
            lines.append(f"| [`{sub_name}`](#{anchor}) | {_cell(summary)} |")
        lines.append("")
    # --help is on every command: said once in the header, not in every table.
    params = [p for p in command.get_params(ctx) if "--help" not in p.opts]
    rows = [r for r in (_param_row(p, ctx) for p in params) if r]
    if rows:
        lines += ["| argument / option | meaning |", "|---|---|", *rows, ""]
    return lines


def render() -> str:
    """The whole reference as Markdown."""
    from sparsearch.cli import app

    root = typer.main.get_command(app)
    lines = [_HEADER]
    for path, command in _walk(root):
        lines += _section(path, command, root)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write ``docs/cli.md`` (or the path given) from the app."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else CLI_DOC
    target.write_text(render(), encoding="utf-8")
    sys.stderr.write(f"wrote {target}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover - the module's command
    raise SystemExit(main())
