"""The `files.*` methods of Slack's external upload: a URL to upload to, then the share.

    files.getUploadURLExternal   filename, length (alt_txt): {upload_url, file_id}
    POST <upload_url>            the bytes (served by the HTTP host: `FileStore.receive`)
    files.completeUploadExternal files=[{id, title}], channel_id (thread_ts,
                                 initial_comment): {files: [{id, title}]}; the file
                                 then shows in the channel, or in the thread

This is what slack_sdk's `WebClient.files_upload_v2` calls, in that order. Both methods
need the bot scope `files:write` (their method pages, "Scopes"). Errors, from the
method pages (https://api.slack.com/methods/files.getUploadURLExternal and
https://api.slack.com/methods/files.completeUploadExternal, "Errors") and Slack's
common ones:

    invalid_arguments    filename or length missing, length not a positive whole number,
                         files not a list of objects each with an id
    alt_txt_too_large    "Description for the image is longer than the limit of 1000
                         character"
    missing_scope        no files:write, with `needed` and `provided`
    file_not_found       an id Slack never gave, one whose bytes never arrived, or one
                         already completed ("This method can only be called once"). The
                         pages say only that without the upload "clients will receive an
                         error"; the sandbox answers this one.
    channel_not_found    an unknown channel, or a private one the bot is not in
    not_in_channel       a public channel the bot has not joined: sharing a file there
                         needs membership (chat:write.public covers messages only)
    invalid_thread_ts    a thread_ts that is not a ts
"""

from __future__ import annotations

import json
from typing import Any

from deployer_sandbox.slack.access import require_scope, visible
from deployer_sandbox.slack.arguments import Params, text_param
from deployer_sandbox.slack.chat import _thread as join_thread
from deployer_sandbox.slack.workspace import BOT_USER_ID, Message, SlackError, SlackWorkspace

MAX_ALT_TXT = 1000  # files.getUploadURLExternal: alt_txt_too_large beyond it
FILE_SCOPE = "files:write"


def get_upload_url(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`files.getUploadURLExternal`: a file id and the URL its bytes go to."""
    require_scope(ws, FILE_SCOPE)
    filename = text_param(params, "filename")
    length = _length(params.get("length"))
    if filename is None or length is None:
        raise SlackError("invalid_arguments")
    alt_txt = text_param(params, "alt_txt")
    if alt_txt is not None and len(alt_txt) > MAX_ALT_TXT:
        raise SlackError("alt_txt_too_large")
    file = ws.file_store.begin(filename, length, alt_txt, ws.now())
    return {"upload_url": ws.file_store.upload_url(file), "file_id": file.id}


def complete_upload(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`files.completeUploadExternal`: finish uploads and share them in a channel or thread.

    Everything is checked before anything changes: a refused call shares nothing.
    """
    require_scope(ws, FILE_SCOPE)
    wanted = _files_param(params.get("files"))
    files = []
    for item in wanted:
        file = ws.file_store.get(item["id"])
        if file is None or file.completed or file.content is None:
            raise SlackError("file_not_found")
        files.append((file, str(item.get("title") or file.filename)))
    channel_id = text_param(params, "channel_id") or text_param(params, "channels")
    channel: str | None = None
    thread_ts: str | None = None
    if channel_id is not None:
        if "," in channel_id and text_param(params, "thread_ts"):
            raise SlackError("invalid_arguments")  # "provide only one channel" with thread_ts
        seen = visible(ws, {"channel": channel_id.split(",")[0]})
        if not seen["is_member"]:
            raise SlackError("not_in_channel")
        channel = str(seen["id"])
        thread_ts = join_thread(ws, channel, params)
    elif text_param(params, "thread_ts"):
        raise SlackError("invalid_arguments")  # a thread needs its channel
    for file, title in files:
        file.completed, file.title = True, title
        file.channel, file.thread_ts = channel, thread_ts
    if channel is not None:
        comment = text_param(params, "initial_comment") or ""
        message = Message(channel, ws.next_ts(), BOT_USER_ID, comment, None, thread_ts)
        message.files = [file.to_api() for file, _ in files]
        ws.append(message)
        for file, _ in files:
            file.ts = message.ts
    return {"files": [{"id": file.id, "title": title} for file, title in files]}


def _length(value: Any) -> int | None:
    """A positive whole number of bytes, sent as a number or as text; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    return value if isinstance(value, int) and value > 0 else None


def _files_param(value: Any) -> list[dict[str, Any]]:
    """`files`: a JSON array (a string from a form) of objects each with a string id."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_arguments") from None
    if not isinstance(value, list) or not value:
        raise SlackError("invalid_arguments")
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            raise SlackError("invalid_arguments")
    return value
