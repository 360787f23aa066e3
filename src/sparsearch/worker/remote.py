"""The thin Ray layer over ``run_trial``: start/attach Ray, submit trials, collect outcomes.

Only this module (and the driver that calls it) knows about Ray; ``run_trial`` stays pure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sparsearch.errors import ClusterError, SparsearchError, ToolchainError

log = logging.getLogger(__name__)

TrialFn = Callable[..., Any]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TrialFailure:
    """A trial that raised inside the worker: the reason is stored, the search goes on."""

    reason: str
    detail: str
    worker_pid: int
    worker_node: str = ""
    #: The worker lacks a tool the target needs (``ToolchainError``): the job stops.
    toolchain: bool = False


def init_ray(address: str = "", *, num_cpus: int | None = None, object_store_mb: int = 200) -> bool:
    """Connect to ``address`` or start a private local Ray. Returns True if this call started it
    (so the caller knows to shut it down).

    An address is checked first, within seconds (:func:`check_cluster`): an unreachable
    cluster, or one that refuses this process (token authentication), is a :class:`ClusterError`
    naming what to set, instead of Ray's minutes of retries. Ray's own log records go to this
    module's ``ray`` logger, at DEBUG below errors (:func:`quiet_ray_logging`), so a CLI's stderr
    stays its own.
    """
    import ray

    if ray.is_initialized():
        return False
    quiet_ray_logging()
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        # True: Ray then only sets the "ray" logger's level (False would clear its handlers,
        # quiet_ray_logging's included, and leave it propagating to the root logger).
        "configure_logging": True,
        "logging_level": logging.INFO,
    }
    with _keeping_signal_handlers():
        _init(ray, address, num_cpus, object_store_mb, kwargs)
    return True


@contextlib.contextmanager
def _keeping_signal_handlers() -> Iterator[None]:
    """ray.init installs its own SIGTERM handling (a Python ``sys.exit`` and, in its C++ core,
    a crash-dump handler that prints ``*** SIGTERM received … PC: @``): the process that calls
    it decides what SIGTERM and SIGINT mean, so their handlers are put back afterwards."""
    names = ("SIGTERM", "SIGINT")
    saved = {n: signal.getsignal(getattr(signal, n)) for n in names}
    try:
        yield
    finally:
        for name, handler in saved.items():
            if handler is None:  # installed from C, not Python: nothing to put back
                continue
            with contextlib.suppress(ValueError):  # not the main thread: nothing to restore
                signal.signal(getattr(signal, name), handler)


def _init(ray: Any, address: str, num_cpus: int | None, store_mb: int, kwargs: dict) -> None:
    if address:
        check_cluster(address)
        try:
            ray.init(address=address, **kwargs)
        except Exception as e:  # ConnectionError, RuntimeError, AuthenticationError, ...
            _ray_log.debug("ray.init(address=%r) failed", address, exc_info=True)
            raise ClusterError(
                f"cannot connect to the Ray cluster at {address} ({ADDRESS_SETTING}): "
                f"{_last_line(e)}",
                f"this machine must run a node of the cluster (`ray start --address={address} "
                f"--num-cpus=0`) with the cluster's {AUTH_MODE_VARIABLE} and {TOKEN_VARIABLE}; "
                "`sparsearch --debug` shows Ray's own error",
            ) from None
    else:
        ray.init(num_cpus=num_cpus, object_store_memory=store_mb * 2**20, **kwargs)


# -- checking a cluster before ray.init --------------------------------------------------------

#: The setting that names the cluster, and Ray's own variables for token authentication
#: (read by Ray's C++ core in every Ray process: the token itself, or a file holding it).
ADDRESS_SETTING = "SPARSEARCH_RAY_ADDRESS"
AUTH_MODE_VARIABLE = "RAY_AUTH_MODE"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"
TOKEN_PATH_VARIABLE = "RAY_AUTH_TOKEN_PATH"
#: Seconds for the TCP connection to the cluster's GCS, and for the whole GCS probe.
CONNECT_TIMEOUT_S = 3.0
PROBE_TIMEOUT_S = 15.0

# Run in a child process: the GCS client logs from C++ straight to file descriptor 2 and may
# wait half a minute on a port that is not a GCS; a child's output is captured and it can be
# timed out. Prints one JSON line: {"ok": true} or {"ok": false, "kind": ..., "message": ...}.
_PROBE = """
import json, sys
out = {"ok": False, "kind": "unknown", "message": ""}
try:
    from ray._private.authentication.authentication_token_setup import (
        ensure_token_if_auth_enabled,
    )
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError
    try:
        ensure_token_if_auth_enabled(None, create_token_if_missing=False)
    except AuthenticationError as e:
        out = {"ok": False, "kind": "no_token", "message": e.message}
    else:
        try:
            GcsClient(address=sys.argv[1])
            out = {"ok": True}
        except AuthenticationError as e:
            out = {"ok": False, "kind": "refused", "message": e.message}
        except Exception as e:
            out = {"ok": False, "kind": "gcs", "message": f"{type(e).__name__}: {e}"}
