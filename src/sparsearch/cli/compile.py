"""``sparsearch compile MODEL.tflite -o model.zip``: any int8 ``.tflite`` within the C target's
operators -> the interpreter-free C project (``c_project``), checked bit-exact against TFLite
Micro on random inputs (and the user's ``--samples``), measured as Cortex-M4 firmware."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparsearch.cli.common import check_int, fail, out, say
from sparsearch.errors import ConfigError, SparsearchError

#: A .tflite larger than this is not a microcontroller model (the reader caps it too).
MAX_MODEL_BYTES = 64 * 2**20


def compile_model(
    model: Path = typer.Argument(..., metavar="MODEL.tflite", help="An int8 .tflite file"),
    output: Path = typer.Option(
        ..., "-o", "--output", metavar="ZIP", help="Where to write the C project (a .zip)"
    ),
    samples: Path | None = typer.Option(
        None, metavar="FILE.npz", help="Extra int8 inputs to check, (N, H, W, C) under x"
    ),
    prefix: str = typer.Option("model", metavar="NAME", help="C prefix of the API (model_...)"),
    seed: int = typer.Option(0, metavar="N", help="Seed of the random check inputs"),
    no_firmware: bool = typer.Option(
        False, "--no-firmware", help="Skip the ARM build (no flash, RAM, instructions)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout"),
) -> None:
    """Turn an int8 .tflite into interpreter-free C, checked vs TFLM."""
    try:
        check_int(seed, "--seed", hint="use a seed of 0 or more")
        report = _run(model, output, samples, prefix, seed, not no_firmware, as_json)
    except SparsearchError as e:
        fail(e)
    doc = report.to_json()
    if as_json:
        out.print_json(json.dumps(doc))
    else:
        _table(doc)
        say(f"wrote {output} (unzip it and run `make run` to try it in QEMU)")
    if not report.bit_exact:
        raise typer.Exit(1)


def _run(model, output, samples, prefix, seed, firmware, quiet):  # type: ignore[no-untyped-def]
    import numpy as np

    from sparsearch.worker.c_compile import compile_tflite, load_samples

    data = _read(model)
    extra = None
    if samples is not None:
        from sparsearch.codegen import generate

        try:
            with np.load(samples, allow_pickle=False) as npz:
                extra = load_samples(npz, generate(data, prefix=prefix))
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot read the samples {samples}: {e}", "pass an .npz") from e
    report = compile_tflite(
        data,
        samples=extra,
        prefix=prefix,
        seed=seed,
        firmware=firmware,
        progress=None if quiet else (lambda what: say(f"{what} ...")),
    )
    try:
        output.write_bytes(report.project)
    except OSError as e:
        raise ConfigError(f"cannot write {output}: {e.strerror or e}", "check the path") from e
    return report


def _read(model: Path) -> bytes:
    try:
        size = model.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise ConfigError(
                f"{model} is {size} bytes; a microcontroller model is far smaller",
                "pass an int8 .tflite of at most 64 MiB",
            )
        return model.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {model}: {e.strerror or e}", "check the path") from e


def _table(doc: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    def num(v: object) -> str:
        return "-" if v is None else f"{v:,}"

    t = Table(title="TFLM vs interpreter-free C (Cortex-M4, -Os)")
    for col in ("", "flash (B)", "RAM (B)", "stack (B)", "instructions"):
        t.add_column(col, justify="right" if col else "left")
    t.add_row(
        "TFLM",
        num(doc["tflm"]["flash_bytes"]) + " + runtime",
        num(doc["tflm"]["ram_bytes"]),
        "-",
        "-",
    )
    c = doc["c"]
    t.add_row(
        "C",
        num(c["flash_bytes"]),
        num(c["ram_bytes"]),
        num(c["stack_bytes"]),
        num(c["instructions"]),
    )
    out.print(t)
    verdict = "bit-exact" if doc["bit_exact"] else "DIFFERENT"
    say(
        f"{verdict} with TFLM on {doc['images']} inputs"
        + (f"; C not measured: {doc['c_error']}" if doc.get("c_error") else "")
    )
    if not doc["bit_exact"]:
        d = doc["first_difference"]
        say(
            f"first difference: {d['set']} input {d['image']}, output {d['output']}: "
            f"C {d['c']}, TFLM {d['tflm']}"
        )
