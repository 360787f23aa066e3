"""Shared helpers of the service tests: small digits jobs, settings, polling, subprocess envs,
scheduler processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparsearch.config import Settings
from sparsearch.jobconfig import JobConfig

PYTHON = sys.executable
FLASH, RAM = 24 * 1024, 6 * 1024


def queue_job(storage: Any, **overrides: Any) -> Any:
    """A queued digits job, small enough to train in seconds."""
    args: dict[str, Any] = dict(
        dataset="digits", flash_bytes=FLASH, ram_bytes=RAM, trials=2, parallel=2, epochs=1, seed=0
    )
    args.update(overrides)
    cfg = JobConfig.create(**args)
    return storage.create_job(dataset=cfg.dataset, config=cfg.to_dict())


def settings_for(tmp_path: Path, ray_address: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        artifact_dir=tmp_path / "artifacts",
        ray_address=ray_address,
        heartbeat_seconds=0.2,
        scheduler_poll_seconds=0.1,
    )
    values.update(overrides)
    return Settings(**values)


def service_env(settings: Settings) -> dict[str, str]:
    """This process's environment minus its SPARSEARCH_* variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARSEARCH_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            env[f"SPARSEARCH_{name.upper()}"] = str(value)
    return env


#: Every wait's timeout is stretched by this: a wait is an upper bound, and real trials (an int8
#: export, TFLM, the C target's builds) take several times longer on a loaded 2-core machine.
TIMEOUT_FACTOR = 2.5


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError after ``timeout``
    (times ``TIMEOUT_FACTOR``)."""
    timeout *= TIMEOUT_FACTOR
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def pid_gone(pid: int) -> bool:
    """True once ``pid`` no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_if_running(proc: subprocess.Popen) -> None:
    """For ``finally:`` blocks: a process a failed test left running is killed and reaped."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def start_scheduler(settings: Settings, log_path: Path) -> subprocess.Popen:
    """A ``sparsearch scheduler`` logging to ``log_path``, in its own session (so its process
    group can be killed as a whole, Ray workers included)."""
    with open(log_path, "a") as log:
        return subprocess.Popen(
            [PYTHON, "-m", "sparsearch", "scheduler", "--log-level", "info"],
            env=service_env(settings),
            stdout=subprocess.DEVNULL,
            stderr=log,
            start_new_session=True,
        )


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``'s process group (see :func:`start_scheduler`) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
