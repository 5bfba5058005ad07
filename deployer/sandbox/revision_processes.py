"""Revisions run for real: each one is a local process listening on its own loopback port.

    RevisionProcesses.start(revision, image, env)
        -> spawn(image.cmd, cwd=image.context, env=base + image.env + env + PORT)
        -> RunningRevision: port, url, merged stdout/stderr in workdir/logs/<revision>.log
           and in a ring of recent lines, wait_ready() = "the port accepts TCP"
    RevisionProcesses.logs(revision)
        -> every timestamped line of every process the revision ran (kept after it
           stopped), which the sandbox's Cloud Logging serves

No child may outlive the sandbox. Every child gets its own session (so `stop()`
can end its whole process group) and, on Linux, `PR_SET_PDEATHSIG=SIGKILL`, so
it dies even when the sandbox is SIGKILLed. The kernel sends that signal when
the *thread* that forked the child exits, so every child is forked by one
long-lived daemon thread (`spawn()`), never by a short-lived request thread.
Cloud Run jobs reuse `spawn()` and `minimal_environment()`.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import itertools
import logging
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from deployer.sandbox.faults import Faults
from deployer.sandbox.images import Image

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SPAWN_TIMEOUT = 30.0
_STOP_GRACE = 2.0
_RING_LINES = 500
# Lines kept per revision for the Logging API, across restarts and after the process ended.
_HISTORY_LINES = 10_000
# What a container may rely on from its platform; everything else comes from the
# image and the revision. The sandbox's own environment (credentials, DEPLOYER_*)
# must not leak into a revision.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")

# Cloud Run's wording. Like Cloud Run, the message does not quote the container's output:
# that is in Cloud Logging (see `RevisionProcesses.logs`); the caller adds the Logs URL.
_STARTUP_FAILURE = (
    "The user-provided container failed to start and listen on the port defined provided "
    "by the PORT={port} environment variable within the allocated timeout. This can happen "
    "when the container port is misconfigured or if the timeout is too short. The health "
    "check timeout can be extended. Logs for this revision might contain more information."
)
_CRASH_SCRIPT = (
    "import sys; print('sandbox fault: container crashed at start-up', file=sys.stderr); "
    "sys.exit(1)"
)


# --- spawning ------------------------------------------------------------------------


def _load_prctl() -> Callable[[int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[[int, int], int] = libc.prctl
    return prctl


# Loaded before any fork: the child may only make the system call, not load libraries.
_PRCTL = _load_prctl()


def _find_setpriv() -> str | None:
    """util-linux's setpriv, when it can set the parent-death signal."""
    found = shutil.which("setpriv")
    if found is None or sys.platform != "linux":
        return None
    try:
        usage = subprocess.run([found, "--help"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return found if "--pdeathsig" in usage.stdout else None


_SETPRIV = _find_setpriv()


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        if _PRCTL is not None:
            _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # The parent may have died between fork and prctl: then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Spawner:
    """One daemon thread that forks every child, so PDEATHSIG outlives request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def run(self, make: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="sandbox-spawner", daemon=True
                )
                self._thread.start()
        future: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((make, future))
        return future.result(timeout=_SPAWN_TIMEOUT)

    def _loop(self) -> None:
        while True:
            make, future = self._queue.get()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(make())
            except BaseException as error:
                future.set_exception(error)


_SPAWNER = _Spawner()


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | str | None,
    env: Mapping[str, str],
    stdout: int | IO[bytes] | None = subprocess.PIPE,
) -> subprocess.Popen[bytes]:
    """Start a child in its own session that dies with the sandbox; stderr goes to stdout."""
    parent_pid = os.getpid()
    command, preexec = list(argv), None
    if _SETPRIV is not None:
        # setpriv sets PDEATHSIG and execs the command, so no Python runs between fork and
        # exec: subprocess can vfork, and gRPC's fork handlers (which abort children forked
        # while its threads are busy) never run.
        command = [_SETPRIV, "--pdeathsig", "KILL", "--", *command]
    else:
        preexec = _die_with_parent(parent_pid)

    def make() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,
        )

    return _SPAWNER.run(make)


def minimal_environment() -> dict[str, str]:
    """The platform's base environment for a container: essentials only, no sandbox secrets."""
    base = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    base.setdefault("PATH", os.defpath)
    base.setdefault("LANG", "C.UTF-8")
    # Cloud Run streams logs as they are written; a piped Python would buffer them.
    base["PYTHONUNBUFFERED"] = "1"
    return base


def resolve_command(argv: Sequence[str]) -> list[str]:
    """An image command with "python" mapped to the sandbox's interpreter."""
    resolved = list(argv)
    if resolved and resolved[0] == "python":
        resolved[0] = sys.executable
    return resolved


def exit_line(returncode: int) -> str:
    """Cloud Run's own log line for a container that ended."""
    if returncode < 0:
        return f"Container terminated on signal {-returncode}."
    return f"Container called exit({returncode})."


def terminate(processes: Sequence[subprocess.Popen[bytes]], grace: float = _STOP_GRACE) -> None:
    """SIGTERM each process group, then SIGKILL whatever is left after `grace` seconds."""
    for process in processes:
        _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        # The leader may be gone while children of its group linger.
        _signal_group(process, signal.SIGKILL)
        try:
            process.wait(timeout=_STOP_GRACE)
        except subprocess.TimeoutExpired:
            log.warning("process %d did not die after SIGKILL", process.pid)


def _signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


# --- revisions -----------------------------------------------------------------------


class LogLine(NamedTuple):
    """One line a revision's instance logged, as Cloud Logging receives it."""

    timestamp: datetime  # when the sandbox read it (UTC)
    text: str
    number: int  # increases with every line the sandbox records: a tie-breaker
    system: bool = False  # the platform's own line ("Container called exit(1).")


# (text, system): where a RunningRevision also sends each line it reads.
LineSink = Callable[[str, bool], None]


class RunningRevision:
    """One revision's container: its process, port and recent log lines."""

    def __init__(
        self,
        revision: str,
        port: int,
        process: subprocess.Popen[bytes],
        log_path: Path,
        sink: LineSink | None = None,
    ) -> None:
        self.revision = revision
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._sink = sink
        self._process = process
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=_RING_LINES)
        self._drained = threading.Event()
        self._reader = threading.Thread(
            target=self._read_logs, name=f"logs-{revision}", daemon=True
        )
        self._reader.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The container process."""
        return self._process

    @property
    def pid(self) -> int:
        """The container process id (its process group id too)."""
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended, else None."""
        return self._process.poll()

    def alive(self) -> bool:
        """Whether the container process is still running."""
        return self._process.poll() is None

    def last_log_lines(self, n: int = 20) -> list[str]:
        """The `n` most recent lines the container wrote (stdout and stderr merged)."""
        with self._lock:
            lines = list(self._lines)
        return lines[-n:] if n > 0 else []

    def wait_ready(self, timeout: float) -> str | None:
        """None once the port accepts connections, else Cloud Run's start-up failure message."""
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                # Let the reader collect the last words before quoting them.
                self._drained.wait(timeout=1.0)
                return self._failure()
            if self._accepts():
                return None
            if time.monotonic() >= deadline:
                return self._failure()
            time.sleep(0.03)

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def _failure(self) -> str:
        return _STARTUP_FAILURE.format(port=self.port)

    def _append(self, line: str, sink: IO[str], system: bool = False) -> None:
        with self._lock:
            self._lines.append(line)
        if self._sink is not None:
            self._sink(line, system)
        sink.write(line + "\n")
        sink.flush()

    def _read_logs(self) -> None:
        stream = self._process.stdout
        try:
            with self.log_path.open("a", encoding="utf-8") as sink:
                if stream is not None:
                    for raw in iter(stream.readline, b""):
                        self._append(raw.decode("utf-8", "replace").rstrip("\r\n"), sink)
                    stream.close()
                # EOF usually means the process ended; record it as Cloud Run does.
                try:
                    returncode = self._process.wait(timeout=_STOP_GRACE)
                except subprocess.TimeoutExpired:
                    return
                self._append(exit_line(returncode), sink, system=True)
        except Exception:
            log.exception("reading the logs of revision %s failed", self.revision)
        finally:
            self._drained.set()


def _log_name(revision: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", revision) + ".log"


class RevisionProcesses:
    """Starts, tracks and stops the local process of every revision. Thread-safe."""

    def __init__(self, workdir: Path, faults: Faults) -> None:
        self._logs = workdir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._faults = faults
        self._lock = threading.Lock()
        self._running: dict[str, RunningRevision] = {}
        # Its own lock: a reader thread records lines while `start` holds `_lock`.
        self._history_lock = threading.Lock()
        self._history: dict[str, deque[LogLine]] = {}
        self._numbers = itertools.count(1)
        self._closed = False

    def start(self, revision: str, image: Image, env: Mapping[str, str]) -> RunningRevision:
        """Run `image` for `revision` on a free loopback port; replaces a previous process."""
        self.stop(revision)
        port = free_port()
        environment = {**minimal_environment(), **image.env, **env, "PORT": str(port)}
        argv = resolve_command(image.cmd)
        if self._faults.take("revision_crash", revision) is not None:
            argv = [sys.executable, "-c", _CRASH_SCRIPT]
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is shutting down; no new revision starts")
            process = spawn(argv, cwd=image.context, env=environment)
            running = RunningRevision(
                revision, port, process, self._logs / _log_name(revision), self._sink(revision)
            )
            self._running[revision] = running
        log.info("revision %s started as pid %d on port %d", revision, process.pid, port)
        return running

    def stop(self, revision: str) -> None:
        """End the revision's process group: SIGTERM, then SIGKILL after ~2 s."""
        with self._lock:
            running = self._running.pop(revision, None)
        if running is not None:
            terminate([running.process])

    def get(self, revision: str) -> RunningRevision | None:
        """The revision's process, if one was started and not stopped."""
        with self._lock:
            return self._running.get(revision)

    def logs(self, revision: str) -> list[LogLine]:
        """Every line the revision's processes logged, oldest first; kept after they stopped."""
        with self._history_lock:
            return list(self._history.get(revision, ()))

    def _sink(self, revision: str) -> LineSink:
        with self._history_lock:
            history = self._history.setdefault(revision, deque(maxlen=_HISTORY_LINES))

        def record(text: str, system: bool) -> None:
            with self._history_lock:
                history.append(LogLine(datetime.now(UTC), text, next(self._numbers), system))

        return record

    def close(self) -> None:
        """Stop every process; later starts fail. Idempotent, callable from any thread."""
        with self._lock:
            self._closed = True
            running = list(self._running.values())
            self._running.clear()
        if running:
            terminate([r.process for r in running])
