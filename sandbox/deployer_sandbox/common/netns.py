"""Containers' networks: each revision and job task in a network namespace of its own.

On Cloud Run every instance has its own network: `PORT` is the container port
(8080 unless configured) and two revisions of one service both listen on it. The
sandbox does the same with Linux network namespaces:

    ContainerNetwork.start(argv, env, listen_port=8080)
        -> python -I -S .../netns_relay.py ... -- argv   (see there)
           PORT=8080 inside the namespace; the sandbox reaches it at
           http://127.0.0.1:<host port> (`NetworkedProcess.host_port`) through the relay
    Egress: the sandbox's own endpoints (gRPC, Slack, metadata, git, every router URL,
           and any 127.0.0.1:N or localhost:N in the container's environment), each
           relayed into every namespace at the same address; `add()` relays a new one
           into the running namespaces before it returns, so a URL the router hands out
           is reachable from every container at once.

Where namespaces are unavailable (not root, unshare refused, or
`DEPLOYER_SANDBOX_NETNS=off`), containers share the host's network and each
listening one gets a free host port as `PORT` instead of its container port
(`ContainerNetwork.unavailable` says why; the sandbox logs it at start-up).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from deployer_sandbox.common.child_processes import free_port, spawn
from deployer_sandbox.common.netns_egress import Egress, RelayControl, loopback_ports

# Run as a file, without `site`: standard library only, it starts in tens of milliseconds.
RELAY = [sys.executable, "-I", "-S", str(Path(__file__).with_name("netns_relay.py"))]
# "off" (or 0, false, no): every container shares the host's network, on a remapped port.
SWITCH_ENV = "DEPLOYER_SANDBOX_NETNS"
_OFF = {"off", "0", "false", "no"}

_probe_lock = threading.Lock()
_probe: list[str | None] = []


def _probe_namespaces() -> str | None:
    """None when a relay can make a network namespace here, else why not (asked once)."""
    with _probe_lock:
        if not _probe:
            _probe.append(_run_probe())
        return _probe[0]


def _run_probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    if os.geteuid() != 0:
        return "network namespaces need root (the sandbox runs as an ordinary user)"
    try:
        probe = subprocess.run(
            [*RELAY, "--probe"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the namespace probe failed: {error}"
    if probe.returncode != 0:
        return probe.stderr.strip().splitlines()[-1] if probe.stderr.strip() else "unshare failed"
    return None


class NetworkedProcess:
    """A container's process and where it listens: `port` inside, `host_port` from the sandbox."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        port: int | None,
        host_port: int | None,
        ready_fd: int | None = None,
        release: tuple[Egress, RelayControl] | None = None,
    ) -> None:
        self.process = process
        self.port = port  # PORT as the container sees it
        self.host_port = host_port  # where the sandbox connects; None for a job task
        self._ready_fd = ready_fd
        # Whether a relay says when the port accepts (else `ready` probes the port).
        self.reports_ready = ready_fd is not None
        self._ready = False
        self._release = release
        self._lock = threading.Lock()

    def ready(self, wait: float = 0.0) -> bool:
        """Whether the container listens on its port (for a task: always False); when it
        does not yet, this has waited up to `wait` seconds for it."""
        with self._lock:
            if self._ready or self.host_port is None:
                return self._ready
            if not self.reports_ready:
                self._ready = _accepts(self.host_port)
            elif self._ready_fd is not None and select.select([self._ready_fd], [], [], wait)[0]:
                # One byte once the port accepted; EOF when the relay ended first (its
                # listener may still be closing then: the port is not probed).
                self._ready = os.read(self._ready_fd, 1) == b"R"
                self._close_ready()
                return self._ready
            elif self._ready_fd is not None:
                return False  # waited on the relay
        if not self._ready:
            time.sleep(wait)
        return self._ready

    def release(self) -> None:
        """Drop the sandbox's handles on the relay once the process ended. Idempotent."""
        with self._lock:
            self._close_ready()
            release, self._release = self._release, None
        if release is not None:
            release[0].detach(release[1])

    def _close_ready(self) -> None:
        if self._ready_fd is not None:
            os.close(self._ready_fd)
            self._ready_fd = None


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class ContainerNetwork:
    """Starts containers in network namespaces of their own, or on the host where it can't."""

    def __init__(self, egress: Egress | None = None, namespaces: bool | None = None) -> None:
        """`namespaces`: False forces the host's network; None uses namespaces where they work
        and `DEPLOYER_SANDBOX_NETNS` does not turn them off."""
        self.egress = egress or Egress()
        if namespaces is False:
            self.unavailable: str | None = "turned off for this sandbox"
        elif os.environ.get(SWITCH_ENV, "").strip().lower() in _OFF:
            self.unavailable = f"turned off by {SWITCH_ENV}={os.environ[SWITCH_ENV]}"
        else:
            self.unavailable = _probe_namespaces()

    @property
    def isolated(self) -> bool:
        """Whether each container gets a network namespace of its own."""
        return self.unavailable is None

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | str | None,
        env: Mapping[str, str],
        listen_port: int | None,
        stdout: int | IO[bytes] | None = subprocess.PIPE,
    ) -> NetworkedProcess:
        """Run `argv`; with `listen_port`, PORT is set (the container port when isolated,
        else a free host port) and the result says where the sandbox reaches it."""
        environment = dict(env)
        if not self.isolated:
            port = None if listen_port is None else free_port()
            if port is not None:
                environment["PORT"] = str(port)
            process = spawn(argv, cwd=cwd, env=environment, stdout=stdout)
            return NetworkedProcess(process, port, port)
        if listen_port is not None:
            environment["PORT"] = str(listen_port)
        return self._start_relayed(argv, cwd, environment, listen_port, stdout)

    def _start_relayed(
        self,
        argv: Sequence[str],
        cwd: Path | str | None,
        env: dict[str, str],
        listen_port: int | None,
        stdout: int | IO[bytes] | None,
    ) -> NetworkedProcess:
        ours, theirs = socket.socketpair()
        control = RelayControl(ours)
        ports = self.egress.attach(control) | loopback_ports(env)
        command = [*RELAY, "--control-fd", str(theirs.fileno())]
        inherited = [theirs.fileno()]
        listener: socket.socket | None = None
        ready_read = ready_write = None
        host_port = None
        try:
            if listen_port is not None:
                listener = socket.create_server(("127.0.0.1", 0), backlog=128)
                host_port = listener.getsockname()[1]
                ready_read, ready_write = os.pipe()
                inherited += [listener.fileno(), ready_write]
                command += ["--listen-fd", str(listener.fileno()), "--port", str(listen_port)]
                command += ["--ready-fd", str(ready_write)]
            egress = sorted(ports - {listen_port} if listen_port is not None else ports)
            if egress:
                command += ["--egress", ",".join(map(str, egress))]
            process = spawn(
                [*command, "--", *argv], cwd=cwd, env=env, stdout=stdout, pass_fds=inherited
            )
        except BaseException:
            self.egress.detach(control)
            if ready_read is not None:
                os.close(ready_read)
            raise
        finally:
            # The relay holds these now; ours would keep the port bound after it ends.
            theirs.close()
            if listener is not None:
                listener.close()
            if ready_write is not None:
                with contextlib.suppress(OSError):
                    os.close(ready_write)
        return NetworkedProcess(process, listen_port, host_port, ready_read, (self.egress, control))