except Exception as e:
    out["message"] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def check_cluster(address: str) -> None:
    """Raise :class:`ClusterError` unless ``address`` (``host:port``) is a Ray cluster this
    process may join: a TCP connection first (seconds), then Ray's GCS client in a child
    process (token and auth mode). Addresses of other forms (``auto``, ``ray://``) are left
    to Ray."""
    host, port = _host_port(address)
    if host is None:
        return
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as e:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({ADDRESS_SETTING}): {_os_reason(e)}",
            f"start the cluster (`ray start --head --port={port}`) or set {ADDRESS_SETTING} to "
            "its head's host:port; leave it empty to start a private local Ray",
        ) from None
    outcome = _probe(address)
    if outcome.get("ok"):
        _check_local_node(address)
        return
    kind, detail = outcome.get("kind"), str(outcome.get("message", ""))
    mode = os.environ.get(AUTH_MODE_VARIABLE, "").strip()
    token_hint = (
        f"the cluster's token in {TOKEN_VARIABLE} (or in a file named by {TOKEN_PATH_VARIABLE}; "
        "default ~/.ray/auth_token), the one its nodes were started with (`ray get-auth-token` "
        "on the head prints it)"
    )
    if kind == "no_token":
        raise ClusterError(
            f"{AUTH_MODE_VARIABLE}=token but no Ray authentication token was found, so the Ray "
            f"cluster at {address} ({ADDRESS_SETTING}) cannot be joined",
            f"set {token_hint}",
        )
    if kind == "refused" and mode.lower() != "token":
        raise ClusterError(
            f"the Ray cluster at {address} ({ADDRESS_SETTING}) refused this process: it uses "
            f"token authentication and {AUTH_MODE_VARIABLE} is "
            f"{repr(mode) if mode else 'not set'}",
            f"set {AUTH_MODE_VARIABLE}=token and {token_hint}",
        )
    if kind == "refused":
        raise ClusterError(
            f"the Ray cluster at {address} ({ADDRESS_SETTING}) refused this process's "
            "authentication token",
            f"set {token_hint}",
        )
    if kind == "timeout":
        raise ClusterError(
            f"no Ray cluster answered at {address} ({ADDRESS_SETTING}) within "
            f"{PROBE_TIMEOUT_S:.0f} s: the port is open, but not a Ray head's",
            f"set {ADDRESS_SETTING} to the address the head was started with (`ray start --head "
            "--port=...`)",
        )
    if kind == "gcs":
        raise ClusterError(
            f"the Ray cluster at {address} ({ADDRESS_SETTING}) did not answer: {detail}",
            "check that the Ray head is up (`ray status --address=...`) and try again",
        )
    # The probe itself could not run (say, a Ray whose internals moved): let ray.init decide.
    _ray_log.debug("cluster probe inconclusive: %s", detail)


