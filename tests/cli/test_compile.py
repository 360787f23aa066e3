"""``sparsearch compile``: a .tflite -> the C project, checked against TFLM, measured as
firmware; hostile or unsupported files are an ``error:`` (exit 2), never a traceback."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sparsearch.cli import app

DATA = Path(__file__).parents[1] / "codegen" / "data"
MODEL = DATA / "dw_conv_pool_transpose_fc_8x8.tflite"
HAS_ARM = shutil.which("arm-none-eabi-gcc") is not None


def run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["compile", *args])


def doc_of(result) -> dict:  # type: ignore[no-untyped-def, type-arg]
    return json.loads(result.stdout)


@pytest.mark.skipif(not HAS_ARM, reason="arm-none-eabi-gcc is not installed (make toolchain)")
def test_compile_writes_a_bit_exact_measured_project(tmp_path):
    out = tmp_path / "model.zip"
    result = run(str(MODEL), "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    doc = doc_of(result)
    assert doc["bit_exact"] is True and doc["images"] == 200
    assert doc["tflm"]["flash_bytes"] == MODEL.stat().st_size
    assert doc["tflm"]["ram_bytes"] > doc["c"]["ram_bytes"] > 0
    c = doc["c"]
    assert c["ram_bytes"] >= c["arena_bytes"] + c["stack_bytes"]
    assert c["flash_bytes"] > 0 and c["instructions"] > 0
    names = zipfile.ZipFile(io.BytesIO(out.read_bytes())).namelist()
    assert {"model_project/model.h", "model_project/model.c", "model_project/Makefile"} <= set(
        names
    )


def test_user_samples_are_checked_too_and_must_be_int8_inputs(tmp_path):
    shape = (5, 6, 6, 1)  # the 8x8 model runs at input scale 0.75
    good = tmp_path / "good.npz"
    np.savez(good, x=np.random.default_rng(1).integers(-128, 128, shape, dtype=np.int8))
    result = run(
        str(MODEL), "-o", str(tmp_path / "m.zip"), "--samples", str(good), "--no-firmware", "--json"
    )
    assert result.exit_code == 0, result.output
    doc = doc_of(result)
    assert doc["images"] == 205 and doc["bit_exact"]
    assert doc["c"]["flash_bytes"] is None and "--no-firmware" in doc["c_error"]
    floats = tmp_path / "floats.npz"
    np.savez(floats, x=np.zeros(shape, dtype=np.float32))
    result = run(str(MODEL), "-o", str(tmp_path / "m.zip"), "--samples", str(floats))
    assert result.exit_code == 2
    assert "error: samples are float32" in result.output and "hint:" in result.output
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((2, 7, 7, 1), dtype=np.int8))
    result = run(str(MODEL), "-o", str(tmp_path / "m.zip"), "--samples", str(wrong))
    assert result.exit_code == 2 and "do not fit the model's input of 36 bytes" in result.output


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda b: b[:300], "runs past the end of the file"),
        (lambda b: b"hello, not a model at all" * 4, "points outside the file"),
        (lambda b: b"", "bytes"),
    ],
)
def test_a_broken_file_is_an_error_not_a_traceback(tmp_path, make, words):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(make(MODEL.read_bytes()))
    result = run(str(bad), "-o", str(tmp_path / "m.zip"))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and words in result.output
    assert "Traceback" not in result.output and not (tmp_path / "m.zip").exists()


def test_an_operator_outside_the_c_target_is_named(tmp_path):
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(MODEL.read_bytes()))
    names = [fu.opcode_to_name(model, i) for i in range(len(model.operatorCodes))]
    code = model.operatorCodes[names.index("TRANSPOSE")]  # an operator without options
    code.builtinCode = code.deprecatedBuiltinCode = 14  # LOGISTIC
    bad = tmp_path / "logistic.tflite"
    bad.write_bytes(bytes(fu.convert_object_to_bytearray(model)))
    result = run(str(bad), "-o", str(tmp_path / "m.zip"))
    assert result.exit_code == 2
    assert "(LOGISTIC): this operator is not supported by the C target" in result.output
    assert "--target tflm" in result.output


def test_a_missing_file_is_an_error(tmp_path):
    result = run(str(tmp_path / "nope.tflite"), "-o", str(tmp_path / "m.zip"))
    assert result.exit_code == 2 and "cannot read" in result.output
