"""What every command group of the CLI shares: the consoles, the common options, settings and
storage from options, and the one way an error is printed (``error:`` then ``hint:``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from sparsearch.errors import ConfigError, SparsearchError
from sparsearch.units import INT64_MAX
from sparsearch.vocabulary import DEFAULT_STRATEGY, DEFAULT_TARGET, STRATEGIES, TARGETS

# soft_wrap: messages (paths, URLs) are never broken across lines at the terminal width.
err = Console(stderr=True, soft_wrap=True)
out = Console()

# Help texts are Rich markup: "[env X]" would vanish as an unknown tag, hence "(default: X)".
DbOption = typer.Option(
    None, "--db", metavar="URL", help="Database URL (default: SPARSEARCH_DATABASE_URL)"
)
ArtifactsOption = typer.Option(
    None, "--artifacts", metavar="DIR", help="Artifact directory (default: SPARSEARCH_ARTIFACT_DIR)"
)
ServerOption = typer.Option(
    None,
    "--server",
    metavar="URL",
    envvar="SPARSEARCH_SERVER",
    help="sparsearch server URL; without it, commands read the local database",
)
TokenOption = typer.Option(
    None, "--token", metavar="TOKEN", envvar="SPARSEARCH_TOKEN", help="API token for --server"
)

# The job options `search` (local) and `submit` (to a server) share.
FlashOption = typer.Option(
    "32KiB", metavar="SIZE", help="Flash limit (24KiB = 24*1024 B, 24KB = 24000 B)"
)
RamOption = typer.Option("8KiB", metavar="SIZE", help="RAM limit (same units)")
MacsOption = typer.Option(None, metavar="N", help="Optional limit on multiply-accumulates")
InstructionsOption = typer.Option(
    None,
    "--max-instructions",
    metavar="N",
    help="Optional latency budget: Cortex-M4 instructions per inference (target c)",
)
RamMarginOption = typer.Option(
    None,
    "--ram-margin",
    metavar="SIZE",
    help="RAM of the limit kept free for CMSIS-NN scratch buffers or the application "
    "(models must fit RAM - margin), e.g. 512B",
)
TrialsOption = typer.Option(8, metavar="N", help="Trained trials (completed + failed)")
ParallelOption = typer.Option(2, metavar="N", help="Trials trained at once on Ray")
EpochsOption = typer.Option(6, metavar="N", help="Training epochs per trial")
SeedOption = typer.Option(0, metavar="N", help="Seed of the optimizer, data split and training")
AccountingOption = typer.Option(
    "dense", metavar="NAME", help="dense (.tflite size) | sparse (non-zeros)"
)
#: The type of ``--strategy`` (its choices: ``vocabulary.STRATEGIES``).
StrategyName = Literal[tuple(STRATEGIES)]  # type: ignore[valid-type]
StrategyOption = typer.Option(
    None,
    "--strategy",
    metavar="NAME",
    show_default=False,
    help="How candidates are proposed (default "
    + DEFAULT_STRATEGY
    + "): "
    + "; ".join(f"{s.name}: {s.description}" for s in STRATEGIES.values()),
)
#: The type of ``--target`` (its choices: ``vocabulary.TARGETS``).
TargetName = Literal[TARGETS]  # type: ignore[valid-type]
#: A switch given as on / off.
OnOff = Literal["on", "off"]
#: What ``--target`` says, on every command that takes it.
TARGET_HELP = (
    "what the limits measure: c = the interpreter-free C model as Cortex-M4 firmware (flash it "
    "adds, static RAM + peak stack); tflm = the .tflite on TensorFlow Lite Micro (model file, "
    "tensor arena)"
)
TargetOption = typer.Option(DEFAULT_TARGET, "--target", metavar="NAME", help=TARGET_HELP)
EarlyStoppingOption = typer.Option(
    "off",
    "--early-stopping",
    metavar="on|off",
    help="Stop trials that, extrapolated at their known costs, cannot join the front "
    "(their epochs so far count against the budget)",
)
#: ``finalize --target``: the source job's target unless given.
FinalizeTargetOption = typer.Option(
    None,
    "--target",
    metavar="NAME",
    show_default=False,
    help=TARGET_HELP + " (default: the source job's)",
)
SpaceOption = typer.Option(
    None,
    "--space",
    metavar="FILE.json",
    help="Search-space overrides: a JSON object as the API's `space`, e.g. "
    '{"lr": [0.002, 0.04], "channels": [2, 32]}',
)
#: Larger --space files are refused unread (the object has a handful of short fields).
MAX_SPACE_FILE_BYTES = 64 * 1024


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or in the environment)
    rather than leaving its default."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def settings_from(db: str | None = None, artifacts: Path | None = None) -> Any:
    """``Settings`` from the environment, with ``--db`` / ``--artifacts`` on top."""
    from pydantic import ValidationError

    from sparsearch.config import Settings

    overrides: dict[str, Any] = {}
    if db:
        overrides["database_url"] = db
    if artifacts:
        overrides["artifact_dir"] = artifacts
    try:
        return Settings(**overrides)
    except ValidationError as e:
        bad = "; ".join(
            f"SPARSEARCH_{'_'.join(map(str, x['loc'])).upper()}: {x['msg']}" for x in e.errors()
        )
        raise ConfigError(f"invalid setting {bad}", "fix or unset that environment variable") from e


def masked(url: str) -> str:
    """A database URL fit for messages (password replaced by ***)."""
    from sparsearch.storage import mask_url

    return mask_url(url)


def open_from(settings: Any) -> Any:
    """The storage the settings name (migrated on first use)."""
    from sparsearch.storage import open_storage

    return open_storage(settings.database_url, settings.artifact_dir)


def backend(
    server: str | None, token: str | None, db: str | None, artifacts: Path | None = None
) -> Any:
    """A server's jobs (``--server``) or the local database's, behind one interface."""
    from sparsearch.client import LocalBackend, RemoteBackend

    if server:
        return RemoteBackend(server, token)
    return LocalBackend(open_from(settings_from(db, artifacts)))


def read_space(path: Path, flash_accounting: str) -> tuple[dict[str, Any], Any]:
    """A ``--space`` file's overrides (the JSON object the API takes as ``JobCreate.space``) and
    the SpaceConfig they make, checked by the API's own model and conversion
    (``api.views.space_config``). A ConfigError (exit 2) naming the file and the field, for an
    unreadable file, bad JSON, an unknown key or a value the space refuses."""
    from pydantic import ValidationError

    from sparsearch.api.schemas import SpaceIn
    from sparsearch.api.views import space_config

    hint = (
        'the file holds one JSON object, e.g. {"lr": [0.002, 0.04], "channels": [2, 32]}, '
        f"with any of the keys {', '.join(SpaceIn.model_fields)}"
    )
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_SPACE_FILE_BYTES + 1)
    except OSError as e:
        raise ConfigError(
            f"cannot read --space file {path}: {e.strerror or e}",
            "pass the path of a readable JSON file",
        ) from e
    if len(raw) > MAX_SPACE_FILE_BYTES:
        raise ConfigError(f"--space file {path} is over {MAX_SPACE_FILE_BYTES // 1024} KiB", hint)
    try:
        data = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, or bytes that are not text
        raise ConfigError(f"--space file {path} is not valid JSON: {e}", hint) from e
    try:
        space = SpaceIn.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(_field_problem(x) for x in e.errors())
        raise ConfigError(f"--space file {path}: {problems}", hint) from e
    try:
        return data, space_config(space, flash_accounting=flash_accounting)
    except ConfigError as e:
        raise ConfigError(f"--space file {path}: {e.message}", e.hint or hint) from e


def _field_problem(error: Any) -> str:
    where = ".".join(["space", *(str(p) for p in error.get("loc", ()))])
    if error.get("type") == "extra_forbidden":
        return f"unknown field {where}"
    return f"{where}: {error.get('msg', 'invalid')}"


def check_int(
    value: int | None, flag: str, *, low: int = 0, high: int = INT64_MAX, hint: str | None = None
) -> None:
    """ConfigError (exit 2) when an integer option is outside ``low..high``; None passes.
    Every integer that reaches storage is checked so: a database driver's OverflowError would
    otherwise be the user's message."""
    if value is None:
        return
    if value < low:
        raise ConfigError(f"{flag} must be >= {low}, got {value}", hint)
    if value > high:
        limit = "the largest integer stored" if high == INT64_MAX else "the most it allows"
        raise ConfigError(f"{flag} must be <= {high} ({limit}), got {value}", hint)


def check_instructions(value: int | None) -> None:
    """``--max-instructions``: from 1 to the product's cap (None: no limit); ConfigError (exit
    2) otherwise."""
    from sparsearch.jobconfig import MAX_INSTRUCTIONS

    check_int(
        value,
        "--max-instructions",
        low=1,
        high=MAX_INSTRUCTIONS,
        hint="give Cortex-M4 instructions per inference, e.g. 2000000",
    )


def print_error(message: str, hint: str | None = None) -> None:
    # escape(): messages quote user input (paths, names) that Rich would read as markup.
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    if hint:
        err.print(f"[bold]hint:[/] {escape(hint)}", highlight=False)


def fail(e: SparsearchError) -> NoReturn:
    """Print ``e`` and exit with its code (2 for bad input)."""
    print_error(e.message, e.hint)
    raise typer.Exit(e.exit_code)


def say(text: str) -> None:
    """One line of sparsearch's own on stderr (stdout stays for results)."""
    err.print(escape(text), highlight=False)