def _check_local_node(address: str) -> None:
    """A driver connects through a Ray node on its own machine; without one ray.init would wait
    a minute before saying so."""
    try:
        from ray._private.services import find_node_ids  # the raylets this process can see

        local = find_node_ids()
    except Exception:  # noqa: BLE001 - Ray internals moved: ray.init will tell
        _ray_log.debug("cannot list local Ray nodes", exc_info=True)
        return
    if not local:
        raise ClusterError(
            f"this machine runs no node of the Ray cluster at {address} ({ADDRESS_SETTING}): a "
            "Ray driver connects through a node on its own machine",
            f"run `ray start --address={address} --num-cpus=0` here first (with the cluster's "
            f"{AUTH_MODE_VARIABLE} and {TOKEN_VARIABLE}; the Docker image's entry point does "
            f"this when {ADDRESS_SETTING} is set)",
        )


def _probe(address: str) -> dict[str, Any]:
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE, address],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "kind": "timeout"}
    if proc.stderr.strip():
        _ray_log.debug("cluster probe: %s", proc.stderr.strip())
    lines = proc.stdout.strip().splitlines()
    try:
        outcome = json.loads(lines[-1]) if lines else None
    except ValueError:
        outcome = None
    if not isinstance(outcome, dict):
        return {"ok": False, "kind": "unknown", "message": f"exit status {proc.returncode}"}
    return outcome


def _host_port(address: str) -> tuple[str | None, int]:
    if "://" in address or address in ("auto", "local"):
        return None, 0
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ClusterError(
            f"{ADDRESS_SETTING}={address!r} is not a Ray address",
            "use host:port of the Ray head's GCS (e.g. 127.0.0.1:6379), or leave it empty to "
            "start a private local Ray",
        )
    return host.strip("[]"), int(port)


def _os_reason(e: OSError) -> str:
    if isinstance(e, socket.gaierror):
        return f"unknown host ({e.strerror or e})"
    if isinstance(e, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT_S:.0f} s"
    return (e.strerror or str(e) or type(e).__name__).lower()


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


# -- Ray's log lines ---------------------------------------------------------------------------

#: Where Ray's Python log records go (at DEBUG; ERROR and above keep their level).
_ray_log = logging.getLogger(f"{__name__}.ray")


class _RayRecords(logging.Handler):
    """Re-logs Ray's records through sparsearch's logging: library chatter (such as the notice
    that token authentication is on, printed on every local start) at DEBUG."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno if record.levelno >= logging.ERROR else logging.DEBUG
        if _ray_log.isEnabledFor(level):
            _ray_log.log(level, "%s: %s", record.name, record.getMessage())


def quiet_ray_logging() -> None:
    """Replace the stderr handler that ``import ray`` puts on the ``ray`` logger by
    :class:`_RayRecords` (idempotent). Nothing about Ray's behaviour changes: token
    authentication stays on; only where its messages go."""
    ray_logger = logging.getLogger("ray")
    for handler in list(ray_logger.handlers):
        if not isinstance(handler, _RayRecords):
            ray_logger.removeHandler(handler)
    if not ray_logger.handlers:
        ray_logger.addHandler(_RayRecords())
    ray_logger.propagate = False


class CurveBoard:
    """Where a job's running trials report their curve points (one Ray actor per job, no CPU of
    its own). Each ``report`` is answered at once: ``judge(state, index, point)`` says whether
    the trial stops, over the state the driver last sent (``update``; none yet: nobody stops);
    ``stop(index)`` stops a trial at its next point whatever the judge says. The driver
    ``drain``s the points reported since it last looked."""

    def __init__(self, judge: Callable[[Any, int, dict[str, Any]], bool]) -> None:
        self._judge = judge
        self._state: Any = None
        self._points: list[tuple[int, dict[str, Any]]] = []
        self._stop: set[int] = set()

    def update(self, state: Any) -> None:
        self._state = state

    def stop(self, index: int) -> None:
        self._stop.add(index)

    def report(self, index: int, point: dict[str, Any]) -> bool:
        self._points.append((index, point))
        if index in self._stop:
            return True
        return self._state is not None and bool(self._judge(self._state, index, point))

    def drain(self) -> list[tuple[int, dict[str, Any]]]:
        points, self._points = self._points, []
        return points


class Board:
    """The driver's side of a ``CurveBoard`` actor: the same calls, answered in place."""

    def __init__(self, ray: Any, actor: Any) -> None:
        self._ray, self.actor = ray, actor

    def update(self, state: Any) -> None:
        self._ray.get(self.actor.update.remote(state))

    def stop(self, index: int) -> None:
        self._ray.get(self.actor.stop.remote(index))

    def drain(self) -> list[tuple[int, dict[str, Any]]]:
        return list(self._ray.get(self.actor.drain.remote()))


