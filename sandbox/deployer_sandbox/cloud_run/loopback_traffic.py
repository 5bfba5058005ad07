"""Loopback traffic: requests sent to a service's URL at a steady rate, for a while.

    POST /_sandbox/traffic {"rps": N, "seconds": S, "path": "/",
                            "service": "projects/P/locations/L/services/S"}

sends N x S GET requests to the service's URL (not a tag's), the i-th at i / N seconds
after the start, so the router splits them as the service's traffic says, and the request
log (hence Cloud Monitoring) sees them as it would see users. The answer comes once every
request has been answered (at most `seconds` + the router's timeout later):

    {"service": ..., "url": ..., "path": "/", "sent": N x S, "seconds": elapsed,
     "statuses": {"200": n, "500": m}, "revisions": {"svc-00001-abc": n, ...},
     "errors": k}                  k: requests that got no HTTP answer at all

Bounds: rps 1 to 200, seconds from above 0 to 120, one run at a time (a second one meanwhile
is refused). A private service is called with an ID token for its URL, signed by the
sandbox's key for the project's default compute service account, as a caller with the
invoker role would call it; the door still checks it.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deployer_sandbox.cloud_run.proxy import REVISION_HEADER
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.metadata.id_tokens import IdTokenKey
from deployer_sandbox.metadata.server import default_email

MAX_RPS = 200
MAX_SECONDS = 120
# Enough senders that a slow revision still gets its requests on time: at 200 rps, answers
# up to about a second long (a `latency` fault) keep the pace.
_SENDERS = 256
_TIMEOUT_S = 60.0


class TrafficError(ValueError):
    """A traffic request the sandbox cannot honour: `status` (HTTP) and the message say why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TrafficRequest:
    service: str
    rps: int
    seconds: float
    path: str = "/"

    @classmethod
    def parse(cls, body: dict[str, Any]) -> TrafficRequest:
        """The request in a JSON body; TrafficError(400) naming what is wrong."""
        example = (
            '{"rps": 10, "seconds": 5, "path": "/", "service": "projects/P/locations/L/services/S"}'
        )
        service, rps = body.get("service"), body.get("rps")
        seconds, path = body.get("seconds"), body.get("path", "/")
        unknown = sorted(set(body) - {"service", "rps", "seconds", "path"})
        if unknown:
            raise TrafficError(400, f"unknown field(s) {', '.join(unknown)}; e.g. {example}")
        if not isinstance(service, str) or len(service.split("/")) != 6:
            raise TrafficError(
                400,
                f"service must be a service's name, projects/P/locations/L/services/S; e.g. {example}",
            )
        if isinstance(rps, bool) or not isinstance(rps, int) or not 1 <= rps <= MAX_RPS:
            raise TrafficError(400, f"rps must be a whole number from 1 to {MAX_RPS}")
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= MAX_SECONDS
        ):
            raise TrafficError(400, f"seconds must be a number above 0, at most {MAX_SECONDS}")
        if not isinstance(path, str) or not path.startswith("/"):
            raise TrafficError(400, 'path must start with "/"')
        return cls(service, rps, float(seconds), path)


class LoopbackTraffic:
    """Sends bounded traffic to services' URLs on this machine; one run at a time."""

    def __init__(self, router: Router, id_tokens: IdTokenKey) -> None:
        self._router = router
        self._id_tokens = id_tokens
        self._running = threading.Lock()

    def send(self, request: TrafficRequest) -> dict[str, Any]:
        """Send the traffic and wait for every answer; the counts (see the module doc)."""
        url = self._router.known_service_url(request.service)
        if url is None:
            raise TrafficError(404, f"no service {request.service} is served by the sandbox")
        if not self._running.acquire(blocking=False):
            raise TrafficError(409, "traffic is already being sent; try again when it is done")
        try:
            return self._send(request, url)
        finally:
            self._running.release()

    def _send(self, request: TrafficRequest, url: str) -> dict[str, Any]:
        project = request.service.split("/")[1]
        token = self._id_tokens.sign(url, default_email(project))
        headers = {"Authorization": f"Bearer {token}", "User-Agent": "sandbox-traffic"}
        total = max(1, round(request.rps * request.seconds))
        statuses: Counter[str] = Counter()
        revisions: Counter[str] = Counter()
        errors = 0
        lock = threading.Lock()
        senders = _Senders(url, headers)
        started = time.monotonic()

        def one(index: int) -> None:
            nonlocal errors
            # Paced: the i-th request leaves at i / rps seconds, however the others fare.
            delay = started + index / request.rps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            answer = senders.get(request.path)
            with lock:
                if answer is None:
                    errors += 1
                else:
                    statuses[str(answer[0])] += 1
                    if answer[1]:
                        revisions[answer[1]] += 1

        with ThreadPoolExecutor(
            max_workers=min(_SENDERS, total), thread_name_prefix="traffic"
        ) as pool:
            try:
                for _ in pool.map(one, range(total)):
                    pass
            finally:
                pool.shutdown(wait=True)
                senders.close()
        return {
            "service": request.service,
            "url": url,
            "path": request.path,
            "sent": total,
            "seconds": round(time.monotonic() - started, 3),
            "statuses": dict(statuses),
            "revisions": dict(revisions),
            "errors": errors,
        }


class _Senders:
    """One kept-alive connection per sending thread, all closed at the end."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        target = urlsplit(url)
        self._host, self._port = target.hostname or "127.0.0.1", target.port
        self._headers = headers
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: list[http.client.HTTPConnection] = []

    def get(self, path: str) -> tuple[int, str] | None:
        """GET `path`: (status, revision that answered), None when no answer came."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None:
            try:
                return self._get(connection, path)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The router closed a kept-alive connection between requests: the request
                # never reached it, so sending it again on a new one counts it once.
                self._drop(connection)
        connection = http.client.HTTPConnection(self._host, self._port, timeout=_TIMEOUT_S)
        with self._lock:
            self._open.append(connection)
        self._local.connection = connection
        try:
            return self._get(connection, path)
        except (OSError, http.client.HTTPException):
            self._drop(connection)
            return None

    def _get(self, connection: http.client.HTTPConnection, path: str) -> tuple[int, str]:
        connection.request("GET", path, headers=self._headers)
        response = connection.getresponse()
        response.read()
        if (response.getheader("Connection") or "").lower() == "close":
            self._drop(connection)
        return response.status, response.getheader(REVISION_HEADER) or ""

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None

    def close(self) -> None:
        with self._lock:
            for connection in self._open:
                connection.close()
            self._open.clear()
