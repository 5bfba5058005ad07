"""The relay a container runs under: its own network namespace, with the sandbox relayed in.

    python -I -S .../netns_relay.py [--listen-fd FD --port PORT --ready-fd FD]
        [--control-fd FD] [--egress P,P,...] -- ARGV...
    python -I -S .../netns_relay.py --probe          (exit 0 when it would work)

Started by the sandbox in the host's network namespace, the relay:

1. keeps a handle on the host's namespace, unshares a new one and brings its `lo` up;
2. ingress: accepts on the inherited `--listen-fd` socket (bound on a host loopback
   port, so still in the host's namespace: a socket keeps the namespace it was made
   in) and forwards each connection to 127.0.0.1:PORT inside the new namespace, where
   the container listens; writes one byte to `--ready-fd` once that port accepts;
3. egress: listens inside the namespace on 127.0.0.1:P (and [::1]:P) for each sandbox
   port P and forwards to the host's 127.0.0.1:P, from a thread that `setns`-ed back
   into the host's namespace (unshare(2) and setns(2) act on the calling thread).
   `--control-fd` receives more ports, one per line, while the container runs, and
   acknowledges each with the same line once it listens (the router's new URLs);
4. runs ARGV as its child, in its own process group, forwarding SIGTERM and SIGINT to
   it (as Cloud Run signals the container), and exits with the child's status. When
   the child ends, whatever is left of its group is killed: a container's processes
   end with it.

It is run as a file with the standard library only, in isolated mode without `site`
(`-I -S`): the container's PYTHON* variables must not steer it, and it starts in tens
of milliseconds. Python 3.11 has no os.unshare/os.setns: libc is called via ctypes.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable

CLONE_NEWNET = 0x40000000  # <linux/sched.h>
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# <linux/sockios.h>, <net/if.h>: an interface's flags; struct ifreq is 40 bytes.
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_IFREQ = struct.Struct("16sH22x")
_CHUNK = 64 * 1024
_READY_POLL = 0.01
# After forwarding SIGTERM, what is left of the container is killed this much later;
# the sandbox itself SIGKILLs the relay after its own grace (`STOP_GRACE`, 2 s).
_KILL_AFTER = 1.5

_libc = ctypes.CDLL(None, use_errno=True)

Dial = Callable[[], socket.socket]


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _new_namespace() -> int:
    """Unshare the network namespace and bring `lo` up; the fd of the host's namespace."""
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    # `ip link set lo up`: a new namespace's loopback starts down.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        flags = _IFREQ.unpack(fcntl.ioctl(probe, _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0)))[1]
        fcntl.ioctl(probe, _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))
    return host


def _thread(target: Callable[..., None], *args: object) -> None:
    threading.Thread(target=target, args=args, daemon=True).start()


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=5)
    sock.settimeout(None)  # relayed connections may idle for as long as their ends like
    return sock


def _copy(source: socket.socket, target: socket.socket) -> None:
    """Bytes from `source` to `target` until EOF, which is passed on as a half-close."""
    try:
        while data := source.recv(_CHUNK):
            target.sendall(data)
        target.shutdown(socket.SHUT_WR)
    except OSError:
        # A reset on either side ends both directions.
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _pipe(accepted: socket.socket, dial: Dial) -> None:
    try:
        upstream = dial()
    except OSError:
        accepted.close()  # nothing listens there: the caller sees the connection end
        return
    # Bytes go on as they come: Nagle's wait for an ACK would add a delayed-ACK round
    # (~40 ms) to every response written in more than one piece.
    for sock in (accepted, upstream):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    back = threading.Thread(target=_copy, args=(upstream, accepted), daemon=True)
    back.start()
    _copy(accepted, upstream)
    back.join()
    accepted.close()
    upstream.close()


