"""Revisions run for real: each one a local process, in a network namespace of its own.

    RevisionProcesses.start(revision, image, env, argv=..., container_port=8080)
        -> the container's argv (inside the image's tree for a built image, in the
           image's folder for a host image) under a relay in its own network namespace,
           PORT = the container port (`common.netns`); where namespaces are unavailable,
           on the host with a free port as PORT
        -> RunningRevision: port (PORT), url (where the sandbox reaches it), merged
           stdout/stderr in workdir/logs/<revision>.log and in a ring of recent lines,
           wait_ready() = "the container port accepts TCP"
    RevisionProcesses.logs(revision)
        -> every timestamped line of every process the revision ran (kept after it
           stopped), which the sandbox's Cloud Logging serves

Children are spawned, and die with the sandbox, through `child_processes`.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from deployer_sandbox.cloud_run.containers import DEFAULT_PORT, base_environment, launch_command
from deployer_sandbox.common.child_processes import STOP_GRACE, exit_line, terminate
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import Image
from deployer_sandbox.common.netns import ContainerNetwork, NetworkedProcess

log = logging.getLogger(__name__)

_RING_LINES = 500
_READY_POLL = 0.03
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
        container: NetworkedProcess,
        log_path: Path,
        sink: LineSink | None = None,
        cleanup: Callable[[], None] | None = None,
    ) -> None:
        """`cleanup`: run once the process has ended (its writable layer goes)."""
        assert container.port is not None and container.host_port is not None
        self.revision = revision
        self.port = container.port  # PORT, as the container sees it
        self.host_port = container.host_port
        self.url = f"http://127.0.0.1:{container.host_port}"
        self.log_path = log_path
        self._sink = sink
        self._container = container
        self._process = container.process
        self._cleanup = cleanup
        self._cleaning = threading.Lock()
        self._cleaned = False
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=_RING_LINES)
        self._drained = threading.Event()
        self._reader = threading.Thread(
            target=self._read_logs, name=f"logs-{revision}", daemon=True
        )
        self._reader.start()

    @property
    def process(self) -> subprocess.Popen[bytes]:
        """The container's process (its relay, when it has a network namespace)."""
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

    def ended(self) -> None:
        """Release what the ended process held (relay handles, writable layer). Idempotent."""
        # Under a lock: whoever comes second (`stop` or the log reader) returns only once
        # the first has finished.
        with self._cleaning:
            if self._process.poll() is None or self._cleaned:
                return
            self._cleaned = True
            self._container.release()
            if self._cleanup is not None:
                self._cleanup()

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
            if self._container.ready(wait=_READY_POLL):
                return None
            if time.monotonic() >= deadline:
                return self._failure()

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
            self.ended()


def _file_name(revision: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", revision)


class RevisionProcesses:
    """Starts, tracks and stops the local process of every revision. Thread-safe."""

    def __init__(
        self, workdir: Path, faults: Faults, network: ContainerNetwork | None = None
    ) -> None:
        """`network`: how containers are networked (default: namespaces where they work)."""
        self._logs = workdir / "logs"
        self._logs.mkdir(parents=True, exist_ok=True)
        # Each start's writable layer over a built image, removed once its process ended.
        self._layers = workdir / "layers"
        self._faults = faults
        self.network = network or ContainerNetwork()
        self._lock = threading.Lock()
        self._running: dict[str, RunningRevision] = {}
        # Its own lock: a reader thread records lines while `start` holds `_lock`.
        self._history_lock = threading.Lock()
        self._history: dict[str, deque[LogLine]] = {}
        self._numbers = itertools.count(1)
        self._starts = itertools.count(1)
        self._closed = False

    def start(
        self,
        revision: str,
        image: Image,
        env: Mapping[str, str],
        *,
        argv: Sequence[str] | None = None,
        container_port: int = DEFAULT_PORT,
    ) -> RunningRevision:
        """Run `image` for `revision` (`argv`: its command as overridden, default the
        image's), listening on `container_port`; replaces a previous process."""
        self.stop(revision)
        environment = {**base_environment(image), **env}
        layer = self._layers / f"{_file_name(revision)}-{next(self._starts)}"
        command, cwd = launch_command(image, image.argv if argv is None else argv, layer)
        if self._faults.take("revision_crash", revision) is not None:
            command, cwd = [sys.executable, "-c", _CRASH_SCRIPT], None
        with self._lock:
            if self._closed:
                raise RuntimeError("the sandbox is shutting down; no new revision starts")
            if image.root:
                layer.mkdir(parents=True)
            container = self.network.start(
                command, cwd=cwd, env=environment, listen_port=container_port
            )
            running = RunningRevision(
                revision,
                container,
                self._logs / f"{_file_name(revision)}.log",
                self._sink(revision),
                cleanup=lambda: shutil.rmtree(layer, ignore_errors=True),
            )
            self._running[revision] = running
        log.info(
            "revision %s started as pid %d, PORT=%d, at %s",
            revision,
            running.pid,
            running.port,
            running.url,
        )
        return running

    def stop(self, revision: str) -> None:
        """End the revision's process group: SIGTERM, then SIGKILL after ~2 s."""
        with self._lock:
            running = self._running.pop(revision, None)
        if running is not None:
            terminate([running.process])
            running.ended()

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
            for revision in running:
                revision.ended()
