"""Revisions run for real: each one is a local process listening on its own loopback port.

    RevisionProcesses.start(revision, image, env)
        -> spawn(image.cmd, cwd=image.context, env=base + image.env + env + PORT)
        -> RunningRevision: port, url, merged stdout/stderr in workdir/logs/<revision>.log
           and in a ring of recent lines, wait_ready() = "the port accepts TCP"
    RevisionProcesses.logs(revision)
        -> every timestamped line of every process the revision ran (kept after it
           stopped), which the sandbox's Cloud Logging serves

Children are spawned, and die with the sandbox, through `child_processes`.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from deployer_sandbox.common.child_processes import (
    STOP_GRACE,
    exit_line,
    free_port,
    minimal_environment,
    resolve_command,
    spawn,
    terminate,
)
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import Image

log = logging.getLogger(__name__)

_RING_LINES = 500
# Lines kept per revision for the Logging API, across restarts and after the process ended.
_HISTORY_LINES = 10_000

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
                    returncode = self._process.wait(timeout=STOP_GRACE)
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
