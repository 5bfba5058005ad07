"""The sandbox's HTTP port on the wire: bodies read with a bound (chunked refused, an
oversized one drained so the 413 arrives), every answer given as a server gives it, a
sandbox bug included (a 500, never a traceback). What each route answers is
`http_server.SandboxHttp.handle`'s."""

from __future__ import annotations

import logging
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from deployer_sandbox.harness.http_bodies import HttpError, json_answer

if TYPE_CHECKING:
    from deployer_sandbox.harness.http_server import SandboxHttp

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
_DRAIN_LIMIT = 16 * MAX_BODY  # read (and drop) this much of an oversized body so the 413 arrives


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], front: SandboxHttp) -> None:
        self.front = front
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: HttpServer
    server_version = "SandboxSlack/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def _serve(self, verb: str) -> None:
        try:
            body = self._read_body()
            status, headers, payload = self.server.front.handle(verb, self.path, self.headers, body)
        except HttpError as error:
            status, headers, payload = json_answer(
                error.status, {"error": error.message}, error.headers
            )
        except Exception:
            # A sandbox bug must still answer like a server, never with a traceback.
            log.exception("sandbox http: %s %s failed", verb, self.path)
            status, headers, payload = json_answer(500, {"error": "internal sandbox error"})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise HttpError(411, "send a Content-Length; chunked bodies are not accepted")
        raw = self.headers.get("Content-Length", "0") or "0"
        try:
            length = int(raw)
        except ValueError:
            raise HttpError(400, f"bad Content-Length {raw!r}") from None
        if length < 0:
            raise HttpError(400, f"bad Content-Length {raw!r}")
        if length > MAX_BODY:
            self._drain(length)
            raise HttpError(413, f"body of {length} bytes exceeds the {MAX_BODY}-byte limit")
        return self.rfile.read(length)

    def _drain(self, length: int) -> None:
        # Reading the rest lets the client finish sending and see the 413
        # instead of a reset connection.
        remaining = min(length, _DRAIN_LIMIT)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 64 * 1024))
            if not chunk:
                break
            remaining -= len(chunk)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox http: " + format, *args)
