"""``sparsearch prune``: prune one trained model to a target and show what it gained and cost.

The model is a trial of a job (``JOB:N``, read from the local database or ``--server`` as
``pull`` reads it), a sparsearch model file (what ``-o`` writes, so a pruned model can be pruned
again), or a user's own TorchScript / ``torch.export`` CNN. ``worker.prune.prune_model`` does the
work; this module turns options into its arguments, shows its phases and prints the before /
after table or the ``--json`` document. Reading the model and writing the result
live in ``cli/prune_model.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from sparsearch.cli.common import (
    ArtifactsOption,
    DbOption,
    ServerOption,
    TokenOption,
    check_int,
    err,
    fail,
    out,
    say,
)
from sparsearch.cli.prune_model import load_data, read_source, write_result
from sparsearch.errors import ConfigError, PruningError, SparsearchError
from sparsearch.jobconfig import MAX_EPOCHS
from sparsearch.units import MAX_SIZE, format_size, parse_size
from sparsearch.vocabulary import PRUNING_METHODS, PRUNING_SCHEDULES

_COUNT = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)\s*$", re.ASCII)
_COUNT_UNITS = {"": 1, "k": 1000, "m": 1000**2, "g": 1000**3}
#: CLI flag of each knob name (every method's knobs; ``seed`` is complexity's layer-draw seed,
#: which ``--seed`` also sets, see ``prune``).
KNOB_FLAGS: dict[str, str] = {
    "mode": "--mode",
    "p": "--p",
    "scope": "--scope",
    "criterion": "--criterion",
    "threshold": "--threshold",
    "samples": "--samples",
    "strength": "--strength",
    "kl_weight": "--kl-weight",
    "step": "--step",
}
_TARGET_FLAGS = {
    "ratio": "--ratio",
    "params": "--target-params",
    "flash_bytes": "--target-flash",
    "ram_bytes": "--target-ram",
    "macs": "--target-macs",
}


def _knob_help(name: str) -> str:
    """Help of one knob option: which methods have it, what it is, its values or range."""
    parts = []
    for m in PRUNING_METHODS.values():
        for k in m.knobs:
            if k.name == name:
                allowed = (
                    " | ".join(str(v) for v in k.values)
                    if k.values is not None
                    else f"{k.bounds[0]:g}..{k.bounds[1]:g}"  # type: ignore[index]
                )
                parts.append(f"{m.name}: {k.description} ({allowed}, default {k.default})")
    return "; ".join(parts)


def _method_help() -> str:
    methods = " | ".join(
        f"{m.name}{'' if m.structured else '*'} ({', '.join(m.schedules)})"
        for m in PRUNING_METHODS.values()
    )
    return f"{methods}; * zeroes single weights (unstructured), the others remove filters"


def prune(
    model: str = typer.Argument(
        ...,
        metavar="MODEL",
        help="JOB:N (trial N of a job, its search-run model), a sparsearch model file (what -o "
        "writes), or your own TorchScript / torch.export CNN file",
    ),
    dataset: str | None = typer.Option(
        None,
        metavar="NAME",
        help="digits | fashion-mnist | idx:DIR | npz:FILE (default for JOB:N and sparsearch "
        "model files: the data set the model was trained on)",
    ),
    method: str = typer.Option(..., "--method", metavar="NAME", help=_method_help()),
    mode: str | None = typer.Option(None, "--mode", help=_knob_help("mode")),
    p: int | None = typer.Option(None, "--p", help=_knob_help("p")),
    scope: str | None = typer.Option(None, "--scope", help=_knob_help("scope")),
    criterion: str | None = typer.Option(None, "--criterion", help=_knob_help("criterion")),
    threshold: float | None = typer.Option(None, "--threshold", help=_knob_help("threshold")),
    samples: int | None = typer.Option(None, "--samples", help=_knob_help("samples")),
    strength: float | None = typer.Option(None, "--strength", help=_knob_help("strength")),
    kl_weight: float | None = typer.Option(None, "--kl-weight", help=_knob_help("kl_weight")),
    step: float | None = typer.Option(None, "--step", help=_knob_help("step")),
    schedule: str | None = typer.Option(
        None,
        metavar="NAME",
        help=f"{' | '.join(PRUNING_SCHEDULES)} (default: the method's first; see --method)",
    ),
    steps: int | None = typer.Option(
        None, metavar="N", help="Steps of the iterative schedule (1-20, default 3)"
    ),
    ratio: float | None = typer.Option(
        None,
        metavar="R",
        help="Target: the pruning level itself, in [0, 1) (filters or weights removed)",
    ),
    target_params: str | None = typer.Option(
        None,
        metavar="N",
        help="Target: parameters at most this (20000, 20k); unstructured methods: the "
        "non-zero ones",
    ),
    target_flash: str | None = typer.Option(
        None,
        metavar="SIZE",
        help="Target: int8 .tflite flash at most this (8KiB, 6000); unstructured methods: "
        "the sparse accounting",
    ),
    target_ram: str | None = typer.Option(
        None, metavar="SIZE", help="Target: TFLM arena at most this (4KiB)"
    ),
    target_macs: str | None = typer.Option(
        None,
        metavar="N",
        help="Target: multiply-accumulates per image at most this (200000, 200k, 1.5M)",
    ),
    epochs: int = typer.Option(2, metavar="N", help="Fine-tuning epochs after pruning"),
    train_epochs: int = typer.Option(
        6,
        metavar="N",
        help="Epochs of the training from scratch of the train_once schedule (complexity)",
    ),
    lr: float = typer.Option(3e-3, metavar="LR", help="Learning rate (fine-tuning uses lr / 3)"),
    batch_size: int = typer.Option(64, metavar="N", help="Training batch size"),
    seed: int | None = typer.Option(
        None,
        metavar="N",
        help="Seed of the data split, training and complexity's layer draws (default: the "
        "job's or the model file's, else 0)",
    ),
    train_limit: int | None = typer.Option(
        None, metavar="N", help="Use a stratified training subset of N images"
    ),
    output: Path = typer.Option(
        ...,
        "-o",
        "--output",
        metavar="FILE",
        help="Pruned model to write: a sparsearch model file, or torch.export for your own model",
    ),
    tflite: Path | None = typer.Option(
        None,
        "--tflite",
        metavar="FILE",
        help="Also write the measured int8 .tflite of the pruned model",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print one JSON document on stdout (before, after, target, ...)"
    ),
    db: str | None = DbOption,
    artifacts: Path | None = ArtifactsOption,
    server: str | None = ServerOption,
    token: str | None = TokenOption,
) -> None:
    """Prune a trained model to a target and fine-tune it.

    One pruning method meets one target (--ratio, --target-params, --target-flash, --target-ram
    or --target-macs); a table shows accuracy, int8 accuracy, params, flash, RAM and MACs before
    and after, all measured as deployed (int8 on TFLite Micro)."""
    knobs = {
        "mode": mode,
        "p": p,
        "scope": scope,
        "criterion": criterion,
        "threshold": threshold,
        "samples": samples,
        "strength": strength,
        "kl_weight": kl_weight,
        "step": step,
    }
    targets = {
        "ratio": ratio,
        "params": target_params,
        "flash_bytes": target_flash,
        "ram_bytes": target_ram,
        "macs": target_macs,
    }
    try:
        pruning = pruning_spec(method, knobs, schedule, steps, seed)
        target = prune_target(targets)
        _check_training(epochs, train_epochs, lr, batch_size, seed, train_limit)
        _check_writable(output, "-o/--output")
        if tflite is not None:
            _check_writable(tflite, "--tflite")
        source = read_source(model, db=db, artifacts=artifacts, server=server, token=token)
        data_seed = seed if seed is not None else source.seed if source.seed is not None else 0
        data = load_data(dataset or source.dataset, model, data_seed, train_limit, source)
        loaded, arch = source.load(data)
        train = _train_spec(lr, train_epochs, epochs, batch_size, data_seed)
        outcome = _run(loaded, data, pruning, target, arch, train, as_json)
        write_result(outcome, output, tflite, data, data_seed, source)
    except SparsearchError as e:
        fail(e)
    doc = {**outcome.to_dict(), "output": str(output)}
    if tflite is not None:
        doc["tflite_output"] = str(tflite)
    if as_json:
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    out.print(result_table(doc, structured=PRUNING_METHODS[pruning.method].structured))
    for line in summary_lines(doc, model):
        out.print(escape(line), highlight=False, soft_wrap=True)


# --- options ----------------------------------------------------------------------------------


def pruning_spec(
    method: str,
    knobs: dict[str, Any],
    schedule: str | None,
    steps: int | None,
    seed: int | None,
) -> Any:
    """The PruningSpec the options make (only the knobs given); ConfigError / SpaceError naming
    a knob the method lacks, a value it refuses, a schedule it does not support."""
    from sparsearch.space.spec import PruningSpec

    info = PRUNING_METHODS.get(method)
    if info is None:
        raise PruningError(
            f"unknown pruning method {method!r}",
            f"choose one of {', '.join(PRUNING_METHODS)} (--method)",
        )
    own = {k.name for k in info.knobs}
    flags = [KNOB_FLAGS[k] for k in KNOB_FLAGS if k in own] + ["--schedule", "--steps"]
    options: dict[str, Any] = {}
    for name, value in knobs.items():
        if value is None:
            continue
        if name not in own:
            raise ConfigError(
                f"{KNOB_FLAGS[name]} is not an option of {method}",
                f"{method}'s options: {', '.join(flags)}",
            )
        options[name] = value
    if schedule is not None:
        if schedule not in PRUNING_SCHEDULES:
            raise ConfigError(
                f"unknown schedule {schedule!r}",
                f"{method} supports {', '.join(info.schedules)}",
            )
        options["schedule"] = schedule
    if steps is not None:
        if (schedule or info.schedules[0]) != "iterative":
            raise ConfigError(
                "--steps is for the iterative schedule",
                "add --schedule iterative"
                if "iterative" in info.schedules
                else f"{method} has no iterative schedule ({', '.join(info.schedules)})",
            )
        options["steps"] = steps
    if seed is not None and "seed" in own:
        options["seed"] = seed
    return PruningSpec(method=method, options=options)


def parse_count(text: str, *, what: str) -> int:
    """A positive count such as 200000, 200k or 1.5M (powers of 1000, ASCII digits only, at
    most ``MAX_SIZE``); ConfigError if not."""
    hint = "write a count like 200000, 200k or 1.5M"
    if not text.isascii():
        raise ConfigError(f"cannot parse {what} {text!r}: only ASCII digits are accepted", hint)
    match = _COUNT.match(text)
    if not match:
        raise ConfigError(f"cannot parse {what} {text!r}", hint)
    number = Decimal(match.group(1)) * _COUNT_UNITS[match.group(2).lower()]
    if number > MAX_SIZE:
        raise ConfigError(f"{what} is too large: at most {MAX_SIZE:,}", hint)
    value = int(number)
    if value <= 0:
        raise ConfigError(f"{what} must be positive, got {text!r}", "give a target above zero")
    return value


def prune_target(targets: dict[str, Any]) -> Any:
    """The one target given, as a PruneTarget; ConfigError for none or several."""
    from sparsearch.worker.prune import PruneTarget

    given = {k: v for k, v in targets.items() if v is not None}
    every = ", ".join(_TARGET_FLAGS.values())
    if not given:
        raise ConfigError("no pruning target", f"give exactly one of {every}")
    if len(given) > 1:
        named = " and ".join(_TARGET_FLAGS[k] for k in given)
        raise ConfigError(f"two targets at once: {named}", f"give exactly one of {every}")
    ((quantity, value),) = given.items()
    flag = _TARGET_FLAGS[quantity]
    if quantity == "ratio":
        number = float(value)
        if not math.isfinite(number):
            raise PruningError(f"ratio {value!r} is outside [0, 1)", "e.g. --ratio 0.5")
    elif quantity in ("macs", "params"):
        number = parse_count(value, what=flag)
    else:
        number = parse_size(value, what=flag)
    return PruneTarget(quantity, number)


def _check_training(
    epochs: int,
    train_epochs: int,
    lr: float,
    batch_size: int,
    seed: int | None,
    train_limit: int | None,
) -> None:
    check_int(epochs, "--epochs", high=MAX_EPOCHS, hint="0 skips the fine-tuning")
    check_int(train_epochs, "--train-epochs", low=1, high=MAX_EPOCHS)
    if not (math.isfinite(lr) and lr > 0):
        raise ConfigError(f"--lr must be positive, got {lr}", "the default is 3e-3")
    check_int(batch_size, "--batch-size", low=1)
    check_int(seed, "--seed", high=2**31 - 1)  # a job's seeds: numpy takes at most 2^32 - 1
    check_int(train_limit, "--train-limit", low=1)


def _train_spec(lr: float, train_epochs: int, epochs: int, batch_size: int, seed: int) -> Any:
    from sparsearch.space.spec import TrainSpec

    return TrainSpec(
        lr=lr, epochs=train_epochs, finetune_epochs=epochs, batch_size=batch_size, seed=seed
    )


def _check_writable(path: Path, flag: str) -> None:
    """ConfigError now, before minutes of pruning, when ``path`` cannot be written."""
    hint = f"pass a writable file path with {flag}"
    if path.is_dir():
        raise ConfigError(f"cannot write {path}: it is a directory", hint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror or e}", hint) from e
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"cannot write {path}: permission denied", hint)


# --- running ----------------------------------------------------------------------------------


def _run(
    model: Any, data: Any, pruning: Any, target: Any, arch: Any, train: Any, as_json: bool
) -> Any:
    from sparsearch.worker.prune import prune_model

    # What the libraries print from Python goes to stderr: stdout is the result's alone.
    with contextlib.redirect_stdout(sys.stderr):
        if as_json:
            return prune_model(
                model, data, pruning, target, arch=arch, train=train, progress=lambda s: say(s)
            )
        with phase_display() as progress:
            return prune_model(
                model, data, pruning, target, arch=arch, train=train, progress=progress
            )


#: The engine's own phases; anything else is a step inside the current one (the schedule's).
_TOP_PHASES = ("measure before", "find the level", "prune (", "measure after")
_STEP = re.compile(r"(\d+)/(\d+)")


@contextlib.contextmanager
def phase_display() -> Iterator[Callable[[str], None]]:
    """A Rich display on stderr: one row per phase (spinner, text, a bar where the phase has
    steps, elapsed time); the schedule's steps update the pruning row."""
    bar = Progress(
        SpinnerColumn(finished_text="[green]✓"),
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )
    current: list[Any] = []  # [task id, its phase text]

    def finish() -> None:
        if current:
            task = bar.tasks[-1]
            total = task.total if task.total is not None else 1
            bar.update(current[0], total=total, completed=total, description=escape(current[1]))

    def progress(phase: str) -> None:
        if phase.startswith(_TOP_PHASES) or not current:
            finish()
            current[:] = [bar.add_task(escape(phase), total=None), phase]
            return
        step = _STEP.search(phase)
        fields: dict[str, Any] = {"description": escape(f"{current[1]}: {phase}")}
        if step:
            fields.update(total=int(step.group(2)), completed=int(step.group(1)) - 1)
        bar.update(current[0], **fields)

    with bar:
        yield progress
        finish()


