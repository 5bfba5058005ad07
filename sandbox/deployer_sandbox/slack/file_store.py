"""The sandbox Slack workspace's files: uploads begun, their bytes, and where each was shared.

One file moves through three states, as Slack's external upload does
(https://api.slack.com/methods/files.getUploadURLExternal, "Usage info"):

    begun      files.getUploadURLExternal gave it an id and an upload URL (its length
               declared)
    uploaded   the bytes were POSTed to the upload URL, exactly `length` of them
    completed  files.completeUploadExternal shared it (or kept it private); "This method
               can only be called once" (https://api.slack.com/methods/
               files.completeUploadExternal), so a completed file is done for good

Kept apart from the wire: `slack.files` reads the Web API's arguments, the HTTP host
serves the upload URL, and both change the state through this module's methods, with
the workspace's lock held.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass


@dataclass
class SlackFile:
    id: str
    filename: str
    length: int  # declared by files.getUploadURLExternal
    upload_token: str  # the capability in the upload URL
    created: float
    alt_txt: str | None = None
    content: bytes | None = None  # once uploaded
    completed: bool = False
    title: str = ""
    channel: str | None = None  # where it was shared; None: kept private
    thread_ts: str | None = None
    ts: str | None = None  # the message that shows it

    def to_json(self) -> dict[str, object]:
        """What `GET /_sandbox/slack/files` lists for a completed file."""
        content = self.content or b""
        return {
            "id": self.id,
            "filename": self.filename,
            "title": self.title,
            "channel": self.channel,
            "thread_ts": self.thread_ts,
            "ts": self.ts,
            "length": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "content_base64": base64.b64encode(content).decode("ascii"),
        }

    def to_api(self) -> dict[str, object]:
        """The file object Slack answers in files.completeUploadExternal and in messages."""
        return {
            "id": self.id,
            "name": self.filename,
            "title": self.title,
            "mimetype": _mimetype(self.filename),
            "filetype": self.filename.rpartition(".")[2].lower() if "." in self.filename else "",
            "size": len(self.content or b""),
        }


def _mimetype(filename: str) -> str:
    known = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "txt": "text/plain"}
    return known.get(filename.rpartition(".")[2].lower(), "application/octet-stream")


class FileStore:
    """Every file begun in the workspace (lock held by the caller: the workspace's)."""

    def __init__(self) -> None:
        self._files: dict[str, SlackFile] = {}
        self._count = 0
        self.upload_base = ""  # the HTTP host's URL, set by the host that serves uploads

    def begin(self, filename: str, length: int, alt_txt: str | None, now: float) -> SlackFile:
        self._count += 1
        file = SlackFile(
            id=f"F0SANDBOX{self._count:04d}",
            filename=filename,
            length=length,
            upload_token=secrets.token_urlsafe(16),
            created=now,
            alt_txt=alt_txt,
        )
        self._files[file.id] = file
        return file

    def upload_url(self, file: SlackFile) -> str:
        # Slack's look like https://files.slack.com/upload/v1/ABC123...
        return f"{self.upload_base}/upload/v1/{file.upload_token}"

    def receive(self, token: str, content: bytes) -> tuple[int, str]:
        """The upload URL's answer to a POST of `content`: (HTTP status, body text).

        Slack "will return HTTP 200 if the upload is successful; a non-200 response
        indicates a failure" (files.getUploadURLExternal, "Usage info"). Bytes other
        than the declared length are refused: the declared length is what Slack sized
        the upload for.
        """
        file = next((f for f in self._files.values() if f.upload_token == token), None)
        if file is None or file.completed:
            return 404, "upload not found\n"
        if len(content) != file.length:
            return 400, f"length mismatch: declared {file.length} bytes, got {len(content)}\n"
        file.content = content
        return 200, f"OK - {len(content)}"

    def get(self, file_id: str) -> SlackFile | None:
        return self._files.get(file_id)

    def completed(self) -> list[SlackFile]:
        return [file for file in self._files.values() if file.completed]

    def clear(self) -> None:
        self._files.clear()