class Relay:
    """One thread accepts on every listener and reads the control channel; each relayed
    connection gets threads of its own; one more waits for the container's port."""

    def __init__(self, port: int | None, host_namespace: int) -> None:
        self._port = port
        self._host_namespace = host_namespace
        self._egress: set[int] = set()
        self._selector = selectors.DefaultSelector()
        self._pending = b""  # a partial control line

    def dial_container(self) -> socket.socket:
        """A connection to the container's port inside the namespace (IPv4, then IPv6)."""
        assert self._port is not None
        try:
            return _connect("127.0.0.1", self._port)
        except OSError:
            return _connect("::1", self._port)

    def dial_host(self, port: int) -> socket.socket:
        # This connection's own thread moves to the host's namespace for good.
        _check(_libc.setns(self._host_namespace, CLONE_NEWNET), "setns(CLONE_NEWNET)")
        return _connect("127.0.0.1", port)

    def announce_ready(self, ready_fd: int) -> None:
        """Write one byte to `ready_fd` once the container's port accepts connections."""
        while True:
            try:
                self.dial_container().close()
                break
            except OSError:
                time.sleep(_READY_POLL)
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"R")
        os.close(ready_fd)

    def serve(self, listener: socket.socket, dial: Dial) -> None:
        """Relay each connection `listener` accepts to what `dial` connects to."""
        listener.setblocking(False)
        self._selector.register(listener, selectors.EVENT_READ, dial)

    def listen_egress(self, port: int) -> None:
        """Listen on `port` inside the namespace, relaying to the host's 127.0.0.1:`port`."""
        if port in self._egress or port == self._port:
            return
        self._egress.add(port)
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = socket.socket(family, socket.SOCK_STREAM)
            try:
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                listener.bind((host, port))
                listener.listen(128)
            except OSError:
                listener.close()  # no IPv6 here, or the port is taken: the other may do
                continue
            self.serve(listener, lambda: self.dial_host(port))

    def control(self, channel: socket.socket) -> None:
        """Read more egress ports from `channel`, one per line, acknowledging each once
        it is served (registered here, read by `run`)."""
        self._selector.register(channel, selectors.EVENT_READ, None)

    def run(self) -> None:
        """Accept and read control lines until the relay ends (a daemon thread)."""
        while True:
            for key, _ in self._selector.select():
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data is None:
                    self._read_control(sock)
                    continue
                try:
                    accepted, _ = sock.accept()
                except BlockingIOError:
                    continue
                _thread(_pipe, accepted, key.data)

    def _read_control(self, channel: socket.socket) -> None:
        data = channel.recv(4096)
        if not data:
            self._selector.unregister(channel)
            channel.close()
            return
        *lines, self._pending = (self._pending + data).split(b"\n")
        for line in lines:
            self.listen_egress(int(line))
            channel.sendall(line + b"\n")


def _run(args: dict[str, str], command: list[str], host_namespace: int) -> int:
    port = int(args["--port"]) if "--port" in args else None
    relay = Relay(port, host_namespace)
    for egress in filter(None, args.get("--egress", "").split(",")):
        relay.listen_egress(int(egress))
    relay_pid = os.getpid()

    def die_with_relay() -> None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != relay_pid:
            os._exit(1)

    child = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, process_group=0, preexec_fn=die_with_relay
    )
    signalled = threading.Event()

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)
        if signum == signal.SIGTERM and not signalled.is_set():
            signalled.set()
            timer = threading.Timer(_KILL_AFTER, _kill_group, (child.pid,))
            timer.daemon = True
            timer.start()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if "--listen-fd" in args and port is not None:
        relay.serve(socket.socket(fileno=int(args["--listen-fd"])), relay.dial_container)
        if "--ready-fd" in args:
            _thread(relay.announce_ready, int(args["--ready-fd"]))
    if "--control-fd" in args:
        relay.control(socket.socket(fileno=int(args["--control-fd"])))
    _thread(relay.run)
    returncode = child.wait()
    _kill_group(child.pid)
    return returncode


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _exit_like(returncode: int) -> int:
    """The relay ends as its child did: the same exit code, or the same signal."""
    if returncode < 0:
        signal.signal(-returncode, signal.SIG_DFL)
        os.kill(os.getpid(), -returncode)
        return 128 - returncode
    return returncode


def _parse(argv: list[str]) -> tuple[dict[str, str], list[str], bool]:
    """(options, command, probe) of `[--probe] [--name value]... -- command...`."""
    options: dict[str, str] = {}
    probe = False
    rest = list(argv)
    while rest and rest[0] != "--":
        name = rest.pop(0)
        if name == "--probe":
            probe = True
        elif name.startswith("--") and rest:
            options[name] = rest.pop(0)
        else:
            raise SystemExit(f"netns_relay: unexpected argument {name!r}")
    return options, rest[1:], probe


def main(argv: list[str] | None = None) -> int:
    options, command, probe = _parse(sys.argv[1:] if argv is None else argv)
    if not probe and not command:
        raise SystemExit("netns_relay: no command to run")
    try:
        host_namespace = _new_namespace()
    except OSError as error:
        print(f"sandbox: no network namespace for the container: {error}", file=sys.stderr)
        return 125  # Docker's "the container could not start"
    if probe:
        return 0
    return _exit_like(_run(options, command, host_namespace))


if __name__ == "__main__":
    sys.exit(main())
