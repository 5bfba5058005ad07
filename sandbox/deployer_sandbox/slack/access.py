"""Where the bot may act: the channels it sees and may post into, its scopes, its messages."""

from __future__ import annotations

from typing import Any

from deployer_sandbox.slack.arguments import Params, text_param
from deployer_sandbox.slack.workspace import BOT_USER_ID, Message, SlackError, SlackWorkspace


def channel_id(ws: SlackWorkspace, params: Params) -> str:
    return str(ws.channel(text_param(params, "channel") or "")["id"])


def visible(ws: SlackWorkspace, params: Params) -> dict[str, Any]:
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


def postable(ws: SlackWorkspace, params: Params) -> str:
    """The id of a channel the bot may post into; `not_in_channel` for a public one it has not joined.

    chat.postMessage, "Channel membership": "New Slack apps do not begin life with
    the ability to post in all public channels. For your new Slack app to gain the
    ability to post in all public channels, request the chat:write.public scope."
    Its error: `not_in_channel` "Cannot post user messages to a channel they are
    not in." Posting that way does not make the bot a member.
    """
    channel = visible(ws, params)
    if not channel["is_member"] and not ws.has_scope("chat:write.public"):
        raise SlackError("not_in_channel")
    return str(channel["id"])


def require_scope(ws: SlackWorkspace, scope: str) -> None:
    """`missing_scope`, with Slack's `needed` and `provided`, unless the bot token holds `scope`."""
    # "The token used is not granted the specific scope permissions required to
    # complete this request." Slack names both sides, e.g. {"ok": false, "error":
    # "missing_scope", "needed": "chat:write", "provided": "channels:read"}.
    if not ws.has_scope(scope):
        raise SlackError("missing_scope", needed=scope, provided=ws.scope_list())


def kind_scope(channel: dict[str, Any], public: str, private: str) -> str:
    """The scope a channel's kind needs: `channels:*` for public ones, `groups:*` for private."""
    return private if channel["is_private"] else public


def posted(ws: SlackWorkspace, channel: str, ts: str | None) -> Message:
    """A message still visible to the API: not ephemeral, not deleted."""
    message = ws.find(channel, ts)
    if message is None or message.ephemeral or message.deleted:
        raise SlackError("message_not_found")
    return message


def bots_own(ws: SlackWorkspace, params: Params, refusal: str) -> tuple[str, str, Message]:
    """The channel, ts and message the bot posted that `params` name; else `refusal`."""
    channel = channel_id(ws, params)
    ts = text_param(params, "ts") or ""
    message = posted(ws, channel, ts)
    if message.user != BOT_USER_ID:
        raise SlackError(refusal)
    return channel, ts, message
