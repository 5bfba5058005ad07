"""Cloud Storage's JSON API resources and request bodies, as the sandbox writes and reads them.

bucket resource   storage#bucket (cloud.google.com/storage/docs/json_api/v1/buckets)
object resource   storage#object (.../json_api/v1/objects): generation, size, md5Hash
                  and crc32c as strings, as the API sends them
error body        {"error": {"code", "message", "errors": [{"domain": "global",
                  "reason", "message"}]}} (.../json_api/v1/status-codes)
multipart body    multipart/related: the JSON metadata part, then the media part
                  (.../uploads/multipart-upload)
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

from deployer_sandbox.resource_manager.projects import number_of
from deployer_sandbox.storage.objects import Bucket, StorageError, StoredObject


def _rfc3339(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"


def bucket_resource(bucket: Bucket, base: str) -> dict[str, Any]:
    return {
        "kind": "storage#bucket",
        "id": bucket.name,
        "name": bucket.name,
        "selfLink": f"{base}/storage/v1/b/{bucket.name}",
        "projectNumber": number_of(bucket.project),
        "location": bucket.location,
        "locationType": "multi-region" if bucket.location in ("US", "EU", "ASIA") else "region",
        "storageClass": "STANDARD",
        "metageneration": "1",
        "etag": "CAE=",
        "timeCreated": _rfc3339(bucket.created),
        "updated": _rfc3339(bucket.created),
    }


def object_resource(stored: StoredObject, base: str) -> dict[str, Any]:
    path = f"b/{stored.bucket}/o/{quote(stored.name, safe='')}"
    return {
        "kind": "storage#object",
        "id": f"{stored.bucket}/{stored.name}/{stored.generation}",
        "selfLink": f"{base}/storage/v1/{path}",
        "mediaLink": f"{base}/download/storage/v1/{path}?generation={stored.generation}&alt=media",
        "name": stored.name,
        "bucket": stored.bucket,
        "generation": str(stored.generation),
        "metageneration": "1",
        "contentType": stored.content_type,
        "storageClass": "STANDARD",
        "size": str(len(stored.data)),
        "md5Hash": stored.md5,
        "crc32c": stored.crc32c,
        "etag": "CAE=",
        "timeCreated": _rfc3339(stored.created),
        "updated": _rfc3339(stored.created),
    }


def error_body(error: StorageError) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": error.status,
                "message": error.message,
                "errors": [{"message": error.message, "domain": "global", "reason": error.reason}],
            }
        }
    ).encode()


def invalid(message: str) -> StorageError:
    return StorageError(400, "invalid", message)


def read_json(body: bytes) -> dict[str, Any]:
    """A JSON object body (an empty body is `{}`); 400 `parseError` otherwise."""
    if not body.strip():
        return {}
    try:
        found = json.loads(body)
    except ValueError:
        raise StorageError(400, "parseError", "Parse Error") from None
    if not isinstance(found, dict):
        raise StorageError(400, "parseError", "Parse Error")
    return found


def split_multipart(content_type: str, body: bytes) -> tuple[dict[str, Any], str, bytes]:
    """(metadata, media content type, media bytes) of a multipart/related upload body."""
    boundary = ""
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip('"')
    if not content_type.lower().startswith("multipart/related") or not boundary:
        raise invalid("Multipart uploads need Content-Type multipart/related with a boundary.")
    delimiter = b"--" + boundary.encode()
    parts = body.split(delimiter)
    # parts: preamble, part 1, part 2, "--" epilogue
    found = [p for p in parts[1:] if not p.startswith(b"--")]
    if len(found) != 2:
        raise invalid("Multipart upload must have exactly two parts: metadata and media.")
    sections = []
    for part in found:
        head, separator, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not separator:
            raise invalid("Malformed multipart part.")
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        sections.append((headers, content.removesuffix(b"\r\n")))
    metadata = read_json(sections[0][1])
    media_type = sections[1][0].get("content-type", "application/octet-stream")
    return metadata, media_type, sections[1][1]
