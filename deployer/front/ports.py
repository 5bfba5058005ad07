"""The narrow interface the front needs from chat: the slice of Slack it uses.

The Slack adapter implements it over slack_sdk. Every call is
bounded (timeout and retries live in the adapter) and raises `ChatError` when
Slack refused or did not answer; the callers decide what a failure costs, and
none of them lets it reach a deploy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class SlackMessage:
    """What `chat.postMessage` / `chat.update` / a response_url get: notification text and blocks.

    `file`: a file the outbox shares in the thread right after this reply (see
    `front/thread_files.py`); only thread replies carry one.
    """

    text: str
    blocks: list[dict[str, Any]]
    file: dict[str, Any] | None = None

    def to_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": self.blocks}


class ChatError(Exception):
    """Slack refused a call (`error` says why) or did not answer (`outage`)."""

    def __init__(
        self,
        message: str,
        error: str = "",
        outage: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error  # Slack's error code, e.g. channel_not_found; "" without an answer
        self.outage = outage  # no useful answer: network, 429 or 5xx after the retries
        self.retry_after = retry_after  # seconds Slack asked us to wait (a 429's Retry-After)


class ChatUnsure(ChatError):
    """A call that changes something went out and no answer came back: Slack may have done it."""


@dataclass(frozen=True)
class ChannelView:
    channel: dict[str, object]  # is_member, is_private ... as conversations.info answers
    scopes: frozenset[str] | None  # the bot token's, from `x-oauth-scopes` (None: not said)


@dataclass(frozen=True)
class BotIdentity:
    """Who the bot token is, as `auth.test` answers: the workspace and the bot user."""

    team: str
    team_id: str
    user: str
    user_id: str
    bot_id: str


class Chat(Protocol):
    def post(
        self,
        channel: str,
        message: SlackMessage,
        thread_ts: str | None = None,
        metadata: dict[str, object] | None = None,
    ) -> str | None:
        """Post `message` in `channel` (in the thread `thread_ts`), with message `metadata`
        (`event_type`, `event_payload`); its ts (None if Slack gave none)."""
        ...

    def find_posted(self, channel: str, event_type: str, key: str, value: str) -> str | None:
        """The ts of a recent message of the bot's in `channel` whose metadata has
        `event_type` and `event_payload[key] == value` (`conversations.history`), or None."""
        ...

    def update(self, channel: str, ts: str, message: SlackMessage) -> None:
        """Replace the message `ts` in `channel` with `message`."""
        ...

    def permalink(self, channel: str, ts: str) -> str:
        """A link to the message `ts` in `channel` (`chat.getPermalink`)."""
        ...

    def channel_info(self, channel: str) -> ChannelView:
        """The channel as the bot sees it (`conversations.info`), and the bot's scopes."""
        ...

    def identity(self) -> BotIdentity:
        """Who the token is (`auth.test`); ChatError `invalid_auth` for a token Slack refuses."""
        ...

    def usergroup_members(self, group: str, team_id: str = "") -> set[str]:
        """The user IDs in the user group `group` (`S...`) of workspace `team_id` (needed
        on Enterprise Grid with an org-wide install; "" for the token's own workspace)."""
        ...

    def upload(
        self, channel: str, thread_ts: str, filename: str, title: str, content: bytes
    ) -> None:
        """Share `content` as the file `filename` in the thread `thread_ts` of `channel`
        (Slack's external upload). `ChatUnsure` when the share went out unanswered."""
        ...

    def respond(self, response_url: str, message: SlackMessage) -> None:
        """Answer through a response URL, seen only by the person who asked; the original stays."""
        ...
