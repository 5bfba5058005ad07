"""The `chat.*` methods: the bot's messages, posted, updated, deleted and linked to."""

from __future__ import annotations

from typing import Any

from deployer_sandbox.slack.access import (
    bots_own,
    channel_id,
    postable,
    posted,
    require_scope,
    visible,
)
from deployer_sandbox.slack.arguments import Params, content, flag, metadata_param, text_param
from deployer_sandbox.slack.workspace import (
    BOT_USER_ID,
    TEAM_DOMAIN,
    Message,
    SlackError,
    SlackWorkspace,
)


def _thread(ws: SlackWorkspace, channel: str, params: Params) -> str | None:
    """The thread a reply joins; a parent gets `thread_ts` once it has replies."""
    thread_ts = text_param(params, "thread_ts")
    if thread_ts is None:
        return None
    seconds, dot, micros = thread_ts.partition(".")
    if not (seconds.isdigit() and dot and micros.isdigit()):
        raise SlackError("invalid_thread_ts")
    parent = ws.find(channel, thread_ts)
    if parent is None:
        # Slack accepts a well-formed ts that matches nothing: the reply is
        # stored but shows nowhere, which is exactly the bug to surface.
        return thread_ts
    root = parent.thread_ts or parent.ts
    root_message = ws.find(channel, root) or parent
    root_message.thread_ts = root
    root_message.reply_count += 1
    return root


def post_message(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.postMessage`: a message in a channel or a thread, with its metadata if any."""
    require_scope(ws, "chat:write")
    channel = postable(ws, params)
    text, blocks = content(params)
    metadata = metadata_param(params.get("metadata"))
    thread_ts = _thread(ws, channel, params)
    broadcast = thread_ts is not None and flag(params.get("reply_broadcast"))
    message = Message(channel, ws.next_ts(), BOT_USER_ID, text, blocks, thread_ts, broadcast)
    message.metadata = metadata
    ws.append(message)
    return {"channel": channel, "ts": message.ts, "message": message.to_api()}


def update(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.update`: edit one of the bot's messages.

    The bot's own message updates wherever the bot can see it: chat.update's
    errors (https://docs.slack.dev/reference/methods/chat.update) have no
    `not_in_channel`, only `channel_not_found` (a private channel the bot is not
    in) and `cant_update_message` ("Only messages posted by the authenticated
    user are able to be updated"). `metadata`: "If you don't include this field,
    the message's previous metadata will be retained. To remove previous
    metadata, include an empty object for this field."
    """
    require_scope(ws, "chat:write")
    visible(ws, params)
    channel, ts, message = bots_own(ws, params, "cant_update_message")
    text, blocks = content(params)
    raw_metadata = params.get("metadata")
    if raw_metadata in ({}, "{}"):
        message.metadata = None
    elif (metadata := metadata_param(raw_metadata)) is not None:
        message.metadata = metadata
    ws.edit(message, text, blocks)
    return {"channel": channel, "ts": ts, "text": text, "message": message.to_api()}


def post_ephemeral(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.postEphemeral`: a message only one member sees."""
    require_scope(ws, "chat:write")
    channel = channel_id(ws, params)
    user = text_param(params, "user") or ""
    if ws.user(user) is None:
        raise SlackError("user_not_found")
    text, blocks = content(params)
    thread_ts = text_param(params, "thread_ts")
    message = Message(channel, ws.next_ts(), BOT_USER_ID, text, blocks, thread_ts)
    message.ephemeral, message.user_target = True, user
    ws.append(message)
    return {"message_ts": message.ts}


def delete(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.delete`: remove one of the bot's messages."""
    require_scope(ws, "chat:write")
    channel, ts, message = bots_own(ws, params, "cant_delete_message")
    message.deleted = True
    return {"channel": channel, "ts": ts}


def permalink(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.getPermalink`: a message's link, with its thread for replies."""
    channel = channel_id(ws, params)
    message = posted(ws, channel, text_param(params, "message_ts"))
    link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
    if message.thread_ts is not None and message.thread_ts != message.ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel}"
    return {"channel": channel, "permalink": link}
