"""codegen/cost.py: the C target's cost model against the firmware it predicts, on every committed
model, and a candidate's graph (``space._c_graph.model_of``) costing what its export costs.

The firmware tests build each model with arm-none-eabi-gcc and run it on the emulator (skipped
without the compiler). Targets (issue 21): RAM (static and stack) exact, flash within 2 %,
instructions of ``invoke`` and ``classify`` within 10 %, on every file (kernels are never
specialized for one caller, so each is a fixed function the tables describe).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sparsearch.codegen import generate, passes
from sparsearch.codegen.cost import c_cost, classify_of
from sparsearch.codegen.reader import read_model
from sparsearch.space._c_graph import model_of
from sparsearch.space._shapes import layer_shapes
from sparsearch.space.spec import ArchSpec, BlockSpec

DATA = Path(__file__).parent / "data"
MODELS = sorted([*DATA.glob("*.tflite"), *(DATA / "edge").glob("*.tflite")], key=lambda p: p.name)
FLASH_REL, INSTRUCTIONS_REL = 0.02, 0.10

needs_gcc = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None,
    reason="arm-none-eabi-gcc is not installed (make toolchain installs it)",
)


def _pixel_scale(model) -> float | None:  # type: ignore[no-untyped-def]
    """One-row models take the int8 input (data stored as floats), images uint8 pixels."""
    return None if model.tensor(model.inputs[0]).shape[1] == 1 else 1 / 255


def test_static_ram_is_the_emitted_arena() -> None:
    for path in MODELS:
        tflite = path.read_bytes()
        model = read_model(tflite)
        program = generate(tflite)
        est = c_cost(model, passes.layers(model), classify=classify_of(model))
        words = max(1, -(-program.arena_bytes // 4))
        assert f"static int32_t arena[{words}];" in program.files["model.c"], path.stem
        assert est.static_ram_bytes == 4 * words
        assert est.ram_bytes == est.static_ram_bytes + est.stack_bytes


@needs_gcc
@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_cost_matches_the_firmware(path: Path) -> None:
    from sparsearch.worker.firmware import measure_firmware

    tflite = path.read_bytes()
    model = read_model(tflite)
    pixel_scale = _pixel_scale(model)
    program = generate(tflite, pixel_scale=pixel_scale)
    est = c_cost(model, passes.layers(model), classify=classify_of(model, pixel_scale=pixel_scale))
    rng = np.random.default_rng(len(path.stem))
    inputs = rng.integers(-128, 128, (2, program.input_bytes)).astype(np.int8)
    lo, hi = (0, 256) if program.classify_dtype == "uint8" else (-128, 128)
    raw = rng.integers(lo, hi, (2, program.classify_bytes)).astype(program.classify_dtype)
    fw = measure_firmware(program, inputs, raw)

    flash_rel, instructions_rel = FLASH_REL, INSTRUCTIONS_REL
    assert est.static_ram_bytes == fw.static_ram_bytes
    assert est.stack_bytes == fw.stack_bytes
    assert est.ram_bytes == fw.ram_bytes
    assert abs(est.flash_bytes - fw.flash_bytes) <= flash_rel * fw.flash_bytes, (
        est.flash_bytes,
        fw.flash_bytes,
    )
    assert abs(est.instructions - fw.instructions) <= instructions_rel * fw.instructions, (
        est.instructions,
        fw.instructions,
    )
    assert fw.classify_instructions is not None
    assert (
        abs(est.classify_instructions - fw.classify_instructions)
        <= instructions_rel * fw.classify_instructions
    ), (est.classify_instructions, fw.classify_instructions)


def _b(kind: str, kernel: int, channels: int, down: str = "none") -> BlockSpec:
    return BlockSpec(kind, kernel, channels, down)  # type: ignore[arg-type]


#: Architectures of committed exports, read back from their operators: the search's candidate
#: graph (never exported) must cost what the file costs.
ARCHS = {
    "dw_conv_pool_sum_fc_1x40": ArchSpec(
        (1, 1, 40),
        6,
        (
            _b("conv", 5, 11),
            _b("conv", 1, 36, "pool"),
            _b("dsconv", 5, 24, "stride"),
            _b("conv", 3, 4, "pool"),
        ),
        input_scale=0.25,
    ),
    "dw_conv_pool_transpose_fc_8x8": ArchSpec(
        (1, 8, 8),
        10,
        (_b("dsconv", 5, 7), _b("dsconv", 7, 11, "pool"), _b("dsconv", 3, 3)),
        input_scale=0.75,
        head_pool="flatten",
        head_units=16,
    ),
    "pad_dw_conv_mean_reshape_fc_8x8": ArchSpec(
        (1, 8, 8),
        10,
        (_b("dsconv", 5, 2, "stride"), _b("conv", 3, 1)),
        input_scale=0.75,
        head_units=22,
    ),
}


@pytest.mark.parametrize("stem", sorted(ARCHS))
def test_candidate_graph_costs_what_its_export_costs(stem: str) -> None:
    arch = ARCHS[stem]
    shipped = read_model((DATA / f"{stem}.tflite").read_bytes())
    cand = model_of(layer_shapes(arch))
    c, h, w = arch.input_shape
    source = None if h == 1 else (h, w, c)
    scale = None if h == 1 else 1 / 255
    est = c_cost(
        cand, passes.layers(cand), classify=classify_of(cand, source_hwc=source, pixel_scale=scale)
    )
    real = c_cost(
        shipped,
        passes.layers(shipped),
        classify=classify_of(shipped, source_hwc=source, pixel_scale=scale),
    )
    assert est == real
    assert est.breakdown["functions"] == real.breakdown["functions"]
