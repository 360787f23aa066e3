"""The shipped model, on the real toolchain: litert-torch int8 export, string stripping, the
TFLite Micro interpreter (recording allocator) and the system C++ compiler."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import zipfile

import numpy as np
import pytest
import torch

from sparsearch.datasets import load_dataset
from sparsearch.errors import TrialError
from sparsearch.space.builder import build_model
from sparsearch.space.spec import ArchSpec, BlockSpec, TrialSpec
from sparsearch.worker import tflite
from sparsearch.worker.c_source import resolver_method
from sparsearch.worker.deploy import deploy
from sparsearch.worker.tflm import run_tflm
from sparsearch.worker.train import evaluate, set_determinism, train_epochs
from sparsearch.worker.trial import prepare_inputs

ARCH = ArchSpec(
    input_shape=(1, 8, 8),
    num_classes=10,
    blocks=(BlockSpec("conv", 3, 12, "none"), BlockSpec("dsconv", 3, 24, "stride")),
    head_pool="gap",
)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """A digits model trained well enough that int8 vs float agreement means something."""
    set_determinism(0, 1)
    x_train, x_val, x_test = prepare_inputs(TrialSpec(ARCH), digits)
    model = build_model(ARCH)
    train_epochs(model, x_train, digits.y_train, epochs=30, lr=1e-2, batch_size=32, seed=0)
    return model.eval(), x_train, x_val, x_test


@pytest.fixture(scope="module")
def deployed(digits, trained):
    model, x_train, x_val, x_test = trained
    return deploy(model, ARCH, digits, x_train, x_val, x_test, title="test model")


def test_int8_round_trip_on_digits_agrees_with_the_float_model(digits, trained, deployed):
    model, _, _, x_test = trained
    with torch.no_grad():
        float_pred = model(torch.from_numpy(x_test)).argmax(dim=1).numpy()
    q = tflite.quantize_nhwc(
        x_test, deployed.metadata["input"]["scale"], deployed.metadata["input"]["zero_point"]
    )
    run = run_tflm(deployed.tflite, {"test": q})
    agreement = float((run.predictions("test") == float_pred).mean())
    float_acc = evaluate(model, x_test, digits.y_test)
    assert float_acc > 0.8, "the fixture model must be trained for the check to mean anything"
    assert agreement >= 0.97
    assert abs(deployed.int8_test_accuracy - float_acc) <= 0.02
    assert deployed.metadata["int8_eval_images"]["test"] == len(digits.y_test)  # all of digits


def test_the_measured_numbers_are_the_shipped_file_and_its_arena(deployed):
    assert deployed.flash_bytes == len(deployed.tflite)
    run = run_tflm(deployed.tflite)
    assert (deployed.ram_bytes, deployed.activation_bytes) == (run.arena_total, run.arena_head)
    assert run.arena_total == run.arena_head + run.arena_tail
    arena = deployed.metadata["arena"]
    assert arena == {"total": run.arena_total, "head": run.arena_head, "tail": run.arena_tail}
    meta = deployed.metadata
    assert meta["input"]["shape_hwc"] == [8, 8, 1] and meta["input"]["dtype"] == "int8"
    assert meta["output"]["shape"] == [1, 10] and meta["output"]["dtype"] == "int8"
    assert meta["num_classes"] == 10 and meta["class_names"] == [str(d) for d in range(10)]
    assert meta["preprocessing"]["pixel_scale"] == pytest.approx(1 / 16)
    assert meta["converter"].startswith("litert-torch ") and meta["runtime"].startswith(
        "tflite-micro "
    )
    assert deployed.export_seconds > 0


def test_stripping_shrinks_the_file_and_leaves_tflm_outputs_bit_identical(trained):
    model, x_train, _, x_test = trained
    raw = tflite.export_int8(model, tflite.calibration_sample(x_train))
    stripped = tflite.strip(raw)
    assert len(stripped) < 0.8 * len(raw)  # the module-path tensor names are most of it
    scale, zp = tflite.input_quantization(stripped)
    assert (scale, zp) == tflite.input_quantization(raw)
    rng = np.random.default_rng(0)
    inputs = {
        "data": tflite.quantize_nhwc(x_test, scale, zp),
        "noise": rng.integers(-128, 128, size=(50, 8, 8, 1)).astype(np.int8),
    }
    a, b = run_tflm(raw, inputs), run_tflm(stripped, inputs)
    for name in inputs:
        np.testing.assert_array_equal(a.outputs[name], b.outputs[name])
    assert (a.arena_head, a.arena_total) == (b.arena_head, b.arena_total)


def test_the_op_resolver_lists_exactly_the_operators_of_the_model(deployed):
    ops = deployed.metadata["operators"]
    assert set(ops) == {"CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "MEAN", "FULLY_CONNECTED"}
    assert deployed.metadata["op_resolver"] == [f"{resolver_method(op)}()" for op in ops]
    assert resolver_method("DEPTHWISE_CONV_2D") == "AddDepthwiseConv2D"
    assert resolver_method("MAX_POOL_2D") == "AddMaxPool2D"
    assert resolver_method("FULLY_CONNECTED") == "AddFullyConnected"


@pytest.mark.skipif(shutil.which("c++") is None, reason="no system C++ compiler")
def test_the_c_source_compiles_and_its_array_is_the_tflite(deployed, tmp_path):
    with zipfile.ZipFile(io.BytesIO(deployed.c_source)) as z:
        assert sorted(z.namelist()) == ["model_data.cc", "model_data.h"]
        z.extractall(tmp_path)
    header = (tmp_path / "model_data.h").read_text()
    for op in deployed.metadata["operators"]:
        assert f"resolver.{resolver_method(op)}();" in header
    assert f"kTensorArenaSize = {deployed.ram_bytes};" in header
    # A translation unit that uses every constant and checks the length at compile time.
    n = len(deployed.tflite)
    (tmp_path / "use.cc").write_text(
        '#include "model_data.h"\n'
        'static_assert(kModelInputHeight == 8 && kNumClasses == 10, "shape");\n'
        "int probe() { return g_model_data[0] + (int)g_model_data_len + kInputZeroPoint"
        " + kOutputZeroPoint + (int)(kInputScale * 0) + (int)(kPixelScale * 0); }\n"
    )
    for unit in ("model_data.cc", "use.cc"):
        out = subprocess.run(
            ["c++", "-std=c++17", "-Wall", "-Werror", "-c", unit],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
    source = (tmp_path / "model_data.cc").read_text()
    assert f"g_model_data_len = {n};" in source
    body = source.split("g_model_data[] = {", 1)[1].split("};", 1)[0]
    assert bytes(int(b, 16) for b in re.findall(r"0x([0-9a-f]{2})", body)) == deployed.tflite


def test_an_unconvertible_model_raises_a_trial_error_with_the_reason():
    class Broken(torch.nn.Module):
        def forward(self, x):  # data-dependent control flow: torch.export refuses it
            if x.sum() > 0:
                return x.flatten(1)
            return -x.flatten(1)

    with pytest.raises(TrialError, match="int8 export failed"):
        tflite.export_int8(Broken(), np.ones((4, 1, 8, 8), dtype=np.float32))


def test_tflm_rejecting_a_model_is_a_trial_error_not_a_crash():
    with pytest.raises(TrialError, match="TFLM could not run the model"):
        run_tflm(b"TFL3" + b"\0" * 64)


# -- the C target (worker.c_target): generated, checked bit-exact, measured as firmware ------------


def test_every_deployment_measures_the_c_target_bit_exact_with_tflm(digits, deployed):
    c = deployed.c
    assert c is not None and deployed.c_error is None
    images = deployed.metadata["int8_eval_images"]
    assert c.images == images["val"] + images["test"] > 0  # every evaluation image compared
    # the whole model on the chip: well under the .tflite (which holds no kernels) + 2 KiB,
    # and under TFLM's arena (no interpreter bookkeeping)
    assert 0 < deployed.c_flash_bytes <= deployed.flash_bytes + 2048
    assert 0 < deployed.c_ram_bytes < deployed.ram_bytes
    assert deployed.c_ram_bytes == c.static_ram_bytes + deployed.c_stack_bytes
    assert c.static_ram_bytes >= c.program.arena_bytes
    assert deployed.instructions > 0
    m = deployed.measurements()
    assert (m["tflm_flash_bytes"], m["tflm_ram_bytes"]) == (
        deployed.flash_bytes,
        deployed.ram_bytes,
    )
    assert m["c_flash_bytes"] == c.flash_bytes and m["c_error"] is None
    meta = deployed.metadata["c"]
    assert meta["bit_exact_images"] == c.images and meta["cpu"] == "cortex-m4"


def test_8bit_images_are_scored_on_the_bytes_classify_feeds_the_model(digits, deployed):
    from sparsearch.codegen.preprocess import Preprocess
    from sparsearch.worker.deploy import raw_pixels

    inp = deployed.metadata["input"]
    pre = Preprocess((8, 8, 1), (8, 8, 1), digits.pixel_scale, inp["scale"], inp["zero_point"])
    raw = raw_pixels(digits.x_test, digits.pixel_scale)
    assert raw.max() == 16  # digits' 0..16 pixels, recovered exactly
    run = run_tflm(deployed.tflite, {"test": pre.apply(raw)})
    acc = float((run.predictions("test") == digits.y_test).mean())
    assert acc == deployed.int8_test_accuracy


def test_without_the_arm_compiler_the_c_numbers_are_null_with_the_reason(
    digits, trained, monkeypatch
):
    monkeypatch.setenv("SPARSEARCH_ARM_GCC", "/nonexistent/arm-none-eabi-gcc")
    model, x_train, x_val, x_test = trained
    got = deploy(model, ARCH, digits, x_train, x_val, x_test)
    assert got.c is None and got.c_flash_bytes is None and got.instructions is None
    assert "/nonexistent/arm-none-eabi-gcc" in got.c_error
    assert got.metadata["c"] == {"error": got.c_error}
    assert got.flash_bytes == len(got.tflite)  # the TFLM numbers are there all the same
    with pytest.raises(TrialError, match="arm-none-eabi-gcc"):
        deploy(model, ARCH, digits, x_train, x_val, x_test, target="c")


def test_a_c_deployment_reports_the_firmware_as_its_flash_and_ram(digits, trained, deployed):
    model, x_train, x_val, x_test = trained
    got = deploy(model, ARCH, digits, x_train, x_val, x_test, target="c")
    assert got.target == "c" and got.metadata["target"] == "c"
    assert (got.flash_bytes, got.ram_bytes) == (got.c_flash_bytes, got.c_ram_bytes)
    assert got.activation_bytes == got.c.program.arena_bytes
    assert (got.tflm_flash_bytes, got.tflm_ram_bytes) == (len(got.tflite), deployed.ram_bytes)
    assert got.tflite == deployed.tflite  # the same shipped model; only the accounting differs


def test_the_c_project_ships_with_every_c_deployment(deployed, tmp_path):
    files = deployed.artifacts()
    assert set(files) == {"tflite", "c_source", "c_project"}
    z = zipfile.ZipFile(io.BytesIO(files["c_project"]))
    names = set(z.namelist())
    assert {"model_project/model.c", "model_project/main.c", "model_project/README.md"} <= names
    readme = z.read("model_project/README.md").decode()
    assert f"{deployed.c_flash_bytes:,}" in readme or str(deployed.c_flash_bytes) in readme
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed (make toolchain)")
    z.extractall(tmp_path)
    run = subprocess.run(
        ["make", "-s", "run"],
        cwd=tmp_path / "model_project",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [ln.split() for ln in run.stdout.splitlines() if ln and not ln.startswith("#")]
    assert len(lines) == 8 and all(pred == host for _, pred, host, _ in lines)
