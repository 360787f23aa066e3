"""What every benchmark script records the same way: its command line, the machine, the code
measured, and the small statistics helpers. Imported by the scripts as ``_common`` (they run as
``python benchmarks/<name>.py``, so this folder is on ``sys.path``)."""

from __future__ import annotations

import contextlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any


def command_line() -> str:
    """The exact command that ran (the interpreter relative to the working folder)."""
    exe = sys.executable
    with contextlib.suppress(ValueError):
        rel = os.path.relpath(exe)
        if not rel.startswith(".."):
            exe = rel
    return shlex.join([exe, *sys.argv])


def machine_info() -> dict[str, Any]:
    """CPUs, versions (torch, BoTorch, Ray), CPU model, load average at start, code version."""
    import torch

    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "node": platform.node(),
        "torch": torch.__version__,
        "code": code_version(),
    }
    for name in ("botorch", "ray"):
        with contextlib.suppress(ImportError):
            info[name] = __import__(name).__version__
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    info["load_average_at_start"] = load_average()
    return info


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (the machine may be shared: other work counts)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def code_version() -> dict[str, Any]:
    """The commit measured, and whether src/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        out["src_uncommitted"] = sorted(line[3:] for line in status.splitlines())
    return out


def quantile(values: list[float], q: float) -> float | None:
    """Linear-interpolated quantile (numpy's default), None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rnd(x: float | None, digits: int = 4) -> float | None:
    return None if x is None else round(float(x), digits)
