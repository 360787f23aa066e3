"""worker/firmware.py: a hand-written model that follows the generated-C API, built as Cortex-M4
firmware, measured on unicorn and run on QEMU."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from sparsearch.codegen.program import CProgram
from sparsearch.errors import TrialError
from sparsearch.worker import firmware
from sparsearch.worker._emulate import Emulator

pytestmark = pytest.mark.skipif(
    shutil.which("arm-none-eabi-gcc") is None,
    reason="arm-none-eabi-gcc is not installed (make toolchain installs it)",
)

IN, OUT = 16, 4
WEIGHTS = ((np.arange(OUT * IN).reshape(OUT, IN) * 53 + 7) % 256).astype(np.uint8).view(np.int8)

HEADER = """\
#ifndef TINY_H
#define TINY_H
#include <stdint.h>
#define TINY_INPUT_BYTES 16
#define TINY_OUTPUT_BYTES 4
#define TINY_ARENA_BYTES {arena}
int8_t *tiny_input(void);
void tiny_invoke(void);
const int8_t *tiny_output(void);
int tiny_classify(const {raw_type} *raw);
#endif
"""

SOURCE = """\
#include "tiny.h"

static int8_t arena[TINY_ARENA_BYTES]; /* input at 0, output at TINY_INPUT_BYTES */
static const int8_t weights[TINY_OUTPUT_BYTES][TINY_INPUT_BYTES] = {{{weights}}};
{extra_decl}
int8_t *tiny_input(void) {{ return arena; }}

const int8_t *tiny_output(void) {{ return arena + TINY_INPUT_BYTES; }}

void tiny_invoke(void)
{{
    {stack_decl}
    for (int round = 0; round < {rounds}; round++) {{
        for (int j = 0; j < TINY_OUTPUT_BYTES; j++) {{
            int32_t acc = 0;
            for (int i = 0; i < TINY_INPUT_BYTES; i++) {{
                acc += arena[i] * weights[j][i];
            }}
            acc >>= 7;
            if (acc > 127) {{
                acc = 127;
            }}
            if (acc < -128) {{
                acc = -128;
            }}
            arena[TINY_INPUT_BYTES + j] = (int8_t)acc;
        }}
    }}
    {body}
}}

int tiny_classify(const {raw_type} *raw)
{{
    for (int i = 0; i < TINY_INPUT_BYTES; i++) {{
        arena[i] = (int8_t)(raw[i] - {raw_zero});
    }}
    tiny_invoke();
    int best = 0;
    for (int j = 1; j < TINY_OUTPUT_BYTES; j++) {{
        if (arena[TINY_INPUT_BYTES + j] > arena[TINY_INPUT_BYTES + best]) {{
            best = j;
        }}
    }}
    return best;
}}
"""


def tiny(
    arena: int = 64,
    rounds: int = 1,
    extra_table: int = 0,
    stack_array: int = 0,
    body: str = "",
    broken: bool = False,
    classify_dtype: str = "uint8",
) -> CProgram:
    """The test model: out[j] = saturate(sum_i in[i] * w[j][i] >> 7), ``rounds`` times over;
    ``extra_table`` bytes of constants it reads, a volatile local array of ``stack_array``
    bytes, ``body`` appended to invoke, ``broken`` a syntax error. ``classify`` takes uint8
    pixels (minus 128) or, for ``classify_dtype="int8"``, the int8 input itself."""
    raw_type = f"{classify_dtype}_t"
    extra_decl = stack_decl = ""
    if extra_table:
        values = ", ".join(str(i % 127) for i in range(extra_table))
        extra_decl = f"static const int8_t extra[{extra_table}] = {{{values}}};\n"
        body += f"\n    arena[TINY_INPUT_BYTES] ^= extra[(uint8_t)arena[0] % {extra_table}];"
    if stack_array:
        stack_decl = (
            f"volatile int8_t scratch[{stack_array}];\n"
            f"    for (int i = 0; i < {stack_array}; i++) {{ scratch[i] = arena[i % 16]; }}\n"
            "    (void)scratch[0];"
        )
    source = SOURCE.format(
        weights=", ".join("{" + ", ".join(str(int(w)) for w in row) + "}" for row in WEIGHTS),
        extra_decl=extra_decl,
        stack_decl=stack_decl,
        rounds=rounds,
        body=body,
        raw_type=raw_type,
        raw_zero=128 if classify_dtype == "uint8" else 0,
    )
    if broken:
        source += "int oops(void) { return 1 }\n"
    return CProgram(
        files={"tiny.h": HEADER.format(arena=arena, raw_type=raw_type), "tiny.c": source},
        prefix="tiny",
        input_bytes=IN,
        output_bytes=OUT,
        classify_bytes=IN,
        classify_dtype=classify_dtype,
        arena_bytes=arena,
    )


def reference(inputs: np.ndarray) -> np.ndarray:
    """The model's formula in numpy (one round; more rounds recompute the same)."""
    acc = inputs.astype(np.int32) @ WEIGHTS.astype(np.int32).T
    return np.clip(acc >> 7, -128, 127).astype(np.int8)