# --- the result -------------------------------------------------------------------------------

#: Rows of the before/after table: key, label, kind; the last two for unstructured methods.
_ROWS = (
    ("accuracy", "accuracy", "acc"),
    ("int8_accuracy", "int8 accuracy", "acc"),
    ("params", "params", "count"),
    ("flash_bytes", "flash", "size"),
    ("ram_bytes", "RAM", "size"),
    ("macs", "MACs", "count"),
)
_SPARSE_ROWS = (
    ("nonzero_params", "non-zero params", "count"),
    ("nnz_flash_bytes", "sparse flash", "size"),
    ("zero_fraction", "zero fraction", "acc"),
)


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return "-"
    if kind == "acc":
        return f"{100 * value:.1f} %"
    if kind == "size":
        return format_size(int(value))
    return f"{int(value):,}"


def _change(before: Any, after: Any, kind: str) -> str:
    if before is None or after is None:
        return "-"
    if kind == "acc":  # a difference of percentages, in points
        return f"{100 * (after - before):+.1f} pp"
    if not before:
        return "-"
    return f"{100 * (after - before) / before:+.1f} %"


def result_table(doc: dict[str, Any], *, structured: bool) -> Table:
    """Before / after / change of every measured figure."""
    table = Table(title=f"{doc['method']} at level {doc['level']:.2f}", title_justify="left")
    table.add_column("")
    for name in ("before", "after", "change"):
        table.add_column(name, justify="right")
    rows = _ROWS if structured else _ROWS + _SPARSE_ROWS
    for key, label, kind in rows:
        b, a = doc["before"].get(key), doc["after"].get(key)
        table.add_row(label, _cell(b, kind), _cell(a, kind), _change(b, a, kind))
    return table


