"""Source uploads for Cloud Functions: the signed URLs GenerateUploadUrl hands out.

    GenerateUploadUrl(parent projects/P/locations/L)
        -> upload_url      http://127.0.0.1:PORT/BUCKET/OBJECT?X-Goog-Signature=TOKEN
           storage_source  bucket gcf-v2-uploads-NUMBER-L, object UUID.zip
    PUT upload_url, Content-Type: application/zip, the zip as the body
        200                 stored: `build_config.source.storage_source` may name it
        403 SignatureDoesNotMatch   another Content-Type (the URL is signed for
                                    application/zip), or a token this store never gave
        400 EntityTooLarge  more than 100 MiB (104857600 bytes)
        405                 any verb but PUT

The URL plays a Cloud Storage V4 signed URL: the clients that deploy functions
(gcloud, google-github-actions/deploy-cloud-functions' `uploadSource`, the Firebase CLI)
all PUT the zip with `content-type: application/zip` and
`x-goog-content-length-range: 0,104857600`, the headers the URL is signed for. The bytes
are not checked here: a body that is not a zip fails the function's build, as on Google.
The store serves on a port of its own (the storage host), not the Slack sink's, whose
bodies are capped at 1 MiB.
"""

from __future__ import annotations

import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from deployer_sandbox.common.serving import Serving

log = logging.getLogger(__name__)

# The range gcloud and the deploy actions sign into the URL: 0 to 100 MiB, which is also
# Cloud Functions' limit on a source archive uploaded through the API
# (https://cloud.google.com/functions/quotas#resource_limits: "100MB (compressed) for sources").
MAX_SOURCE_BYTES = 104_857_600
ZIP_CONTENT_TYPE = "application/zip"


@dataclass(frozen=True)
class UploadTicket:
    """One upload URL GenerateUploadUrl gave: where its bytes go."""

    bucket: str
    object: str
    url: str


class SourceUploads:
    """The upload URLs handed out and the archives PUT to them. Thread-safe."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, UploadTicket] = {}  # token -> ticket
        self._objects: dict[tuple[str, str], bytes] = {}
        self._server = ThreadingHTTPServer((host, 0), _UploadHandler)
        self._server.daemon_threads = True
        self._server.uploads = self  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._serving = Serving(self._server, "function-uploads")

    def start(self) -> None:
        self._serving.start()

    def close(self) -> None:
        self._serving.close()

    def ticket(self, project_number: str, location: str) -> UploadTicket:
        """A new upload URL for a source archive of a function in `location`."""
        # The upload bucket 2nd-gen functions use: gcf-v2-uploads-NUMBER-REGION (gcloud
        # prints it in "Uploading source" errors; e.g. GoogleCloudPlatform/functions-framework
        # issues quote gcf-v2-uploads-<number>-us-central1).
        bucket = f"gcf-v2-uploads-{project_number}-{location}"
        name = f"{uuid.uuid4()}.zip"
        token = secrets.token_urlsafe(24)
        ticket = UploadTicket(
            bucket,
            name,
            f"{self.url}/{bucket}/{name}?X-Goog-Algorithm=GOOG4-RSA-SHA256"
            f"&X-Goog-Signature={token}",
        )
        with self._lock:
            self._tickets[token] = ticket
        return ticket

    def read(self, bucket: str, name: str) -> bytes | None:
        """The archive uploaded as gs://bucket/name, or None when nothing was PUT there."""
        with self._lock:
            return self._objects.get((bucket, name))

    def put(self, bucket: str, name: str, data: bytes) -> None:
        """Store an archive directly (tests, the harness)."""
        with self._lock:
            self._objects[(bucket, name)] = data

    def _accept(self, path: str, token: str) -> UploadTicket | None:
        with self._lock:
            ticket = self._tickets.get(token)
        if ticket is None or path != f"/{ticket.bucket}/{ticket.object}":
            return None
        return ticket


def _xml_error(code: str, message: str) -> bytes:
    """Cloud Storage's XML API error body."""
    return (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()


class _UploadHandler(BaseHTTPRequestHandler):
    server: Any

    def do_PUT(self) -> None:
        uploads: SourceUploads = self.server.uploads
        parts = urlsplit(self.path)
        token = (parse_qs(parts.query).get("X-Goog-Signature") or [""])[0]
        ticket = uploads._accept(parts.path, token)
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        length = int(self.headers.get("Content-Length") or 0)
        if ticket is None or content_type != ZIP_CONTENT_TYPE:
            # A signed URL covers its signed headers: another Content-Type does not match.
            self._drain(length)
            return self._answer(
                403,
                _xml_error(
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you "
                    "provided. Check your Google secret key and signing method.",
                ),
            )
        if length > MAX_SOURCE_BYTES:
            self._drain(length)
            return self._answer(
                400,
                _xml_error(
                    "EntityTooLarge",
                    "Your proposed upload is larger than the maximum object size specified "
                    "in your Policy Document.",
                ),
            )
        uploads.put(ticket.bucket, ticket.object, self.rfile.read(length))
        self._answer(200, b"")

    def do_GET(self) -> None:
        self._answer(405, _xml_error("MethodNotAllowed", "Use PUT."))

    do_POST = do_GET
    do_DELETE = do_GET

    def _drain(self, length: int) -> None:
        remaining = min(length, MAX_SOURCE_BYTES)
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        self.close_connection = True

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        if body:
            self.send_header("Content-Type", "application/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("function uploads: " + format, *args)
