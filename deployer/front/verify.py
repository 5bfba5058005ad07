"""Checks on the raw request, before anything parses it: size, Slack and GitHub signatures.

Every refusal carries a generic body: it says what kind of problem, never which
part of a signature was wrong or what the server expected. Digests are compared
in constant time (`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

SLACK_MAX_AGE = 300  # seconds either way between Slack's timestamp and our clock
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Refusal:
    """A request the front will not handle: the HTTP status and a generic body."""

    status: int
    body: str


TOO_LARGE = Refusal(413, "request too large\n")
BAD_LENGTH = Refusal(400, "bad request\n")
UNSIGNED = Refusal(401, "invalid request signature\n")
NOT_CONFIGURED = Refusal(503, "not configured\n")
WRONG_TYPE = Refusal(415, "unsupported content type\n")
BAD_FORM = Refusal(400, "bad request\n")


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def read_body(stream: Readable, content_length: int | None, limit: int) -> bytes | Refusal:
    """At most `limit` bytes of the body; a refusal when it is (or says it is) larger."""
    if content_length is not None:
        if content_length < 0:
            return BAD_LENGTH
        if content_length > limit:
            return TOO_LARGE
    chunks: list[bytes] = []
    size = 0
    while True:
        # One byte past the limit is enough to know the body is too large.
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            return TOO_LARGE
    return b"".join(chunks)


def _header(headers: Mapping[str, str], name: str) -> str:
    # Mappings from WSGI frameworks are case-insensitive; plain dicts may not be.
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), "")
    return value


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's `X-Slack-Signature` for `body` sent at `timestamp`: `v0=` + hex HMAC-SHA256."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def github_signature(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256` for `body`: `sha256=` + hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def slack_refusal(
    headers: Mapping[str, str], body: bytes, secret: str | None, now: float | None = None
) -> Refusal | None:
    """Why this request did not come from Slack (None when it did)."""
    if not secret:
        return NOT_CONFIGURED
    timestamp = _header(headers, "X-Slack-Request-Timestamp").strip()
    signature = _header(headers, "X-Slack-Signature").strip()
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        return UNSIGNED
    if abs((time.time() if now is None else now) - int(timestamp)) > SLACK_MAX_AGE:
        return UNSIGNED
    expected = slack_signature(secret, timestamp, body)
    if not signature.isascii() or not hmac.compare_digest(expected, signature):
        return UNSIGNED
    return None


def github_refusal(headers: Mapping[str, str], body: bytes, secret: str | None) -> Refusal | None:
    """Why this request did not come from GitHub (None when it did)."""
    if not secret:
        return NOT_CONFIGURED
    signature = _header(headers, "X-Hub-Signature-256").strip()
    expected = github_signature(secret, body)
    if not signature.isascii() or not hmac.compare_digest(expected, signature):
        return UNSIGNED
    return None


def is_form(content_type: str) -> bool:
    """Whether a Content-Type is `application/x-www-form-urlencoded` (what Slack sends)."""
    return content_type.split(";", 1)[0].strip().lower() == "application/x-www-form-urlencoded"
