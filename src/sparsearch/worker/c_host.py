"""Run a generated C model on this machine (the host build): its int8 outputs for many inputs,
to compare with TFLM bit for bit and to score int8 accuracy without an emulator.

The sources are built with the host's C compiler (``cc``, or ``$CC``) into a small program that
reads samples on stdin and writes outputs on stdout, and run as a child process: a fault in
generated code costs the trial, never the worker. ``-Wall -Wextra -Werror`` holds the generated
C to the standard its readers expect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from sparsearch.codegen import CProgram
from sparsearch.errors import TrialError

#: Seconds the host program may run over all samples.
RUN_TIMEOUT_S = 300
BUILD_TIMEOUT_S = 120
_FLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror"]

_RUNNER = r"""
#include <stdio.h>
#include <string.h>
/* The model's own translation unit, so the runner can call its static preprocess(). */
#include "{source}"

/* Reads a mode byte, then samples until EOF; writes per sample:
 * 'i' (invoke an int8 input): the outputs;
 * 'c' (classify a raw sample): the class (1 byte), then the outputs;
 * 'p' (preprocess a raw sample): the int8 input classify would invoke on. */
int main(void)
{{
    static uint8_t raw[{raw_bytes} > {in_bytes} ? {raw_bytes} : {in_bytes}];
    static int8_t pre[{in_bytes}];
    const int mode = getchar();
    const size_t n_in = mode == 'i' ? {in_bytes} : {raw_bytes};
    while (fread(raw, 1, n_in, stdin) == n_in) {{
        if (mode == 'p') {{
            preprocess(({raw_type} *)raw, pre);
            fwrite(pre, 1, sizeof pre, stdout);
            continue;
        }}
        if (mode == 'c') {{
            fputc({p}_classify(({raw_type} *)raw), stdout);
        }} else {{
            memcpy({p}_input(), raw, {in_bytes});
            {p}_invoke();
        }}
        fwrite({p}_output(), 1, {out_bytes}, stdout);
    }}
    return 0;
}}
"""


def host_cc() -> str:
    cc = os.environ.get("CC") or "cc"
    path = shutil.which(cc)
    if path is None:
        raise TrialError(
            f"no C compiler {cc!r} on this machine for the host build of the C model",
            "install gcc (Debian package gcc) or set CC",
        )
    return path


class HostModel:
    """A built host program of one CProgram; ``close()`` (or ``with``) removes it."""

    def __init__(self, program: CProgram) -> None:
        self.program = program
        self._dir = Path(tempfile.mkdtemp(prefix="sparsearch-c-host-"))
        for name, text in program.files.items():
            (self._dir / name).write_text(text)
        p = program.prefix
        raw_type = "int8_t" if program.classify_dtype == "int8" else "uint8_t"
        (self._dir / "runner.c").write_text(
            _RUNNER.format(
                source=program.source,
                p=p,
                raw_bytes=program.classify_bytes,
                in_bytes=program.input_bytes,
                out_bytes=program.output_bytes,
                raw_type=raw_type,
            )
        )
        self.exe = self._dir / "runner"
        cmd = [host_cc(), *_FLAGS, "-o", str(self.exe), str(self._dir / "runner.c")]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
            )
        except subprocess.TimeoutExpired as e:
            self.close()
            raise TrialError(f"the host build of the C model took over {BUILD_TIMEOUT_S} s") from e
        if proc.returncode != 0:
            self.close()
            first = " | ".join(proc.stderr.strip().splitlines()[:4])[:600]
            raise TrialError(
                f"the generated C model does not build on the host: {first}",
                "this is a bug in sparsearch's C generator; use --target tflm",
            )

    def __enter__(self) -> HostModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def _run(self, mode: bytes, data: bytes) -> bytes:
        try:
            proc = subprocess.run(
                [str(self.exe)],
                input=mode + data,
                capture_output=True,
                timeout=RUN_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as e:
            raise TrialError(f"the host build of the C model ran over {RUN_TIMEOUT_S} s") from e
        if proc.returncode != 0:
            raise TrialError(
                f"the host build of the C model failed (exit status {proc.returncode})",
                "this is a bug in sparsearch's C generator; use --target tflm",
            )
        return proc.stdout

    def invoke(self, inputs: np.ndarray) -> np.ndarray:
        """(N, ...) int8 model inputs -> (N, outputs) int8."""
        x = np.ascontiguousarray(inputs, dtype=np.int8).reshape(len(inputs), -1)
        if x.shape[1] != self.program.input_bytes:
            raise TrialError(
                f"inputs of {x.shape[1]} bytes for a model taking {self.program.input_bytes}"
            )
        out = self._run(b"i", x.tobytes())
        return np.frombuffer(out, dtype=np.int8).reshape(len(x), self.program.output_bytes)

    def classify(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, ...) raw samples -> (classes (N,), outputs (N, outputs))."""
        dtype = np.int8 if self.program.classify_dtype == "int8" else np.uint8
        x = np.ascontiguousarray(raw, dtype=dtype).reshape(len(raw), -1)
        out = self._run(b"c", x.tobytes())
        rec = np.frombuffer(out, dtype=np.uint8).reshape(len(x), 1 + self.program.output_bytes)
        return rec[:, 0].astype(np.int64), rec[:, 1:].view(np.int8)

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """(N, ...) raw samples -> (N, input bytes) int8: what ``classify`` feeds the model."""
        dtype = np.int8 if self.program.classify_dtype == "int8" else np.uint8
        x = np.ascontiguousarray(raw, dtype=dtype).reshape(len(raw), -1)
        out = self._run(b"p", x.tobytes())
        return np.frombuffer(out, dtype=np.int8).reshape(len(x), self.program.input_bytes)