@pytest.fixture(scope="module")
def rng_inputs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    inputs = rng.integers(-128, 128, (6, IN), dtype=np.int8)
    raw = rng.integers(0, 256, (6, IN), dtype=np.uint8)
    return inputs, raw


@pytest.fixture(scope="module")
def base(rng_inputs, tmp_path_factory) -> firmware.Firmware:
    inputs, raw = rng_inputs
    workdir = tmp_path_factory.mktemp("tiny")
    return firmware.measure_firmware(tiny(), inputs, raw, workdir=workdir)


def test_outputs_and_classes_match_the_formula(base, rng_inputs) -> None:
    inputs, raw = rng_inputs
    np.testing.assert_array_equal(base.outputs, reference(inputs))
    quantized = (raw.astype(np.int16) - 128).astype(np.int8)
    np.testing.assert_array_equal(base.classes, reference(quantized).argmax(axis=1))
    assert base.flash_bytes > 0 and base.empty_image_flash_bytes > 0
    assert base.static_ram_bytes >= 64
    assert base.stack_bytes > 0 and base.ram_bytes == base.static_ram_bytes + base.stack_bytes
    assert 0 < base.instructions < base.classify_instructions
    assert base.compiler.startswith("arm-none-eabi-gcc")
    assert base.elf is not None and base.elf.is_file()
    assert ".text" in base.sections


def test_classify_of_int8_samples(rng_inputs) -> None:
    """Data stored as floats: P_classify takes the int8 input itself (const int8_t *)."""
    inputs, _ = rng_inputs
    fw = firmware.measure_firmware(tiny(classify_dtype="int8"), inputs[:2], inputs)
    np.testing.assert_array_equal(fw.classes, reference(inputs).argmax(axis=1))


def test_sizes_follow_the_program(base, rng_inputs) -> None:
    inputs, _ = rng_inputs
    bigger_table = firmware.measure_firmware(tiny(extra_table=1000), inputs[:1])
    # the table plus the few instructions that read it
    assert 1000 <= bigger_table.flash_bytes - base.flash_bytes <= 1032
    bigger_arena = firmware.measure_firmware(tiny(arena=164), inputs[:1])
    assert bigger_arena.static_ram_bytes - base.static_ram_bytes == 100
    assert bigger_arena.flash_bytes == base.flash_bytes
    assert bigger_arena.empty_image_flash_bytes == base.empty_image_flash_bytes


def test_instructions_and_stack_follow_the_program(base, rng_inputs) -> None:
    inputs, raw = rng_inputs
    again = firmware.measure_firmware(tiny(), inputs, raw)
    assert again.instructions == base.instructions
    assert again.stack_bytes == base.stack_bytes
    more_rounds = firmware.measure_firmware(tiny(rounds=3), inputs)
    assert more_rounds.instructions > 2 * base.instructions
    np.testing.assert_array_equal(more_rounds.outputs, base.outputs)
    deep = firmware.measure_firmware(tiny(stack_array=256), inputs[:2], raw[:2])
    assert deep.stack_bytes >= base.stack_bytes + 256


