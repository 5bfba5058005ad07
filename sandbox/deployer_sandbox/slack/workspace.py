"""The sandbox Slack workspace's recorded state: team, bot, app scopes, users, channels, groups, messages."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deployer_sandbox.slack.file_store import FileStore

TEAM_ID = "T0SANDBOX1"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
BOT_USER_ID = "U0SANDBOT1"
BOT_USER_NAME = "deployer"
BOT_ID = "B0SANDBOT1"
APP_ID = "A0SANDBOX1"

# The bot token's scopes unless seeded otherwise: what the deployer's app asks
# for (README, "In production"), plus posting into public channels it has not
# joined, reading the channels it is in, and sharing the analysis chart in a thread.
DEFAULT_SCOPES = frozenset(
    {
        "commands",
        "chat:write",
        "chat:write.public",
        "usergroups:read",
        "channels:read",
        "groups:read",
        "channels:history",
        "groups:history",
        "files:write",
    }
)


class SlackError(Exception):
    """A Web API error answered as `{"ok": false, "error": code, **details}`."""

    def __init__(self, code: str, **details: Any) -> None:
        super().__init__(code)
        self.code = code
        self.details = details


@dataclass
class Edit:
    ts_edited: str
    text: str
    blocks: list[Any] | None


@dataclass
class Message:
    channel: str | None
    ts: str
    user: str
    text: str
    blocks: list[Any] | None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    ephemeral: bool = False
    user_target: str | None = None
    response_url: str | None = None
    response_type: str | None = None
    deleted: bool = False
    reply_count: int = 0
    original: dict[str, Any] | None = None  # text and blocks before the first edit
    edits: list[Edit] = field(default_factory=list)
    metadata: dict[str, Any] | None = None  # {"event_type": ..., "event_payload": {...}}
    files: list[dict[str, Any]] | None = None  # files shared with it (`slack.files`)

    def to_json(self) -> dict[str, Any]:
        """The record `GET /_sandbox/messages` lists (a deep copy)."""
        record = dataclasses.asdict(self)
        record["original"] = record["original"] or {"text": self.text, "blocks": self.blocks}
        return record

    def to_api(self) -> dict[str, Any]:
        """The message object Slack returns in `chat.postMessage` / `chat.update` answers."""
        body: dict[str, Any] = {"user": self.user, "type": "message", "ts": self.ts}
        if self.user == BOT_USER_ID:
            body.update(bot_id=BOT_ID, app_id=APP_ID)
        body.update(text=self.text, team=TEAM_ID)
        if self.blocks is not None:
            body["blocks"] = self.blocks
        if self.thread_ts is not None:
            body["thread_ts"] = self.thread_ts
        if self.edits:
            body["edited"] = {"user": self.user, "ts": self.edits[-1].ts_edited}
        if self.files is not None:
            body.update(files=json.loads(json.dumps(self.files)), upload=True)
        return body

    def to_history(self, with_metadata: bool) -> dict[str, Any]:
        """The message as `conversations.history` lists it (`metadata` only when asked for)."""
        body = self.to_api()
        if self.reply_count:
            body["reply_count"] = self.reply_count
        if self.reply_broadcast:
            # A reply also sent to the channel is listed in the channel's history
            # with this subtype (https://docs.slack.dev/reference/events/message/thread_broadcast).
            body["subtype"] = "thread_broadcast"
        if with_metadata and self.metadata is not None:
            body["metadata"] = json.loads(json.dumps(self.metadata))
        return body

    def in_channel_history(self) -> bool:
        """True for what the channel's own timeline shows: top-level messages and broadcast replies."""
        if self.ephemeral or self.deleted or self.channel is None:
            return False
        return self.thread_ts is None or self.thread_ts == self.ts or self.reply_broadcast


