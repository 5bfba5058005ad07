"""Child processes that never outlive the sandbox: spawned, signalled and cleaned up.

No child may outlive the sandbox. Every child gets its own session (so
`terminate()` can end its whole process group) and, on Linux,
`PR_SET_PDEATHSIG=SIGKILL`, so it dies even when the sandbox is SIGKILLed. The
kernel sends that signal when the *thread* that forked the child exits, so
every child is forked by one long-lived daemon thread (`spawn()`), never by a
short-lived request thread. Revisions and Cloud Run jobs both start theirs here.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_SPAWN_TIMEOUT = 30.0
STOP_GRACE = 2.0
# What a container may rely on from its platform; everything else comes from the
# image and the revision. The sandbox's own environment (credentials, DEPLOYER_*)
# must not leak into a revision.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SYSTEMROOT")


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
    pass_fds: Sequence[int] = (),
) -> subprocess.Popen[bytes]:
    """Start a child in its own session that dies with the sandbox; stderr goes to stdout.

    `pass_fds`: descriptors the child inherits (a relay's listening socket, say)."""
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
            pass_fds=tuple(pass_fds),
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


def terminate(processes: Sequence[subprocess.Popen[bytes]], grace: float = STOP_GRACE) -> None:
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
            process.wait(timeout=STOP_GRACE)
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
