"""The sandbox's endpoints, relayed into every container's network namespace.

    Egress(ports)      host loopback ports every namespace reaches at the same address:
                       the sandbox's gRPC, Slack/control, metadata and git ports, and every
                       URL the router hands out
    Egress.add(port)   relays a new one into the running namespaces too, and returns once
                       each relay serves it (or has ended): a URL handed out after `add`
                       is reachable from every container at once
    loopback_ports(env)  the ports an environment names (127.0.0.1:N, localhost:N), which
                       that container's namespace gets as well

Each relay (`netns_relay`) has a control channel: the sandbox writes a port per line,
the relay answers with the same line once it listens on it.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterable, Mapping

# How long a running relay may take to relay a new port (it answers in milliseconds;
# a relay still starting answers once it has).
_ANNOUNCE_TIMEOUT = 5.0
_LOOPBACK_PORT = re.compile(r"(?:127\.0\.0\.1|localhost|\[::1\]):(\d{1,5})(?!\d)")


def loopback_ports(env: Mapping[str, str]) -> set[int]:
    """Every host loopback port an environment names (`127.0.0.1:N`, `localhost:N`)."""
    found = set()
    for value in env.values():
        for match in _LOOPBACK_PORT.finditer(value):
            if 0 < int(match.group(1)) < 65536:
                found.add(int(match.group(1)))
    return found


class RelayControl:
    """The sandbox's end of one relay's control channel."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._lock = threading.Lock()
        self._open = True

    def announce(self, port: int) -> None:
        """Have the relay serve `port`; return once it does (or it has ended)."""
        line = f"{port}\n".encode()
        with self._lock:
            if not self._open:
                return
            try:
                self._channel.settimeout(_ANNOUNCE_TIMEOUT)
                self._channel.sendall(line)
                received = b""
                while not received.endswith(line):
                    data = self._channel.recv(64)
                    if not data:
                        break
                    received += data
            except OSError:
                self._close_locked()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        self._open = False
        self._channel.close()


class Egress:
    """Host loopback ports every container namespace reaches at the same address. Thread-safe."""

    def __init__(self, ports: Iterable[int] = ()) -> None:
        self._lock = threading.Lock()
        self._ports = set(ports)
        self._relays: list[RelayControl] = []

    def add(self, port: int) -> None:
        """Relay `port` into every namespace, the running ones included, before returning."""
        with self._lock:
            if port in self._ports:
                return
            self._ports.add(port)
            relays = list(self._relays)
        for relay in relays:
            relay.announce(port)

    def ports(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._ports)

    def attach(self, control: RelayControl) -> frozenset[int]:
        """Announce later ports to `control`'s relay; the ports it must serve from the start.
        (Attached and read at once: a port added meanwhile is announced to it.)"""
        with self._lock:
            self._relays.append(control)
            return frozenset(self._ports)

    def detach(self, control: RelayControl) -> None:
        """Forget a relay that ended, closing its channel."""
        with self._lock:
            if control in self._relays:
                self._relays.remove(control)
        control.close()