class SlackWorkspace:
    """Thread-safe recorded workspace: what is seeded, posted and called.

    Public methods take the lock themselves, except those whose docstring says
    "lock held": the Web API and response URL handlers call those inside it.
    """

    def __init__(
        self,
        tokens: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        scopes: Iterable[str] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens = set(tokens or ())
        self._scopes = set(DEFAULT_SCOPES if scopes is None else scopes)
        self._last_us = 0
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._messages: list[Message] = []
        self._calls: list[dict[str, Any]] = []
        self.file_store = FileStore()  # changed with the lock held, like the messages
        self.add_user(BOT_USER_ID, BOT_USER_NAME, real_name="Deployer", is_bot=True)

    # -- seeding ---------------------------------------------------------------

    def allow_token(self, token: str) -> None:
        """Accept this bot token; once any is allowed, only allowed tokens are."""
        with self._lock:
            self._tokens.add(token)

    def set_scopes(self, scopes: Iterable[str]) -> None:
        """Grant the bot token exactly these OAuth scopes (default: `DEFAULT_SCOPES`)."""
        with self._lock:
            self._scopes = set(scopes)

    def scopes(self) -> frozenset[str]:
        """The scopes the bot token holds."""
        with self._lock:
            return frozenset(self._scopes)

    def add_user(
        self,
        id: str,
        name: str,
        *,
        real_name: str | None = None,
        email: str | None = None,
        is_admin: bool = False,
        is_bot: bool = False,
        tz: str = "Europe/London",
    ) -> None:
        """Register a workspace member that `users.info` knows."""
        real = real_name or name
        profile: dict[str, Any] = {"real_name": real, "display_name": name, "team": TEAM_ID}
        if email:
            profile["email"] = email
        user = {
            "id": id,
            "team_id": TEAM_ID,
            "name": name,
            "deleted": False,
            "real_name": real,
            "tz": tz,
            "is_admin": is_admin,
            "is_owner": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "profile": profile,
        }
        with self._lock:
            self._users[id] = user

    def add_channel(
        self, id: str, name: str, *, is_private: bool = False, is_member: bool = True
    ) -> None:
        """Register a channel; the bot is a member of it unless `is_member` is False."""
        channel = {
            "id": id,
            "name": name,
            "name_normalized": name.lower(),
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_private": is_private,
            "is_archived": False,
            "is_member": is_member,
            "created": int(self._clock()),
            "creator": BOT_USER_ID,
        }
        with self._lock:
            self._channels[id] = channel

    def add_usergroup(
        self, id: str, handle: str, users: Iterable[str], *, enabled: bool = True
    ) -> None:
        """Register a user group (`S...`) and its members, for `usergroups.users.list`."""
        group = {"id": id, "handle": handle, "users": list(users), "enabled": enabled}
        with self._lock:
            self._usergroups[id] = group

    def post_as_user(self, channel: str, user: str, text: str) -> str:
        """Record a message a person wrote (the bot cannot edit it); return its ts."""
        with self._lock:
            ts = self.next_ts()
            self._messages.append(Message(channel, ts, user, text, None))
            return ts

    def check_token(self, token: str | None) -> None:
        """Raise `not_authed` without a token, `invalid_auth` for one not accepted."""
        if not token:
            raise SlackError("not_authed")
        with self._lock:
            allowed = token in self._tokens if self._tokens else token.startswith("xoxb-")
        if not allowed:
            raise SlackError("invalid_auth")

    def channel_id(self, wanted: str) -> str | None:
        """The id of the channel named by an id, `name` or `#name`; None when there is none."""
        with self._lock:
            try:
                return str(self.channel(wanted)["id"])
            except SlackError:
                return None

    # -- lookups and changes, lock held ------------------------------------------

    def user(self, id: str) -> dict[str, Any] | None:
        """The member `id`, or None (lock held)."""
        return self._users.get(id)

    def usergroup(self, id: str) -> dict[str, Any] | None:
        """The user group `id`, or None (lock held)."""
        return self._usergroups.get(id)

    def has_scope(self, scope: str) -> bool:
        """True when the bot token holds `scope` (lock held)."""
        return scope in self._scopes

    def scope_list(self) -> str:
        """The granted scopes as Slack lists them in `provided` (lock held)."""
        return ",".join(sorted(self._scopes))

    def channel(self, wanted: str) -> dict[str, Any]:
        """The channel named by an id, `name` or `#name`; `channel_not_found` (lock held)."""
        if wanted in self._channels:
            return self._channels[wanted]
        name = wanted.removeprefix("#")
        for channel in self._channels.values():
            if channel["name"] == name:
                return channel
        raise SlackError("channel_not_found")

    def find(self, channel: str | None, ts: str | None) -> Message | None:
        """The message posted at `ts` in `channel`, or None (lock held)."""
        for message in self._messages:
            if message.ts == ts and message.channel == channel:
                return message
        return None

    def append(self, message: Message) -> None:
        """Record a posted message (lock held)."""
        self._messages.append(message)

    def history(self, channel: str) -> list[Message]:
        """The channel's timeline, newest first: what `conversations.history` reads (lock held)."""
        listed = [m for m in self._messages if m.channel == channel and m.in_channel_history()]
        return sorted(listed, key=lambda m: _ts_key(m.ts), reverse=True)

    def edit(self, message: Message, text: str, blocks: list[Any] | None) -> None:
        """Replace a message's content, keeping the original and the edit (lock held)."""
        if message.original is None:
            message.original = {"text": message.text, "blocks": message.blocks}
        message.text, message.blocks = text, blocks
        message.edits.append(Edit(self.next_ts(), text, blocks))

    def now(self) -> float:
        """The workspace clock, in seconds."""
        return self._clock()

    def next_ts(self) -> str:
        """A fresh message ts (lock held)."""
        # Slack ts values are unique per channel and ordered; one counter for
        # the whole workspace keeps them strictly increasing everywhere.
        self._last_us = max(int(self._clock() * 1_000_000), self._last_us + 1)
        seconds, micros = divmod(self._last_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    # -- records ---------------------------------------------------------------

    def record_call(
        self, method: str, params: dict[str, Any], status: int, error: str | None
    ) -> None:
        """Log one API call; callers pass params with the token already removed."""
        with self._lock:
            self._calls.append(
                {
                    "method": method,
                    "params": json.loads(json.dumps(params, default=str)),
                    "status": status,
                    "ok": error is None,
                    "error": error,
                }
            )

    def calls(self) -> list[dict[str, Any]]:
        """Every API call in arrival order."""
        with self._lock:
            return [dict(call) for call in self._calls]

    def messages(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Every message in posting order, optionally one channel's or one thread's."""
        with self._lock:
            return [
                m.to_json()
                for m in self._messages
                if (channel is None or m.channel == channel)
                and (thread_ts is None or m.thread_ts == thread_ts)
            ]

    def clear(self) -> None:
        """Forget every message, file and call; users, channels and response URLs stay."""
        with self._lock:
            self._messages.clear()
            self._calls.clear()
            self.file_store.clear()

    def receive_upload(self, token: str, content: bytes) -> tuple[int, str]:
        """Answer a POST of a file's bytes to its upload URL: (HTTP status, body text)."""
        with self._lock:
            return self.file_store.receive(token, content)

    def shared_files(
        self, channel: str | None = None, thread_ts: str | None = None
    ) -> list[dict[str, Any]]:
        """Every completed file upload, optionally one channel's or one thread's."""
        with self._lock:
            return [
                file.to_json()
                for file in self.file_store.completed()
                if (channel is None or file.channel == channel)
                and (thread_ts is None or file.thread_ts == thread_ts)
            ]


def _ts_key(ts: str) -> tuple[int, int]:
    """A `"%d.%06d"` ts as a number pair, so ts values sort as Slack orders them."""
    seconds, _, micros = ts.partition(".")
    return int(seconds or 0), int(micros or 0)
