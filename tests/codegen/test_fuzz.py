"""Hostile .tflite files against the C generator: seeded mutations of real models give a
program or the project's own ModelError, quickly and within a small memory budget."""

from __future__ import annotations

import random
import time
import tracemalloc
from pathlib import Path

from sparsearch.codegen import CProgram, ModelError, generate

DATA = Path(__file__).parent / "data"
MODELS = [p.read_bytes() for p in sorted(DATA.glob("**/*.tflite"))]
MUTATIONS = 10_000


def mutate(data: bytes, rng: random.Random) -> bytes:
    d = bytearray(data)
    kind = rng.randrange(5)
    if kind == 0:  # a few random bytes
        for _ in range(rng.randint(1, 8)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif kind == 1:  # truncated
        d = d[: rng.randrange(len(d))]
    elif kind == 2:  # a huge or sign-flipping 32-bit value at an aligned offset (offsets, sizes)
        at = rng.randrange(len(d) // 4) * 4
        value = rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x10000, 0x1000000])
        d[at : at + 4] = value.to_bytes(4, "little")
    elif kind == 3:  # one bit
        at = rng.randrange(len(d))
        d[at] ^= 1 << rng.randrange(8)
    else:  # a small shape-like value (dimensions, strides, indices)
        at = rng.randrange(len(d) // 4) * 4
        d[at : at + 4] = rng.choice([0, 1, 2, 3, 255, 65535, 65536]).to_bytes(4, "little")
    return bytes(d)


def test_ten_thousand_mutations_give_a_program_or_a_model_error():
    assert len(MODELS) >= 3
    rng = random.Random(21)
    outcomes = {"program": 0, "error": 0}
    slowest = 0.0
    for i in range(MUTATIONS):
        data = mutate(MODELS[i % len(MODELS)], rng)
        watch = i % 100 == 0
        if watch:
            tracemalloc.start()
        start = time.perf_counter()
        try:
            got = generate(data)
        except ModelError as e:
            assert e.message and e.hint, f"mutation {i}: an error without a message and a hint"
            outcomes["error"] += 1
        else:
            assert isinstance(got, CProgram)
            outcomes["program"] += 1
        took = time.perf_counter() - start
        slowest = max(slowest, took)
        assert took < 1.0, f"mutation {i} took {took:.2f} s"
        if watch:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak < 64 * 2**20, f"mutation {i} allocated {peak} B"
    # both outcomes occur: the mutations reach past the reader into the generator
    assert outcomes["program"] > 100 and outcomes["error"] > 1000, outcomes


def test_a_generated_program_from_a_mutated_model_still_compiles(tmp_path):
    """Mutations the generator accepts give C that builds (the host build's strict flags)."""
    from sparsearch.worker.c_host import HostModel

    rng = random.Random(5)
    built = 0
    for i in range(400):
        data = mutate(MODELS[i % len(MODELS)], rng)
        try:
            program = generate(data)
        except ModelError:
            continue
        with HostModel(program):  # raises TrialError if it does not build
            built += 1
        if built == 6:
            break
    assert built == 6
