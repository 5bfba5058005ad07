"""The sandbox's front end for Cloud Run: a URL per service and per traffic tag.

    Router
    ├── service URL  http://127.0.0.1:P   weighted random pick over the traffic split
    └── tag URL      http://127.0.0.1:Q   straight to the tagged revision
            └── proxy -> revision process (RunningRevision.url), adds X-Sandbox-Revision

Each URL is its own listener so that, as on Cloud Run, a tag's URL keeps
pointing at its revision whatever happens to the split. `/health` requests are
where the health faults bite: `health_500` answers 500 in the revision's name,
`health_hang` holds the request without answering (bounded).

Access follows the service's IAM policy (`run_iam.py` calls `set_public`): a
public service (allUsers holds roles/run.invoker) takes any request; a private
one (the default) answers 403 with the page Google's front end gives, unless
the request carries `Authorization: Bearer ...` (or Cloud Run's
`X-Serverless-Authorization`). The sandbox cannot verify a Google ID token, so
any bearer token passes: it tests that callers send one, not who they are.
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from deployer.sandbox.faults import Faults

log = logging.getLogger(__name__)

REVISION_HEADER = "X-Sandbox-Revision"
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
class _Target:
    revision: str
    backend: str  # http://host:port


@dataclass(frozen=True)
class _Refusal:
    status: int
    text: str


@dataclass(frozen=True)
class _Forbidden:
    """The caller may not invoke this service: it is private and the request has no token."""


# A listener asks its route where a request goes (saying whether the request carries a
# bearer token): a revision, or an answer of its own.
_Pick = Callable[[bool], "_Target | _Refusal | _Forbidden"]

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
_AUTH_HEADERS = ("Authorization", "X-Serverless-Authorization")


@dataclass
class _Route:
    split: list[tuple[_Target, int]] = field(default_factory=list)
    tags: dict[str, _Target] = field(default_factory=dict)
    public: bool = False  # allUsers may invoke (the service's IAM policy)
    service_listener: _Listener | None = None
    tag_listeners: dict[str, _Listener] = field(default_factory=dict)


class _Listener:
    """One URL: a threading HTTP server on its own loopback port."""

    def __init__(
        self,
        host: str,
        pick: _Pick,
        faults: Faults,
        closing: threading.Event,
        request_timeout: float,
    ) -> None:
        handler = type(
            "RouteHandler",
            (_ProxyHandler,),
            {
                "pick": staticmethod(pick),
                "faults": faults,
                "closing": closing,
                "request_timeout": request_timeout,
            },
        )
        self.server = ThreadingHTTPServer((host, 0), handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"router-{self.server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class _ProxyHandler(BaseHTTPRequestHandler):
    """Proxies one request to the revision its listener picks."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: Nagle would hold the body ~40 ms.
    disable_nagle_algorithm = True
    pick: _Pick
    faults: Faults
    closing: threading.Event
    request_timeout: float

    def log_message(self, format: str, *args: object) -> None:
        log.debug("router %s: " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._proxy()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def _proxy(self) -> None:
        body = self._read_body()
        choice = self.pick(self._has_bearer())
        if isinstance(choice, _Forbidden):
            page = _FORBIDDEN_PAGE.format(path=escape(urlsplit(self.path).path or "/"))
            self._answer(403, page, content_type="text/html; charset=UTF-8")
            return
        if isinstance(choice, _Refusal):
            self._answer(choice.status, choice.text)
            return
        if urlsplit(self.path).path == "/health" and self._health_fault(choice.revision):
            return
        try:
            status, reason, headers, payload = self._forward(choice, body)
        except (OSError, http.client.HTTPException) as error:
            timed_out = isinstance(error, TimeoutError | socket.timeout)
            if timed_out:
                self._answer(504, "upstream request timeout", choice.revision)
            else:
                text = f"Service Unavailable: revision {choice.revision} is not reachable."
                self._answer(503, text, choice.revision)
            return
        self.send_response(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header(REVISION_HEADER, choice.revision)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _has_bearer(self) -> bool:
        """Whether the request carries a bearer token (any: the sandbox cannot verify one)."""
        for name in _AUTH_HEADERS:
            scheme, _, token = (self.headers.get(name) or "").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return True
        return False

    def _forward(
        self, target: _Target, body: bytes
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


def _end_to_end(headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers without the hop-by-hop ones, including those `Connection` names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in _HOP_BY_HOP | named]


class Router:
    """Listeners for every service URL and tag URL, proxying to revisions. Thread-safe."""

    def __init__(
        self, faults: Faults, host: str = "127.0.0.1", request_timeout: float = 300.0
    ) -> None:
        self._faults = faults
        self._host = host
        self._request_timeout = request_timeout
        self._lock = threading.Lock()
        self._routes: dict[str, _Route] = {}
        self._closing = threading.Event()

    def service_url(self, service: str) -> str:
        """The service's URL (stable for its lifetime); starts its listener on first use."""
        with self._lock:
            route = self._route(service)
            if route.service_listener is None:
                route.service_listener = self._listen(
                    lambda bearer: self._pick_split(service, bearer)
                )
            return route.service_listener.url

    def tag_url(self, service: str, tag: str) -> str:
        """The URL of a traffic tag of the service (stable, 404 while no such tag)."""
        with self._lock:
            route = self._route(service)
            listener = route.tag_listeners.get(tag)
            if listener is None:
                listener = self._listen(lambda bearer: self._pick_tag(service, tag, bearer))
                route.tag_listeners[tag] = listener
            return listener.url

    def update(
        self,
        service: str,
        split: Sequence[tuple[str, str, int]],
        tags: Mapping[str, tuple[str, str]],
    ) -> None:
        """Route the service's traffic: (revision, backend url, percent) and tag -> (revision, url)."""
        targets = [(_Target(revision, url), percent) for revision, url, percent in split]
        if targets and sum(percent for _, percent in targets) != 100:
            raise ValueError("traffic percents must sum to 100")
        if any(percent < 0 for _, percent in targets):
            raise ValueError("traffic percents must not be negative")
        tagged = {tag: _Target(revision, url) for tag, (revision, url) in tags.items()}
        with self._lock:
            route = self._route(service)
            route.split = targets
            route.tags = tagged

    def set_public(self, service: str, public: bool) -> None:
        """Whether anyone may call the service's URLs (else only requests with a bearer token)."""
        with self._lock:
            self._route(service).public = public

    def remove(self, service: str) -> None:
        """Stop every listener of the service; its URLs stop answering."""
        with self._lock:
            route = self._routes.pop(service, None)
        if route is not None:
            _close_all(route)

    def close(self) -> None:
        """Stop every listener. Idempotent."""
        self._closing.set()
        with self._lock:
            routes = list(self._routes.values())
            self._routes.clear()
        for route in routes:
            _close_all(route)

    def _route(self, service: str) -> _Route:
        if self._closing.is_set():
            raise RuntimeError("the router is closed")
        return self._routes.setdefault(service, _Route())

    def _listen(self, pick: _Pick) -> _Listener:
        return _Listener(self._host, pick, self._faults, self._closing, self._request_timeout)

    def _pick_split(self, service: str, bearer: bool) -> _Target | _Refusal | _Forbidden:
        with self._lock:
            route = self._routes.get(service)
            split = list(route.split) if route else []
            public = route is not None and route.public
        if not (public or bearer):
            return _Forbidden()
        live = [(target, percent) for target, percent in split if percent > 0]
        if not live:
            return _Refusal(503, "Service Unavailable: no revision is ready to serve traffic.")
        chosen: _Target = random.choices(
            [target for target, _ in live], weights=[percent for _, percent in live]
        )[0]
        return chosen

    def _pick_tag(self, service: str, tag: str, bearer: bool) -> _Target | _Refusal | _Forbidden:
        with self._lock:
            route = self._routes.get(service)
            target = route.tags.get(tag) if route else None
            public = route is not None and route.public
        if not (public or bearer):
            return _Forbidden()
        if target is None:
            return _Refusal(404, f"Not Found: no traffic tag {tag!r} on this service.")
        return target


def _close_all(route: _Route) -> None:
    listeners = [route.service_listener, *route.tag_listeners.values()]
    for listener in listeners:
        if listener is not None:
            listener.close()
