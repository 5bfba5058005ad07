"""Cloud Storage's JSON API on a port of its own, for `STORAGE_EMULATOR_HOST` (the variable
google-cloud-storage itself reads: "Despite name, includes scheme", `storage/_helpers.py`).

    GET  /storage/v1/b/BUCKET                       the bucket, or 404 notFound
    POST /storage/v1/b?project=P  {"name", "location"}   created (location US when none,
                                                    as the API defaults), 409 conflict if taken
    POST /upload/storage/v1/b/BUCKET/o?uploadType=media&name=N    body = the object
                                 ...?uploadType=multipart         metadata part + media part
                                 ...?uploadType=resumable         a session URL (Location);
    PUT  {session URL}  Content-Range: bytes A-B/T                 308 + Range until all T
                                                                   bytes came, then the object
    GET  /storage/v1/b/BUCKET/o/NAME                the object's metadata; `alt=media`: its bytes
    GET  /download/storage/v1/b/BUCKET/o/NAME?alt=media            its bytes

NAME is one path segment, percent-encoded (`source%2Fa.tgz`). Downloads carry
`X-Goog-Hash: crc32c=...,md5=...` and `X-Goog-Generation`, which the client checks the
bytes against. Uploads that state a `crc32c` or `md5Hash` are checked against the bytes
(400 when they differ, as the API refuses them). Preconditions: `ifGenerationMatch`.
No authentication: the client sends anonymous credentials to an emulator host.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from deployer_sandbox.common.serving import Serving
from deployer_sandbox.storage.objects import ObjectStore, StorageError, StoredObject
from deployer_sandbox.storage.wire import (
    bucket_resource,
    error_body,
    invalid,
    object_resource,
    read_json,
    split_multipart,
)

log = logging.getLogger(__name__)
MAX_BODY = 512 * 1024 * 1024  # the sandbox's own bound on one request


class _Session:
    """A resumable upload under way."""

    def __init__(self, bucket: str, metadata: dict[str, Any], content_type: str) -> None:
        self.bucket, self.metadata, self.content_type = bucket, metadata, content_type
        self.data = bytearray()


class CloudStorage:
    """The HTTP server over `objects`; `url` is what STORAGE_EMULATOR_HOST names."""

    def __init__(self, objects: ObjectStore | None = None, host: str = "127.0.0.1") -> None:
        self.objects = objects or ObjectStore()
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), _Handler)
        self._server.daemon_threads = True
        self._server.storage = self  # type: ignore[attr-defined]
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._serving = Serving(self._server, "cloud-storage")

    def start(self) -> None:
        self._serving.start()

    def close(self) -> None:
        self._serving.close()

    # --- requests, answered as (status, headers, body) ------------------------------

    def handle(
        self, verb: str, raw_path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = parts.path.strip("/").split("/")
        try:
            return self._route(verb, segments, query, headers, body)
        except StorageError as error:
            return error.status, {"Content-Type": "application/json"}, error_body(error)

    def _route(
        self,
        verb: str,
        segments: list[str],
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, dict[str, str], bytes]:
        api = segments[:3]
        rest = segments[3:]
        if api == ["storage", "v1", "b"]:
            if verb == "POST" and not rest:
                return self._insert_bucket(query, body)
            if verb == "GET" and len(rest) == 1:
                return _json(bucket_resource(self.objects.bucket(unquote(rest[0])), self.url))
            if verb == "GET" and len(rest) == 3 and rest[1] == "o":
                stored = self.objects.get(unquote(rest[0]), unquote(rest[2]))
                return self._object(stored, query)
        if segments[:4] == ["download", "storage", "v1", "b"] and verb == "GET":
            tail = segments[4:]
            if len(tail) == 3 and tail[1] == "o":
                stored = self.objects.get(unquote(tail[0]), unquote(tail[2]))
                return self._object(stored, {**query, "alt": "media"})
        if segments[:4] == ["upload", "storage", "v1", "b"]:
            tail = segments[4:]
            if len(tail) == 2 and tail[1] == "o":
                bucket = unquote(tail[0])
                if verb == "POST":
                    return self._upload(bucket, query, headers, body)
                if verb == "PUT" and query.get("upload_id"):
                    return self._resume(query["upload_id"], headers, body)
        raise StorageError(404, "notFound", "Not Found")

    def _insert_bucket(
        self, query: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        wanted = read_json(body)
        name = str(wanted.get("name") or "")
        if not name:
            raise StorageError(400, "required", "Required")
        if not query.get("project"):
            raise invalid("Invalid argument: project is required.")
        bucket = self.objects.create_bucket(name, query["project"], str(wanted.get("location", "")))
        return _json(bucket_resource(bucket, self.url))

    def _object(
        self, stored: StoredObject, query: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        wanted = int(query.get("generation") or 0)
        if wanted and wanted != stored.generation:
            raise StorageError(404, "notFound", f"No such object: {stored.bucket}/{stored.name}")
        if query.get("alt") != "media":
            return _json(object_resource(stored, self.url))
        return (
            200,
            {
                "Content-Type": stored.content_type,
                "X-Goog-Hash": f"crc32c={stored.crc32c},md5={stored.md5}",
                "X-Goog-Generation": str(stored.generation),
                "X-Goog-Stored-Content-Length": str(len(stored.data)),
            },
            stored.data,
        )

    def _upload(
        self, bucket: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        kind = query.get("uploadType", "")
        content_type = headers.get("content-type", "application/octet-stream")
        if kind == "media":
            return self._store(bucket, {"name": query.get("name", "")}, content_type, body, query)
        if kind == "multipart":
            metadata, media_type, data = split_multipart(content_type, body)
            return self._store(bucket, metadata, media_type, data, query)
        if kind == "resumable":
            self.objects.bucket(bucket)  # a missing bucket fails the session's start
            metadata = read_json(body)
            media_type = headers.get("x-upload-content-type") or str(
                metadata.get("contentType") or "application/octet-stream"
            )
            upload_id = uuid.uuid4().hex
            with self._lock:
                self._sessions[upload_id] = _Session(
                    bucket, {**metadata, **_name(query)}, media_type
                )
            location = (
                f"{self.url}/upload/storage/v1/b/{bucket}/o?uploadType=resumable"
                f"&upload_id={upload_id}"
            )
            precondition = query.get("ifGenerationMatch")
            if precondition is not None:
                location += f"&ifGenerationMatch={precondition}"
            return 200, {"Location": location, "Content-Length": "0"}, b""
        raise invalid(f"Invalid upload type {kind!r}: use media, multipart or resumable.")

    def _resume(
        self, upload_id: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            session = self._sessions.get(upload_id)
        if session is None:
            raise StorageError(404, "notFound", "No such upload session.")
        # Content-Range: "bytes A-B/T", "bytes */T" (final, nothing new) or "bytes A-B/*".
        spec = headers.get("content-range", "").removeprefix("bytes ").strip()
        span, _, total = spec.partition("/")
        if span != "*" and body:
            start = int(span.partition("-")[0])
            if start != len(session.data):
                raise invalid(
                    f"Invalid request: the upload has {len(session.data)} bytes, not {start}."
                )
            session.data.extend(body)
        if total in ("", "*") or len(session.data) < int(total):
            received = {"Range": f"bytes=0-{len(session.data) - 1}"} if session.data else {}
            return 308, {**received, "Content-Length": "0"}, b""
        with self._lock:
            self._sessions.pop(upload_id, None)
        return self._store(
            session.bucket, session.metadata, session.content_type, bytes(session.data), {}
        )

    def _store(
        self,
        bucket: str,
        metadata: dict[str, Any],
        content_type: str,
        data: bytes,
        query: dict[str, str],
    ) -> tuple[int, dict[str, str], bytes]:
        name = str(metadata.get("name") or query.get("name") or "")
        if not name:
            raise StorageError(400, "required", "Required")
        self.objects.bucket(bucket)
        _check_hashes(metadata, data)
        precondition = query.get("ifGenerationMatch")
        stored = self.objects.put(
            bucket,
            name,
            data,
            str(metadata.get("contentType") or content_type),
            int(precondition) if precondition is not None else None,
        )
        return _json(object_resource(stored, self.url))


def _name(query: dict[str, str]) -> dict[str, str]:
    return {"name": query["name"]} if query.get("name") else {}


def _check_hashes(metadata: dict[str, Any], data: bytes) -> None:
    """A stated checksum must match the bytes: the API refuses the upload otherwise."""
    probe = StoredObject("", "", 0, data, "", 0.0)
    for field, actual in (("crc32c", probe.crc32c), ("md5Hash", probe.md5)):
        stated = metadata.get(field)
        if stated and base64.b64decode(str(stated)) != base64.b64decode(actual):
            raise invalid(
                f'Provided {field} "{stated}" doesn\'t match calculated {field} "{actual}".'
            )


def _json(resource: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json; charset=UTF-8"}, json.dumps(resource).encode()


class _Handler(BaseHTTPRequestHandler):
    server: Any
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        storage: CloudStorage = self.server.storage
        length = int(self.headers.get("Content-Length") or 0)
        headers: dict[str, str]
        if length > MAX_BODY:
            self.close_connection = True
            status, headers, body = 413, {}, b""
        else:
            received = self.rfile.read(length) if length else b""
            lowered = {k.lower(): v for k, v in self.headers.items()}
            status, headers, body = storage.handle(self.command, self.path, lowered, received)
        self.send_response(status)
        for key, value in headers.items():
            if key != "Content-Length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("cloud storage: " + format, *args)
