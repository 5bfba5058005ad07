"""The `conversations.*` methods: a channel's record, and its history a page at a time."""

from __future__ import annotations

import base64
import binascii
from decimal import Decimal, InvalidOperation
from typing import Any

from deployer_sandbox.slack.access import kind_scope, require_scope, visible
from deployer_sandbox.slack.arguments import Params, flag, text_param
from deployer_sandbox.slack.workspace import SlackError, SlackWorkspace

# conversations.history's limit: "Maximum of 999", "Default: 100"
# (https://docs.slack.dev/reference/methods/conversations.history).
HISTORY_LIMIT = 100
HISTORY_LIMIT_MAX = 999
_CURSOR_PREFIX = "next_ts:"


def conversations_info(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
    """`conversations.info`: a channel's record, `is_member` saying whether the bot is in it.

    Scopes "channels:read, groups:read, im:read, mpim:read" by the conversation's
    kind (https://docs.slack.dev/reference/methods/conversations.info); a private
    channel the bot is not in is `channel_not_found` (the bot cannot see it).
    """
    channel = visible(ws, params)
    require_scope(ws, kind_scope(channel, "channels:read", "groups:read"))
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
    channel = visible(ws, params)
    require_scope(ws, kind_scope(channel, "channels:history", "groups:history"))
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
