"""The Firestore emulator, started once per test session (`gcloud emulators firestore start`).

    firestore_emulator   its host:port; every process it started is stopped at the end

Without gcloud or Java the tests that need it are skipped, except under
`CI=true`, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
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


@contextmanager
def running_emulator(log_path: Path) -> Iterator[str]:
    """The emulator's host:port while it runs; every process it started is stopped after.

    Raises EmulatorUnavailable when it cannot start (no gcloud or java, or it failed).
    """
    missing = [tool for tool in ("gcloud", "java") if shutil.which(tool) is None]
    if missing:
        raise EmulatorUnavailable(f"the Firestore emulator needs {' and '.join(missing)} on PATH")
    port = free_port()
    with log_path.open("wb") as log:
        # A session of its own: gcloud starts a shell that starts java; the whole
        # group is stopped at the end.
        emulator = subprocess.Popen(
            ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while READY_LINE not in log_path.read_text(errors="replace") and not port_open(port):
            if emulator.poll() is not None or time.monotonic() > deadline:
                output = log_path.read_text(errors="replace")[-2000:]
                raise EmulatorUnavailable(f"the Firestore emulator did not start:\n{output}")
            time.sleep(0.1)
        while not port_open(port):  # the line can come just before the port listens
            if time.monotonic() > deadline:
                raise EmulatorUnavailable(f"the Firestore emulator never listened on {port}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        family = {emulator.pid} | descendants(emulator.pid)
        os.killpg(emulator.pid, signal.SIGTERM)
        try:
            emulator.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(emulator.pid, signal.SIGKILL)
            emulator.wait(5)
        left = wait_all_gone(family, 10)
        if left:
            os.killpg(emulator.pid, signal.SIGKILL)
        assert not left, f"Firestore emulator processes outlived it: {sorted(left)}"
        # No check that the port is closed: with every process of the emulator gone, a port
        # open now belongs to someone else (a busy machine hands free ports out again fast).


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The emulator's host:port for the session (see `running_emulator`)."""
    log_path = tmp_path_factory.mktemp("firestore-emulator") / "emulator.log"
    try:
        with running_emulator(log_path) as address:
            yield address
    except EmulatorUnavailable as reason:
        unavailable(str(reason))
