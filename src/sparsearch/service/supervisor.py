"""``sparsearch serve``: the API under uvicorn, plus one supervised scheduler child process.

The scheduler runs in a child process (``python -m sparsearch scheduler``), never in the web
server's threads: fitting the optimizer's models would stall request handling. The child gets the
server's settings through ``SPARSEARCH_*`` variables, runs in its own session (a Ctrl-C at the
terminal reaches only the server, which then stops the child in order), is restarted with backoff
if it dies unexpectedly, and exits by itself if the server process disappears.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from sparsearch.service.process import SERVE_PID_ENV, freeze_startup_heap

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_env(settings: Any, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with every setting as ``SPARSEARCH_*``,
    so a child process builds the same Settings (command-line overrides included)."""
    env = dict(os.environ if base is None else base)
    for name, value in settings.model_dump().items():
        key = f"SPARSEARCH_{name.upper()}"
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


class SchedulerProcess:
    """A ``sparsearch scheduler`` child process, restarted if it dies while it should run.

    At most ``max_restarts`` restarts within ``window_seconds`` (waiting 1, 2, 4 ... s before
    each); past that it stays down and the failure is logged (``/healthz`` then reports no
    scheduler). :meth:`stop` sends SIGTERM, waits ``stop_timeout`` seconds, then kills.
    """

    def __init__(
        self,
        env: dict[str, str],
        *,
        args: Sequence[str] = (),
        max_restarts: int = 3,
        window_seconds: float = 60.0,
        stop_timeout: float = 30.0,
    ) -> None:
        self._cmd = [
            sys.executable,
            "-m",
            "sparsearch",
            "scheduler",
            "--parent-pid",
            str(os.getpid()),
            *args,
        ]
        self._env = env
        self._max_restarts = max_restarts
        self._window = window_seconds
        self._stop_timeout = stop_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.restarts: list[float] = []  # monotonic times of restarts

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        with self._lock:
            return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="scheduler-watch", daemon=True)
        self._watcher.start()

    def stop(self) -> int | None:
        """Stop the child (SIGTERM, then SIGKILL after the timeout); returns its exit code."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        with self._lock:
            proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self._stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "scheduler pid %d did not stop in %.0f s; killing it",
                    proc.pid,
                    self._stop_timeout,
                )
                proc.kill()
                proc.wait()
        log.info("scheduler pid %d exited with %s", proc.pid, proc.returncode)
        return proc.returncode

    def _spawn(self) -> None:
        # Own session: a terminal's Ctrl-C reaches the server only, which stops us in order.
        self._proc = subprocess.Popen(self._cmd, env=self._env, start_new_session=True)
        log.info("scheduler started (pid %d)", self._proc.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            with self._lock:
                proc = self._proc
            code = proc.poll() if proc is not None else None
            if code is None:
                continue
            now = time.monotonic()
            self.restarts = [t for t in self.restarts if now - t < self._window]
            if len(self.restarts) >= self._max_restarts:
                log.error(
                    "scheduler exited with %s; %d restarts in the last %.0f s, giving up "
                    "(restart `sparsearch serve`, or run `sparsearch scheduler` separately)",
                    code,
                    len(self.restarts),
                    self._window,
                )
                return
            delay = 2.0 ** len(self.restarts)
            log.warning("scheduler exited unexpectedly with %s; restarting in %.0f s", code, delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                self.restarts.append(time.monotonic())
                self._spawn()


def bind(host: str, port: int) -> socket.socket:
    """A listening-ready socket on ``host:port`` (port 0 picks a free one); OSError if taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP, and without it every response waited ~40 ms (Nagle + delayed ACK; measured).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except BaseException:
        sock.close()
        raise
    return sock


def run_server(
    settings: Any,
    sock: socket.socket,
    *,
    scheduler: bool = True,
    on_started: Callable[[int | None], None] | None = None,
) -> None:
    """Serve the API on ``sock`` until SIGINT/SIGTERM, with a supervised scheduler child unless
    ``scheduler`` is False; the child is stopped (SIGTERM, wait, kill) after the server exits.
    ``on_started`` gets the child's pid (None without one) once it is spawned.

    ``settings.api_workers`` > 1 serves from that many worker processes sharing ``sock``
    (uvicorn's supervisor restarts one that dies); each builds its app from the settings."""
    runner = _WorkerPool(settings, sock) if settings.api_workers > 1 else _OneServer(settings, sock)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn installs its handlers and after it restores ours (it re-raises the
        # signal it caught): ask the server to exit instead of dying with the child running.
        runner.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    child = SchedulerProcess(settings_env(settings)) if scheduler else None
    try:
        if child is not None:
            child.start()
        if on_started is not None:
            on_started(child.pid if child is not None else None)
        runner.run()
    finally:
        if child is not None:
            child.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _log_config(settings: Any) -> dict[str, Any] | None:
    import uvicorn

    # JSON logs: uvicorn's lines go through the root (JSON) handler instead of its own text one.
    return None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG


class _OneServer:
    """The API in this process."""

    def __init__(self, settings: Any, sock: socket.socket) -> None:
        import uvicorn

        from sparsearch.api.app import create_app

        config = uvicorn.Config(
            create_app(settings), log_level="warning", log_config=_log_config(settings)
        )
        self._server = uvicorn.Server(config)
        self._sock = sock

    def stop(self) -> None:
        self._server.should_exit = True

    def run(self) -> None:
        freeze_startup_heap()
        if not self._server.should_exit:
            self._server.run(sockets=[self._sock])


class _WorkerPool:
    """``api_workers`` uvicorn worker processes on one socket, under uvicorn's supervisor.

    Workers are spawned (not forked), so they get the settings as ``SPARSEARCH_*`` variables
    and build the app with :func:`sparsearch.service.asgi.worker_app`. Their request latency
    histograms go to files in a private directory (prometheus_client's multiprocess mode),
    so ``/metrics``, answered by any one worker, sums all of them."""

    def __init__(self, settings: Any, sock: socket.socket) -> None:
        self._settings = settings
        self._sock = sock
        self._exit = threading.Event()
        self._supervisor: Any = None

    def stop(self) -> None:
        self._exit.set()
        if self._supervisor is not None:
            self._supervisor.should_exit.set()

    def run(self) -> None:
        import uvicorn
        from uvicorn.supervisors.multiprocess import SIGNALS, Multiprocess

        from sparsearch.api.metrics import MULTIPROCESS_DIR_ENV

        metrics_dir = tempfile.mkdtemp(prefix="sparsearch-metrics-")
        saved_env = dict(os.environ)
        saved_signals = {sig: signal.getsignal(sig) for sig in SIGNALS}
        try:
            os.environ.clear()
            os.environ.update(settings_env(self._settings, base=saved_env))
            os.environ[MULTIPROCESS_DIR_ENV] = metrics_dir
            os.environ[SERVE_PID_ENV] = str(os.getpid())
            config = uvicorn.Config(
                "sparsearch.service.asgi:worker_app",
                factory=True,
                workers=self._settings.api_workers,
                log_level="warning",
                log_config=_log_config(self._settings),
            )
            self._supervisor = Multiprocess(config, sockets=[self._sock])
            # uvicorn's supervisor queues SIGINT/SIGTERM and acts on them within 0.5 s; a
            # signal that arrived while it was being built was recorded in ``_exit``.
            if self._exit.is_set():
                return
            self._supervisor.run()
        finally:
            os.environ.clear()
            os.environ.update(saved_env)
            for sig, handler in saved_signals.items():
                if handler is not None:
                    signal.signal(sig, handler)
            shutil.rmtree(metrics_dir, ignore_errors=True)
