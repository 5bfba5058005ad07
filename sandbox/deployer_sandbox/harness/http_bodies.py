"""What the sandbox's HTTP host answers with and reads: JSON and text answers, Slack's
429, and the bodies callers send (a JSON object, a multipart form's text fields)."""

from __future__ import annotations

import email.parser
import email.policy
import json
from typing import Any

JSON_TYPE = "application/json; charset=utf-8"

Response = tuple[int, dict[str, str], bytes]


class HttpError(Exception):
    """An answer other than success, with a JSON `{"error": message}` body."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": JSON_TYPE, **(headers or {})}, json.dumps(body).encode()


def text_answer(status: int, body: str, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "text/plain; charset=utf-8", **(headers or {})}, body.encode()


def ratelimited(retry_after: object) -> Response:
    """Slack's answer to a call over a rate limit."""
    body = {"ok": False, "error": "ratelimited"}
    return json_answer(429, body, {"Retry-After": str(retry_after)})


def json_object(body: bytes, what: str) -> dict[str, Any]:
    """The JSON object in a body (empty body: {}); 400 otherwise."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as error:
        raise HttpError(400, f"{what} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise HttpError(400, f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def form_fields(content_type: str, body: bytes) -> dict[str, Any]:
    """Text fields of a multipart/form-data body (slack_sdk sends one when it uploads)."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        if part.get_filename() or not isinstance(payload, bytes):
            fields[name] = "(file)"
        else:
            fields[name] = payload.decode("utf-8", "replace")
    return fields


def form_file(content_type: str, body: bytes) -> bytes:
    """The bytes of a multipart/form-data body's first file part (b"" when it has none)."""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    message = parser.parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if part.get_filename() and isinstance(payload, bytes):
            return payload
    return b""