@pytest.mark.parametrize("cpu", ["cortex-m4", "cortex-m0plus"])
def test_block_counting_equals_per_instruction_hook(cpu: str, rng_inputs, tmp_path: Path) -> None:
    """The fast count (per basic block) against unicorn's per-instruction hook; Cortex-M4 code
    has IT blocks (their skipped instructions are added from the IT masks), ARMv6-M has none:
    there the plain per-instruction count must agree."""
    inputs, raw = rng_inputs
    gcc = firmware.find_arm_gcc()
    _, elf = firmware.build_images(tiny(rounds=2), tmp_path, gcc, cpu)
    counts = {}
    for count_with in ("block", "code"):
        emu = Emulator(
            elf,
            cpu,
            max_instructions=10**8,
            call_timeout_s=10,
            count_with=count_with,
            scratch_bytes=IN,
        )
        at = emu.call("tiny_input").result
        runs = []
        for x, r in zip(inputs, raw, strict=True):
            emu.write(at, x.tobytes())
            runs.append(emu.call("tiny_invoke"))
            emu.write(emu.scratch, r.tobytes())
            runs.append(emu.call("tiny_classify", emu.scratch))
        counts[count_with] = runs
    assert counts["block"] == counts["code"]
    if cpu == "cortex-m4":
        assert b"\xbf" in elf.read_bytes()  # sanity: some IT instructions to count (0xBFxx)


def test_the_model_image_runs_on_qemu(base) -> None:
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm is not installed (make toolchain installs it)")
    out = reference(firmware.qemu_input_pattern(IN)[None])[0]
    status, stdout = firmware.run_in_qemu(base.elf, timeout_s=20)
    assert stdout.strip() == "outputs: " + " ".join(str(int(v)) for v in out)
    assert status == int(out.argmax())
    status, stdout = firmware.run_in_qemu(base.elf.parent / "empty.elf", timeout_s=20)
    assert (status, stdout.strip()) == (0, "empty image: 0")


def test_missing_compiler_fails_fast(rng_inputs, monkeypatch) -> None:
    inputs, _ = rng_inputs
    start = time.perf_counter()
    with pytest.raises(TrialError) as err:
        firmware.measure_firmware(tiny(), inputs, gcc="/nonexistent/arm-none-eabi-gcc")
    assert time.perf_counter() - start < 0.5
    assert "/nonexistent/arm-none-eabi-gcc" in err.value.message
    assert "gcc-arm-none-eabi" in err.value.hint and "SPARSEARCH_ARM_GCC" in err.value.hint
    monkeypatch.setenv("SPARSEARCH_ARM_GCC", "/nonexistent/gcc-from-env")
    with pytest.raises(TrialError, match="gcc-from-env"):
        firmware.find_arm_gcc()


def test_a_build_error_carries_the_compilers_message(rng_inputs) -> None:
    inputs, _ = rng_inputs
    with pytest.raises(TrialError) as err:
        firmware.measure_firmware(tiny(broken=True), inputs)
    assert "tiny.c" in err.value.message and "error" in err.value.message
    assert "expected ';'" in err.value.message
    assert err.value.hint


def test_runaway_and_faulting_programs_fail_the_trial(rng_inputs) -> None:
    inputs, _ = rng_inputs
    forever = tiny(body="for (volatile int k = 0; k >= 0; k = 0) { }")
    start = time.perf_counter()
    with pytest.raises(TrialError, match="tiny_invoke did not return within 1 s"):
        firmware.measure_firmware(forever, inputs[:1], call_timeout_s=1.0)
    assert time.perf_counter() - start < 5
    with pytest.raises(TrialError, match="tiny_invoke ran past 10,000 instructions"):
        firmware.measure_firmware(forever, inputs[:1], max_instructions=10_000)
    wild = tiny(body="arena[0] = *(volatile int8_t *)0x60000000u;")
    with pytest.raises(
        TrialError, match=r"tiny_invoke faulted .*read of unmapped memory at 0x60000000"
    ):
        firmware.measure_firmware(wild, inputs[:1])
