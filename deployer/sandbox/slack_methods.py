"""The sandbox's Slack Web API methods: each reads its arguments and answers as Slack does."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from deployer.sandbox.slack_workspace import (
    BOT_ID,
    BOT_USER_ID,
    BOT_USER_NAME,
    TEAM_DOMAIN,
    TEAM_ID,
    TEAM_NAME,
    Message,
    SlackError,
    SlackWorkspace,
)

MAX_TEXT = 40_000  # chat.postMessage truncates beyond this; we refuse instead
MAX_BLOCKS = 50

Params = dict[str, Any]
Handler = Callable[[SlackWorkspace, Params], dict[str, Any]]


def flag(value: Any) -> bool:
    """A Slack boolean argument: JSON true, or "1"/"true" from a form."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def text_param(params: Params, key: str) -> str | None:
    """A string argument, None when absent or empty."""
    value = params.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def blocks_param(value: Any) -> list[Any] | None:
    """Blocks as a list, whether sent as a JSON string (forms) or a list (JSON bodies)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError("invalid_blocks_format") from None
    if not isinstance(value, list):
        raise SlackError("invalid_blocks_format")
    if len(value) > MAX_BLOCKS or not all(isinstance(b, dict) and "type" in b for b in value):
        raise SlackError("invalid_blocks")
    return value


def content(params: Params) -> tuple[str, list[Any] | None]:
    """A message's text and blocks; `no_text` when it has neither (nor attachments)."""
    text = text_param(params, "text")
    blocks = blocks_param(params.get("blocks"))
    if text is None and blocks is None and not params.get("attachments"):
        raise SlackError("no_text")
    if text is not None and len(text) > MAX_TEXT:
        raise SlackError("msg_too_long")
    return text or "", blocks


def _channel_id(ws: SlackWorkspace, params: Params) -> str:
    return str(ws.channel(text_param(params, "channel") or "")["id"])


def _posted(ws: SlackWorkspace, channel: str, ts: str | None) -> Message:
    """A message still visible to the API: not ephemeral, not deleted."""
    message = ws.find(channel, ts)
    if message is None or message.ephemeral or message.deleted:
        raise SlackError("message_not_found")
    return message


def _bots_own(ws: SlackWorkspace, params: Params, refusal: str) -> tuple[str, str, Message]:
    """The channel, ts and message the bot posted that `params` name; else `refusal`."""
    channel = _channel_id(ws, params)
    ts = text_param(params, "ts") or ""
    message = _posted(ws, channel, ts)
    if message.user != BOT_USER_ID:
        raise SlackError(refusal)
    return channel, ts, message


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


def auth_test(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`auth.test`: who the bot is."""
    return {
        "url": f"https://{TEAM_DOMAIN}.slack.com/",
        "team": TEAM_NAME,
        "user": BOT_USER_NAME,
        "team_id": TEAM_ID,
        "user_id": BOT_USER_ID,
        "bot_id": BOT_ID,
        "is_enterprise_install": False,
    }


def post_message(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.postMessage`: a message in a channel or a thread."""
    channel = _channel_id(ws, params)
    text, blocks = content(params)
    thread_ts = _thread(ws, channel, params)
    broadcast = thread_ts is not None and flag(params.get("reply_broadcast"))
    message = Message(channel, ws.next_ts(), BOT_USER_ID, text, blocks, thread_ts, broadcast)
    ws.append(message)
    return {"channel": channel, "ts": message.ts, "message": message.to_api()}


def update(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.update`: edit one of the bot's messages."""
    channel, ts, message = _bots_own(ws, params, "cant_update_message")
    text, blocks = content(params)
    ws.edit(message, text, blocks)
    return {"channel": channel, "ts": ts, "text": text, "message": message.to_api()}


def post_ephemeral(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.postEphemeral`: a message only one member sees."""
    channel = _channel_id(ws, params)
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
    channel, ts, message = _bots_own(ws, params, "cant_delete_message")
    message.deleted = True
    return {"channel": channel, "ts": ts}


def users_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`users.info`: a member's record."""
    user = ws.user(text_param(params, "user") or "")
    if user is None:
        raise SlackError("user_not_found")
    return {"user": json.loads(json.dumps(user))}


def conversations_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`conversations.info`: a channel's record."""
    return {"channel": dict(ws.channel(text_param(params, "channel") or ""))}


def usergroup_users(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`usergroups.users.list`: a user group's members."""
    group = ws.usergroup(text_param(params, "usergroup") or "")
    if group is None:
        raise SlackError("no_such_subteam")
    if not group["enabled"] and not flag(params.get("include_disabled")):
        raise SlackError("no_such_subteam")
    return {"users": list(group["users"])}


def permalink(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`chat.getPermalink`: a message's link, with its thread for replies."""
    channel = _channel_id(ws, params)
    message = _posted(ws, channel, text_param(params, "message_ts"))
    link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
    if message.thread_ts is not None and message.thread_ts != message.ts:
        link += f"?thread_ts={message.thread_ts}&cid={channel}"
    return {"channel": channel, "permalink": link}


HANDLERS: dict[str, Handler] = {
    "auth.test": auth_test,
    "chat.postMessage": post_message,
    "chat.update": update,
    "chat.postEphemeral": post_ephemeral,
    "chat.delete": delete,
    "users.info": users_info,
    "conversations.info": conversations_info,
    "usergroups.users.list": usergroup_users,
    "chat.getPermalink": permalink,
}
METHODS = tuple(HANDLERS)