def _call(
    fn: TrialFn, spec: Any, data: Any, threads: int, board: Any = None, index: int = -1
) -> Any:
    """Runs inside the Ray worker. Exceptions become a TrialFailure value, so one bad trial is a
    recorded reason rather than a task error the driver must unpick. Either outcome carries the
    Ray node it ran on (``worker_node``), set here: ``run_trial`` knows nothing of Ray. With a
    ``board`` (a ``CurveBoard`` handle) the trial reports each curve point there as trial
    ``index`` and stops when told to."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    kwargs: dict[str, Any] = {"threads": threads}
    if board is not None:
        kwargs["report"] = lambda point: bool(ray.get(board.report.remote(index, point)))
    try:
        outcome = fn(spec, data, **kwargs)
    except SparsearchError as e:
        return TrialFailure(
            str(e), traceback.format_exc(), os.getpid(), node, isinstance(e, ToolchainError)
        )
    except Exception as e:  # noqa: BLE001 - any crash of one trial must not stop the search
        return TrialFailure(f"{type(e).__name__}: {e}", traceback.format_exc(), os.getpid(), node)
    if dataclasses.is_dataclass(outcome) and "worker_node" in {
        f.name for f in dataclasses.fields(outcome)
    }:
        outcome = dataclasses.replace(outcome, worker_node=node)
    return outcome


class TrialRunner:
    """Submits trials as Ray tasks with ``num_cpus`` each (torch threads to match)."""

    def __init__(self, fn: TrialFn | None = None, *, num_cpus: int = 1) -> None:
        import ray

        from sparsearch.worker.trial import run_trial

        self._ray = ray
        self._fn = fn or run_trial
        self._threads = num_cpus
        self._task = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)

    def put(self, value: Any) -> Any:
        """Put the data set in the object store once per job; tasks get the reference."""
        return self._ray.put(value)

    def submit(self, spec: Any, data_ref: Any, board: Board | None = None, index: int = -1) -> Any:
        """Start trial ``index``; with a ``board`` it reports its curve points there."""
        actor = board.actor if board is not None else None
        return self._task.remote(self._fn, spec, data_ref, self._threads, actor, index)

    def board(self, judge: Callable[[Any, int, dict[str, Any]], bool]) -> Board:
        """A new ``CurveBoard`` actor judging with ``judge`` (a picklable function)."""
        return Board(self._ray, self._ray.remote(num_cpus=0)(CurveBoard).remote(judge))

    def wait_one(self, refs: list[Any], timeout: float | None = None) -> Any | None:
        """The first finished task reference, or None after ``timeout`` seconds."""
        done, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
        return done[0] if done else None

    def result(self, ref: Any) -> Any:
        """The task's TrialResult or TrialFailure; a worker that died becomes a TrialFailure."""
        try:
            return self._ray.get(ref)
        except Exception as e:  # Ray wraps worker deaths and system errors in several types
            lines = [ln for ln in _ANSI.sub("", str(e)).splitlines() if ln.strip()]
            return TrialFailure(
                f"worker lost: {lines[-1] if lines else type(e).__name__}", _ANSI.sub("", str(e)), 0
            )

    def cancel(self, ref: Any) -> None:
        try:
            self._ray.cancel(ref, force=True)
        except Exception:
            log.debug("cancel failed", exc_info=True)
