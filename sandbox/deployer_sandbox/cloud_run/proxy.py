"""Proxies one request to the revision its URL's route picks, or answers for the route.

A request that reaches a revision meets, in this order: an armed `latency` for the
revision (a sleep, health requests included), an armed `error_rate` (that share of
non-health requests answered 500, the app never sees them), the health faults (on
`/health`), then the revision itself. Its answer, whoever gave it (the app, a fault, or
the router's own 503/504), is told to `on_answer` once written, with the latency
measured from the request's headers read to the answer's last byte written: the
route's request log (`cloud_run.request_log`). Answers given without a revision (the
door's 401/403, no revision ready, an unknown tag) and held health requests, which
never answer, are not logged.

Health paths: the router cannot know which path a deployer probes, so `/health` and
`/healthz` count as health for `error_rate` (a probe then fails only by `health_500`).
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from deployer_sandbox.common.faults import Fault, Faults

# Under the router's name: its request lines are the router's to log.
log = logging.getLogger("deployer_sandbox.cloud_run.router")

REVISION_HEADER = "X-Sandbox-Revision"
# Where deployers probe health (the sample service's /health, the deployer's own /healthz).
HEALTH_PATHS = frozenset({"/health", "/healthz"})
_HANG_LIMIT = 60.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True)
class Target:
    """A revision and where its process listens."""

    revision: str
    backend: str  # http://host:port


@dataclass(frozen=True)
class Refusal:
    """An answer the route gives itself (no revision to send the request to)."""

    status: int
    text: str


@dataclass(frozen=True)
class Forbidden:
    """The caller may not invoke this service, which is private.

    403: no token, or a valid ID token for another audience; 401: a token that is
    not a valid ID token (malformed, not signed by the sandbox, expired).
    """

    status: int = 403


# A listener asks its route where a request goes, giving the request's bearer token
# (None without one): a revision, or an answer of its own.
Pick = Callable[[str | None], "Target | Refusal | Forbidden"]
# Told of every answer a revision's request got: (revision, HTTP status, latency in ms).
OnAnswer = Callable[[str, int, float], None]

# Google's front end, refusing a request to a private Cloud Run service.
_FORBIDDEN_PAGE = """<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>403 Forbidden</title>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Forbidden</h1>
<h2>Your client does not have permission to get URL <code>{path}</code> from this server.</h2>
<h2></h2>
</body></html>
"""
# ... and refusing a token it cannot verify (the page as google/adk-python#3814 quotes it).
_UNAUTHORIZED_PAGE = """<html><head>
<meta http-equiv="content-type" content="text/html;charset=utf-8">
<title>401 Unauthorized</title>
</head>
<body text=#000000 bgcolor=#ffffff>
<h1>Error: Unauthorized</h1>
<h2>Your client does not have permission to the requested URL <code>{path}</code>.</h2>
<h2></h2>
</body></html>
"""
# Cloud Run reads X-Serverless-Authorization first, so that Authorization stays the
# application's own (GoogleCloudPlatform/cloud-run-proxy#25).
_AUTH_HEADERS = ("X-Serverless-Authorization", "Authorization")


class ProxyHandler(BaseHTTPRequestHandler):
    """Proxies one request to the revision its listener picks."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: Nagle would hold the body ~40 ms.
    disable_nagle_algorithm = True
    pick: Pick
    faults: Faults
    closing: threading.Event
    request_timeout: float
    on_answer: OnAnswer | None = None
    _status: int | None = None

    def send_response(self, code: int, message: str | None = None) -> None:
        # The status the client sees, whoever answers: what the request log records.
        self._status = code
        super().send_response(code, message)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("router %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _proxy(self) -> None:
        started = time.monotonic()
        self._status = None
        choice = self._route_request()
        if isinstance(choice, Target) and self._status is not None and self.on_answer:
            latency_ms = (time.monotonic() - started) * 1000
            self.on_answer(choice.revision, self._status, latency_ms)

    def _route_request(self) -> Target | Refusal | Forbidden:
        """Answer the request; the route's choice (the revision that had it, if any)."""
        body = self._read_body()
        choice = self.pick(self._bearer())
        if isinstance(choice, Forbidden):
            template = _UNAUTHORIZED_PAGE if choice.status == 401 else _FORBIDDEN_PAGE
            page = template.format(path=escape(urlsplit(self.path).path or "/"))
            self._answer(choice.status, page, content_type="text/html; charset=UTF-8")
            return choice
        if isinstance(choice, Refusal):
            self._answer(choice.status, choice.text)
            return choice
        path = urlsplit(self.path).path
        if (delay := self.faults.take("latency", choice.revision)) is not None:
            time.sleep(int(delay.params["ms"]) / 1000)
        if path not in HEALTH_PATHS and _fails(self.faults.take("error_rate", choice.revision)):
            text = f"Internal Server Error: sandbox fault error_rate on {choice.revision}."
            self._answer(500, text, choice.revision)
            return choice
        if path == "/health" and self._health_fault(choice.revision):
            return choice
        try:
            status, reason, headers, payload = self._forward(choice, body)
        except (OSError, http.client.HTTPException) as error:
            timed_out = isinstance(error, TimeoutError | socket.timeout)
            if timed_out:
                self._answer(504, "upstream request timeout", choice.revision)
            else:
                text = f"Service Unavailable: revision {choice.revision} is not reachable."
                self._answer(503, text, choice.revision)
            return choice
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header(REVISION_HEADER, choice.revision)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        return choice

    def _bearer(self) -> str | None:
        """The request's bearer token, X-Serverless-Authorization's first; None without one."""
        for name in _AUTH_HEADERS:
            scheme, _, token = (self.headers.get(name) or "").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        return None

    def _forward(
        self, target: Target, body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        backend = urlsplit(target.backend)
        connection = http.client.HTTPConnection(
            backend.hostname or "127.0.0.1", backend.port, timeout=self.request_timeout
        )
        try:
            connection.putrequest(
                self.command, self.path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in _end_to_end(self.headers.items()):
                if name.lower() != "content-length":
                    connection.putheader(name, value)
            connection.putheader("X-Forwarded-For", self.client_address[0])
            connection.putheader("X-Forwarded-Proto", "http")
            if body or self.command in ("POST", "PUT", "PATCH"):
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body or None)
            response = connection.getresponse()
            payload = response.read()
            headers = [
                (name, value)
                for name, value in _end_to_end(response.getheaders())
                if self.command == "HEAD" or name.lower() != "content-length"
            ]
            return response.status, response.reason, headers, payload
        finally:
            connection.close()

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _health_fault(self, revision: str) -> bool:
        if self.faults.take("health_500", revision) is not None:
            detail = json.dumps({"status": "unhealthy", "detail": "sandbox fault"})
            self._answer(500, detail, revision, content_type="application/json")
            return True
        if self.faults.take("health_hang", revision) is not None:
            self._hang()
            return True
        return False

    def _hang(self) -> None:
        """Hold the request, answering nothing, until the client leaves (at most a minute)."""
        self.close_connection = True
        deadline = time.monotonic() + _HANG_LIMIT
        while time.monotonic() < deadline and not self.closing.is_set():
            readable, _, _ = select.select([self.connection], [], [], 0.1)
            if readable:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return  # the client hung up
                except OSError:
                    return
                # The client sent more bytes (a pipelined request): keep ignoring it.
                time.sleep(0.1)

    def _answer(
        self,
        status: int,
        text: str,
        revision: str | None = None,
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if revision is not None:
            self.send_header(REVISION_HEADER, revision)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _fails(fault: Fault | None) -> bool:
    """Whether an armed `error_rate` fails this request: a draw against its rate."""
    return fault is not None and random.random() < float(fault.params["rate"])


def _end_to_end(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones, including those `Connection` names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP | named]