def summary_lines(doc: dict[str, Any], model: str) -> list[str]:
    """What was pruned how, to which target, and what was written; the engine's notes."""
    from sparsearch.space.spec import DEFAULT_STEPS

    t = doc["target"]
    if t["quantity"] == "ratio":
        target = f"ratio {t['value']:g}"
    elif t["quantity"] in ("macs", "params"):
        target = f"{'MACs' if t['quantity'] == 'macs' else 'params'} <= {int(t['value']):,}"
    else:
        label = "flash" if t["quantity"] == "flash_bytes" else "RAM"
        target = f"{label} <= {format_size(int(t['value']))}"
    schedule = doc["schedule"]
    if schedule == "iterative":
        schedule += f", {doc['options'].get('steps', DEFAULT_STEPS)} steps"
    knobs = [f"{k}={v}" for k, v in doc["options"].items() if k not in ("schedule", "steps")]
    options = ", ".join([schedule, *knobs])
    lines = [
        f"{model}: {doc['method']} ({options}), "
        f"target {target}, level {doc['level']:.2f}, {doc['wall_seconds']:.1f} s",
        f"wrote {doc['output']}"
        + (f" and {doc['tflite_output']}" if "tflite_output" in doc else ""),
    ]
    lines += [f"note: {n}" for n in doc["notes"]]
    return lines
