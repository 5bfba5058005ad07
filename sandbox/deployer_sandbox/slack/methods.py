"""The sandbox's Slack Web API methods: each reads its arguments and answers as Slack does.

Where the bot may act (membership and scopes) is in `_visible`, `_postable` and
`_require_scope`; Block Kit is checked by slack_blocks.py; conversations.history
by `history` below.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from deployer_sandbox.slack.blocks import check_blocks
from deployer_sandbox.slack.workspace import (
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
# conversations.history's limit: "Maximum of 999", "Default: 100"
# (https://docs.slack.dev/reference/methods/conversations.history).
HISTORY_LIMIT = 100
HISTORY_LIMIT_MAX = 999
_CURSOR_PREFIX = "next_ts:"

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
    """Blocks as a list, whether sent as a JSON string (forms) or a list (JSON bodies).

    Not JSON, or not a list: `invalid_blocks_format`; a list Block Kit refuses:
    `invalid_blocks` with Slack's pointers (slack_blocks.py).
    """
    blocks: list[Any] | None = _json_argument(value, list, "invalid_blocks_format")
    if blocks is not None:
        check_blocks(blocks)
    return blocks


def _json_argument(value: Any, kind: type, error: str) -> Any:
    """A JSON argument, sent as a string (forms) or as itself (JSON bodies); None when absent;
    `error` when it is not JSON or not a `kind`."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    if not isinstance(value, kind):
        raise SlackError(error)
    return value


def metadata_param(value: Any) -> dict[str, Any] | None:
    """Message metadata, a JSON string (forms) or an object (JSON bodies); None when absent.

    chat.postMessage's errors (https://docs.slack.dev/reference/methods/chat.postMessage):
    `invalid_metadata_format` "Invalid metadata format provided" when it is not a
    JSON object; `invalid_metadata_schema` "Invalid metadata schema provided" when
    it lacks the "JSON object with event_type and event_payload fields" the
    argument is documented as (event_type a string, event_payload an object, as in
    https://api.slack.com/metadata/publishing). The naming guidelines for
    event_type are recommendations: "none of these guidelines are enforced
    programmatically" (https://api.slack.com/reference/metadata).
    """
    value = _json_argument(value, dict, "invalid_metadata_format")
    if value is None:
        return None
    event_type, payload = value.get("event_type"), value.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        raise SlackError("invalid_metadata_schema")
    return {"event_type": event_type, "event_payload": json.loads(json.dumps(payload))}


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


