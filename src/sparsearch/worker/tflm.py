"""Run an int8 ``.tflite`` on TensorFlow Lite Micro and read what it costs: the arena (total,
head = activation buffers, tail = persistent runtime structures) and the model's outputs.

The interpreter runs in a child process (``_tflm_child``): it prints its allocations from C++
straight to a file descriptor, and a model it rejects may abort the process, which must cost a
trial, not a Ray worker. The host build has 64-bit pointers, so the tail is an upper bound of a
32-bit MCU's (docs/deployment.md says by how much).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparsearch.errors import TrialError

#: Seconds one child may run: generous, since it runs every validation and test image.
CHILD_TIMEOUT_S = 900
_ARENA = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
#: The recording allocator's tail breakdown: "'TfLiteEvalTensor data' used 432 bytes ...".
_RECORDED = re.compile(r"'([^']+)' used (\d+) bytes")


@dataclass(frozen=True)
class TflmRun:
    """What TFLM reported for one model: arena bytes, input/output details, int8 outputs."""

    arena_total: int
    arena_head: int
    arena_tail: int
    #: ``{"shape": [1, H, W, C], "dtype": "int8", "scale": s, "zero_point": z}``
    input: dict[str, Any]
    output: dict[str, Any]
    #: int8 outputs per input set, (N, classes).
    outputs: dict[str, np.ndarray]
    version: str
    #: Bytes of each tail allocation class the recording allocator reports, with alignment
    #: overhead (``{"TfLiteEvalTensor data": 432, "NodeAndRegistration struct": 448, ...}``).
    breakdown: dict[str, int] = field(default_factory=dict)

    def predictions(self, name: str) -> np.ndarray:
        """Class predictions of one input set (argmax of the int8 logits; the dequantization
        is monotonic, so it is the argmax of the float logits too)."""
        return self.outputs[name].argmax(axis=1)


def run_tflm(tflite: bytes, inputs: dict[str, np.ndarray] | None = None) -> TflmRun:
    """Load ``tflite`` in TFLM (recording allocator) and run each set of ``inputs`` (int8 NHWC
    arrays, one image per invoke). Raises TrialError with TFLM's reason when it cannot."""
    inputs = inputs or {}
    with tempfile.TemporaryDirectory(prefix="sparsearch-tflm-") as tmp:
        src, dst = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        arrays = {f"x_{k}": np.ascontiguousarray(v, dtype=np.int8) for k, v in inputs.items()}
        np.savez(src, model=np.frombuffer(tflite, dtype=np.uint8), **arrays)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "sparsearch.worker._tflm_child", str(src), str(dst)],
                capture_output=True,
                text=True,
                timeout=CHILD_TIMEOUT_S,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise TrialError(
                f"TFLM did not finish running the model within {CHILD_TIMEOUT_S} s"
            ) from e
        said = proc.stdout + proc.stderr
        if proc.returncode != 0 or not dst.exists():
            lines = [ln.strip() for ln in said.splitlines() if ln.strip()]
            reason = " | ".join(lines[-3:])[:500] or f"exit status {proc.returncode}"
            raise TrialError(
                f"TFLM could not run the model: {reason}",
                "the exported model uses something TFLite Micro does not support",
            )
        arena = {k: int(v) for k, v in _ARENA.findall(said)}
        if set(arena) != {"total", "head", "tail"}:
            raise TrialError(f"TFLM printed no arena figures (it said: {said[-300:]!r})")
        with np.load(dst) as got:
            info = json.loads(str(got["info"]))
            outputs = {k[2:]: got[k] for k in got.files if k.startswith("y_")}
    return TflmRun(
        arena_total=arena["total"],
        arena_head=arena["head"],
        arena_tail=arena["tail"],
        input=info["input"],
        output=info["output"],
        outputs=outputs,
        version=info["version"],
        breakdown={k: int(v) for k, v in _RECORDED.findall(said)},
    )
