"""The Firestore emulator (`gcloud emulators firestore start`), one per test run.

    firestore_emulator   its host:port; every process it started is stopped at the end.
                         With workers (`-n N`), the first that needs it starts it and
                         the others share it; the controller stops it after them.

Without gcloud or Java the tests that need it are skipped, except under
`CI=true`, where that is a failure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import descendants, port_open, wait_all_gone

START_TIMEOUT = 40.0
READY_LINE = "Dev App Server is now running"


def unavailable(reason: str) -> None:
    """Fail under CI (the emulator is part of the suite there), skip elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class EmulatorUnavailable(Exception):
    """The emulator cannot run here; the message says why."""


def _exited(pid: int) -> bool:
    """Whether our child `pid` has exited (reaped here)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == pid


def start_emulator(log_path: Path) -> tuple[int, str]:
    """A started emulator's process id and host:port, once it listens.

    Spawned, not a `subprocess.Popen`: the workers' shared emulator outlives the worker
    that started it, and a Popen object collected while its process runs is a
    ResourceWarning (an error in this suite). Raises EmulatorUnavailable when it cannot
    start (no gcloud or java, or it failed).
    """
    gcloud, java = shutil.which("gcloud"), shutil.which("java")
    if gcloud is None or java is None:
        missing = " and ".join(t for t, at in (("gcloud", gcloud), ("java", java)) if at is None)
        raise EmulatorUnavailable(f"the Firestore emulator needs {missing} on PATH")
    port = free_port()
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # A session of its own: gcloud starts a shell that starts java; the whole
        # group is stopped at the end.
        pid = os.posix_spawn(
            gcloud,
            [gcloud, "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, log, 1),
                (os.POSIX_SPAWN_DUP2, log, 2),
            ],
            setsid=True,
        )
    finally:
        os.close(log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while READY_LINE not in log_path.read_text(errors="replace") and not port_open(port):
            if _exited(pid) or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                raise EmulatorUnavailable(f"the Firestore emulator did not start:\n{output}")
            time.sleep(0.1)
        while not port_open(port):  # the line can come just before the port listens
            if time.monotonic() > deadline:
                raise EmulatorUnavailable(f"the Firestore emulator never listened on {port}")
            time.sleep(0.05)
    except BaseException:
        stop_emulator(pid)
        raise
    return pid, f"127.0.0.1:{port}"


def stop_emulator(pid: int) -> None:
    """Stop the emulator's process group; every process it started must be gone."""
    family = {pid} | descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    left = wait_all_gone(family, 15)
    if left:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        left = wait_all_gone(left, 5)
    assert not left, f"Firestore emulator processes outlived it: {sorted(left)}"
    # No check that the port is closed: with every process of the emulator gone, a port
    # open now belongs to someone else (a busy machine hands free ports out again fast).


@contextmanager
def running_emulator(log_path: Path) -> Iterator[str]:
    """The emulator's host:port while it runs; every process it started is stopped after."""
    pid, address = start_emulator(log_path)
    try:
        yield address
    finally:
        stop_emulator(pid)
        _exited(pid)  # reaped: it was this process's child


# The folder the test workers share (`pytest -n N`): the first worker that needs the
# emulator starts it there, under a lock, and the others use it; the controller stops it
# when the run ends. One emulator instead of one per worker: each start costs gcloud's
# and Java's start-up on a machine of two cores. Tests keep apart by project (or prefix).
SHARED_ENV = "DEPLOYER_TESTS_SHARED_DIR"


def share_between_workers(config: pytest.Config) -> None:
    """In the controller of a run with workers, before they start: the shared folder."""
    if hasattr(config, "workerinput") or not config.getoption("numprocesses", None):
        return
    os.environ[SHARED_ENV] = tempfile.mkdtemp(prefix="deployer-tests-")


def stop_shared(config: pytest.Config) -> None:
    """In the controller, once the workers are done: stop the shared emulator, if any."""
    if hasattr(config, "workerinput"):
        return
    folder = os.environ.pop(SHARED_ENV, None)
    if folder is None:
        return
    pid_file = Path(folder) / "firestore" / "pid"
    try:
        if pid_file.exists():
            stop_emulator(int(pid_file.read_text()))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _shared_emulator(folder: Path) -> str:
    """The address of the workers' one emulator, started here if no worker has yet."""
    folder.mkdir(exist_ok=True)
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        address, failed = folder / "address", folder / "failed"
        if failed.exists():
            raise EmulatorUnavailable(failed.read_text())
        if address.exists():
            return address.read_text()
        try:
            pid, found = start_emulator(folder / "emulator.log")
        except EmulatorUnavailable as reason:
            failed.write_text(str(reason))
            raise
        (folder / "pid").write_text(str(pid))
        address.write_text(found)
        return found


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator's host:port for the session: the workers' shared one, or (without
    workers) one of this session's own (see `running_emulator`)."""
    shared = os.environ.get(SHARED_ENV)
    try:
        if shared is not None:
            yield _shared_emulator(Path(shared) / "firestore")
            return
        log_path = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
        with running_emulator(log_path) as address:
            yield address
    except EmulatorUnavailable as reason:
        unavailable(str(reason))