def _visible(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """The channel `params` names, as the bot can see it.

    A private channel the bot is not in does not exist for it: `channel_not_found`
    from chat.postMessage ("As long as the authenticated user is a member of the
    private channel ... the message will be posted",
    https://docs.slack.dev/reference/methods/chat.postMessage), chat.update and
    conversations.info alike (a private channel needs membership, else
    channel_not_found).
    """
    channel = ws.channel(text_param(params, "channel") or "")
    if channel["is_private"] and not channel["is_member"]:
        raise SlackError("channel_not_found")
    return channel


def _postable(ws: SlackWorkspace, params: Params) -> str:
    """The id of a channel the bot may post into; `not_in_channel` for a public one it has not joined.

    chat.postMessage, "Channel membership": "New Slack apps do not begin life with
    the ability to post in all public channels. For your new Slack app to gain the
    ability to post in all public channels, request the chat:write.public scope."
    Its error: `not_in_channel` "Cannot post user messages to a channel they are
    not in." Posting that way does not make the bot a member.
    """
    channel = _visible(ws, params)
    if not channel["is_member"] and not ws.has_scope("chat:write.public"):
        raise SlackError("not_in_channel")
    return str(channel["id"])


def _require_scope(ws: SlackWorkspace, scope: str) -> None:
    """`missing_scope`, with Slack's `needed` and `provided`, unless the bot token holds `scope`."""
    # "The token used is not granted the specific scope permissions required to
    # complete this request." Slack names both sides, e.g. {"ok": false, "error":
    # "missing_scope", "needed": "chat:write", "provided": "channels:read"}.
    if not ws.has_scope(scope):
        raise SlackError("missing_scope", needed=scope, provided=ws.scope_list())


def _kind_scope(channel: dict[str, Any], public: str, private: str) -> str:
    """The scope a channel's kind needs: `channels:*` for public ones, `groups:*` for private."""
    return private if channel["is_private"] else public


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
    """`chat.postMessage`: a message in a channel or a thread, with its metadata if any."""
    _require_scope(ws, "chat:write")
    channel = _postable(ws, params)
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
    _require_scope(ws, "chat:write")
    _visible(ws, params)
    channel, ts, message = _bots_own(ws, params, "cant_update_message")
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
    _require_scope(ws, "chat:write")
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
    _require_scope(ws, "chat:write")
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
    """`conversations.info`: a channel's record, `is_member` saying whether the bot is in it.

    Scopes "channels:read, groups:read, im:read, mpim:read" by the conversation's
    kind (https://docs.slack.dev/reference/methods/conversations.info); a private
    channel the bot is not in is `channel_not_found` (the bot cannot see it).
    """
    channel = _visible(ws, params)
    _require_scope(ws, _kind_scope(channel, "channels:read", "groups:read"))
    return {"channel": dict(channel)}


def history(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`conversations.history`: a channel's messages, newest first, a page at a time.

    https://docs.slack.dev/reference/methods/conversations.history: "Bot token |
    Relevant *:history scope | Any conversation the relevant bot is a member of",
    so a public channel the bot has not joined is `not_in_channel` (a private one
    `channel_not_found`). "The most recent messages in the time range are returned
    first"; `latest` "Default is the current time", `oldest` "Default: 0"; "If a
    message has the same timestamp as oldest or latest it will not be included in
    the list" unless `inclusive`; `limit` "Maximum of 999", "Default: 100"; pages
    follow `response_metadata.next_cursor`, with `has_more`. Thread replies are
    not in the channel's history (conversations.replies reads them), except those
    also sent to the channel (`reply_broadcast`). `include_all_metadata` "Return
    all metadata associated with this message": without it no `metadata` is shown.
    """
    channel = _visible(ws, params)
    _require_scope(ws, _kind_scope(channel, "channels:history", "groups:history"))
    if not channel["is_member"]:
        raise SlackError("not_in_channel")
    inclusive = flag(params.get("inclusive"))
    oldest = _ts_param(params, "oldest", "invalid_ts_oldest")
    latest = _ts_param(params, "latest", "invalid_ts_latest")
    after = _cursor(text_param(params, "cursor"))
    limit = _limit(params.get("limit"))
    listed = []
    for message in ws.history(str(channel["id"])):
        at = Decimal(message.ts)
        if oldest is not None and (at < oldest or (at == oldest and not inclusive)):
            continue
        if latest is not None and (at > latest or (at == latest and not inclusive)):
            continue
        if after is not None and at > after:
            continue
        listed.append(message)
    page, more = listed[:limit], len(listed) > limit
    with_metadata = flag(params.get("include_all_metadata"))
    answer: dict[str, Any] = {
        "messages": [message.to_history(with_metadata) for message in page],
        "has_more": more,
        "pin_count": 0,
    }
    if more:
        following = listed[limit].ts.replace(".", "")
        cursor = base64.b64encode(f"{_CURSOR_PREFIX}{following}".encode()).decode()
        answer["response_metadata"] = {"next_cursor": cursor}
    return answer


def _ts_param(params: Params, key: str, error: str) -> Decimal | None:
    """A ts bound of conversations.history; Slack's `invalid_ts_oldest`/`_latest` when malformed."""
    value = text_param(params, key)
    if value is None:
        return None
    try:
        bound = Decimal(value)
    except InvalidOperation:
        raise SlackError(error) from None
    if not bound.is_finite():
        raise SlackError(error)
    return bound


def _cursor(value: str | None) -> Decimal | None:
    """The ts a history page starts from (that message included); `invalid_cursor` for a bad one.

    Slack's history cursors are base64 of "next_ts:<the next message's ts without
    its dot>": the method page's example answer has "next_cursor":
    "bmV4dF90czoxNTEyMDg1ODYxMDAwNTQz", which is "next_ts:1512085861000543", older
    than the two messages it lists. A cursor Slack cannot read is `invalid_cursor`
    (https://docs.slack.dev/apis/web-api/pagination).
    """
    if value is None:
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise SlackError("invalid_cursor") from None
    digits = decoded.removeprefix(_CURSOR_PREFIX)
    if not decoded.startswith(_CURSOR_PREFIX) or not digits.isdigit() or len(digits) < 7:
        raise SlackError("invalid_cursor")
    return Decimal(f"{digits[:-6]}.{digits[-6:]}")


def _limit(value: Any) -> int:
    """conversations.history's page size: 100 by default, at most 999."""
    try:
        wanted = int(value)
    except (TypeError, ValueError):
        return HISTORY_LIMIT
    if wanted < 1:
        return HISTORY_LIMIT
    # "Fewer than the requested number of items may be returned": a larger limit
    # is served as the largest page.
    return min(wanted, HISTORY_LIMIT_MAX)


def usergroup_users(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`usergroups.users.list`: a user group's members.

    `team_id` ("encoded team id where the user group exists, required if org token is
    used") may name only this workspace: another is `team_access_not_granted` (the app is
    not installed there), the stricter reading of a case the method page leaves open.
    """
    _require_scope(ws, "usergroups:read")
    team = text_param(params, "team_id")
    if team and team != TEAM_ID:
        raise SlackError("team_access_not_granted")
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
    "conversations.history": history,
    "usergroups.users.list": usergroup_users,
    "chat.getPermalink": permalink,
}
METHODS = tuple(HANDLERS)
