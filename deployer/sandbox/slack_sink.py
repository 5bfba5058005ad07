"""The sandbox's Slack workspace: a team, a bot, users, channels and every message posted.

`SlackSink.call(method, params)` answers a Web API method the way Slack does
(the response dict, or `SlackError` carrying Slack's error string);
`respond(id, body)` answers a post to a `response_url`. Everything posted is
kept, with thread replies and edit history, for `GET /_sandbox/messages`.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0SANDBOX1"
TEAM_NAME = "Sandbox"
TEAM_DOMAIN = "sandbox"
BOT_USER_ID = "U0SANDBOT1"
BOT_USER_NAME = "deployer"
BOT_ID = "B0SANDBOT1"
APP_ID = "A0SANDBOX1"

MAX_TEXT = 40_000  # chat.postMessage truncates beyond this; we refuse instead
MAX_BLOCKS = 50
RESPONSE_URL_USES = 5  # Slack: "up to five times within 30 minutes"
RESPONSE_URL_TTL = 30 * 60.0

# Web API method -> SlackSink handler.
_HANDLERS = {
    "auth.test": "_auth_test",
    "chat.postMessage": "_post_message",
    "chat.update": "_update",
    "chat.postEphemeral": "_post_ephemeral",
    "chat.delete": "_delete",
    "users.info": "_users_info",
    "conversations.info": "_conversations_info",
    "usergroups.users.list": "_usergroup_users",
    "chat.getPermalink": "_permalink",
}
METHODS = tuple(_HANDLERS)


class SlackError(Exception):
    """A Web API error answered as `{"ok": false, "error": code}`."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


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
        return body


@dataclass
class _ResponseUrl:
    url: str
    created: float
    channel: str | None
    user: str | None
    message_ts: str | None  # the message whose button produced it, if any
    uses: int = 0
    last_ts: str | None = None  # the last message it posted, for replace_original


def flag(value: Any) -> bool:
    """A Slack boolean argument: JSON true, or "1"/"true" from a form."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _text(params: dict[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def _blocks(value: Any) -> list[Any] | None:
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


class SlackSink:
    """Thread-safe recorded Slack workspace."""

    def __init__(
        self, tokens: Iterable[str] | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._tokens = set(tokens or ())
        self._last_us = 0
        self._users: dict[str, dict[str, Any]] = {}
        self._channels: dict[str, dict[str, Any]] = {}
        self._usergroups: dict[str, dict[str, Any]] = {}
        self._messages: list[Message] = []
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._calls: list[dict[str, Any]] = []
        self.add_user(BOT_USER_ID, BOT_USER_NAME, real_name="Deployer", is_bot=True)

    # -- seeding ---------------------------------------------------------------

    def allow_token(self, token: str) -> None:
        """Accept this bot token; once any is allowed, only allowed tokens are."""
        with self._lock:
            self._tokens.add(token)

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

    def add_channel(self, id: str, name: str, *, is_private: bool = False) -> None:
        """Register a channel the bot is a member of."""
        channel = {
            "id": id,
            "name": name,
            "name_normalized": name.lower(),
            "is_channel": not is_private,
            "is_group": is_private,
            "is_im": False,
            "is_private": is_private,
            "is_archived": False,
            "is_member": True,
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
            ts = self._next_ts()
            self._messages.append(Message(channel, ts, user, text, None))
            return ts

    # -- Web API ---------------------------------------------------------------

    def check_token(self, token: str | None) -> None:
        """Raise `not_authed` without a token, `invalid_auth` for one not accepted."""
        if not token:
            raise SlackError("not_authed")
        with self._lock:
            allowed = token in self._tokens if self._tokens else token.startswith("xoxb-")
        if not allowed:
            raise SlackError("invalid_auth")

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one Web API method (token already checked); raise `SlackError`."""
        if method not in _HANDLERS:
            raise SlackError("unknown_method")
        handler: Callable[[dict[str, Any]], dict[str, Any]] = getattr(self, _HANDLERS[method])
        with self._lock:
            return {"ok": True, **handler(params)}

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _channel(self, params: dict[str, Any]) -> str:
        """The channel id named by `channel` (an id, `name` or `#name`)."""
        wanted = _text(params, "channel") or ""
        if wanted in self._channels:
            return wanted
        name = wanted.removeprefix("#")
        for channel in self._channels.values():
            if channel["name"] == name:
                return str(channel["id"])
        raise SlackError("channel_not_found")

    def _content(self, params: dict[str, Any]) -> tuple[str, list[Any] | None]:
        text = _text(params, "text")
        blocks = _blocks(params.get("blocks"))
        if text is None and blocks is None and not params.get("attachments"):
            raise SlackError("no_text")
        if text is not None and len(text) > MAX_TEXT:
            raise SlackError("msg_too_long")
        return text or "", blocks

    def _thread(self, channel: str, params: dict[str, Any]) -> str | None:
        """The thread a reply joins; a parent gets `thread_ts` once it has replies."""
        thread_ts = _text(params, "thread_ts")
        if thread_ts is None:
            return None
        seconds, dot, micros = thread_ts.partition(".")
        if not (seconds.isdigit() and dot and micros.isdigit()):
            raise SlackError("invalid_thread_ts")
        parent = self._find(channel, thread_ts)
        if parent is None:
            # Slack accepts a well-formed ts that matches nothing: the reply is
            # stored but shows nowhere, which is exactly the bug to surface.
            return thread_ts
        root = parent.thread_ts or parent.ts
        root_message = self._find(channel, root) or parent
        root_message.thread_ts = root
        root_message.reply_count += 1
        return root

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        text, blocks = self._content(params)
        thread_ts = self._thread(channel, params)
        broadcast = thread_ts is not None and flag(params.get("reply_broadcast"))
        message = Message(channel, self._next_ts(), BOT_USER_ID, text, blocks, thread_ts, broadcast)
        self._messages.append(message)
        return {"channel": channel, "ts": message.ts, "message": message.to_api()}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        ts = _text(params, "ts") or ""
        message = self._find(channel, ts)
        if message is None or message.ephemeral or message.deleted:
            raise SlackError("message_not_found")
        if message.user != BOT_USER_ID:
            raise SlackError("cant_update_message")
        text, blocks = self._content(params)
        self._edit(message, text, blocks)
        return {"channel": channel, "ts": ts, "text": text, "message": message.to_api()}

    def _edit(self, message: Message, text: str, blocks: list[Any] | None) -> None:
        if message.original is None:
            message.original = {"text": message.text, "blocks": message.blocks}
        message.text, message.blocks = text, blocks
        message.edits.append(Edit(self._next_ts(), text, blocks))

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        user = _text(params, "user") or ""
        if user not in self._users:
            raise SlackError("user_not_found")
        text, blocks = self._content(params)
        thread_ts = _text(params, "thread_ts")
        message = Message(channel, self._next_ts(), BOT_USER_ID, text, blocks, thread_ts)
        message.ephemeral, message.user_target = True, user
        self._messages.append(message)
        return {"message_ts": message.ts}

    def _delete(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        ts = _text(params, "ts") or ""
        message = self._find(channel, ts)
        if message is None or message.ephemeral or message.deleted:
            raise SlackError("message_not_found")
        if message.user != BOT_USER_ID:
            raise SlackError("cant_delete_message")
        message.deleted = True
        return {"channel": channel, "ts": ts}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user = self._users.get(_text(params, "user") or "")
        if user is None:
            raise SlackError("user_not_found")
        return {"user": json.loads(json.dumps(user))}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"channel": dict(self._channels[self._channel(params)])}

    def _usergroup_users(self, params: dict[str, Any]) -> dict[str, Any]:
        group = self._usergroups.get(_text(params, "usergroup") or "")
        if group is None:
            raise SlackError("no_such_subteam")
        if not group["enabled"] and not flag(params.get("include_disabled")):
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _permalink(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(params)
        message = self._find(channel, _text(params, "message_ts"))
        if message is None or message.ephemeral or message.deleted:
            raise SlackError("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{message.ts.replace('.', '')}"
        if message.thread_ts is not None and message.thread_ts != message.ts:
            link += f"?thread_ts={message.thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    # -- response_url ----------------------------------------------------------

    def open_response_url(
        self,
        base_url: str,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
    ) -> str:
        """Mint a response URL under `base_url` (5 posts within 30 minutes, like Slack's)."""
        token = secrets.token_urlsafe(12)
        url = f"{base_url.rstrip('/')}/response/{token}"
        with self._lock:
            self._response_urls[token] = _ResponseUrl(url, self._clock(), channel, user, message_ts)
        return url

    def respond(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        """Answer a post to a response URL: (HTTP status, body text) as Slack does."""
        with self._lock:
            entry = self._response_urls.get(token)
            if entry is None:
                return 404, "no_service"
            if self._clock() - entry.created > RESPONSE_URL_TTL:
                return 404, "expired_url"
            if entry.uses >= RESPONSE_URL_USES:
                return 404, "used_url"
            try:
                self._apply_response(entry, body)
            except SlackError as error:
                return 400, error.code
            entry.uses += 1
            return 200, "ok"

    def _apply_response(self, entry: _ResponseUrl, body: dict[str, Any]) -> None:
        original_ts = entry.message_ts or entry.last_ts
        original = self._find(entry.channel, original_ts) if original_ts else None
        if flag(body.get("delete_original")):
            if original is None:
                raise SlackError("message_not_found")
            original.deleted = True
            return
        text, blocks = self._content(body)
        if flag(body.get("replace_original")) and original is not None:
            self._edit(original, text, blocks)
            return
        response_type = body.get("response_type") or "ephemeral"
        if response_type not in ("ephemeral", "in_channel"):
            raise SlackError("invalid_payload")
        ephemeral = response_type == "ephemeral"
        message = Message(
            entry.channel, self._next_ts(), BOT_USER_ID, text, blocks, _text(body, "thread_ts")
        )
        message.ephemeral = ephemeral
        message.user_target = entry.user if ephemeral else None
        message.response_url, message.response_type = entry.url, response_type
        self._messages.append(message)
        entry.last_ts = message.ts

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
        """Forget every message and call; users, channels and response URLs stay."""
        with self._lock:
            self._messages.clear()
            self._calls.clear()

    def _find(self, channel: str | None, ts: str | None) -> Message | None:
        for message in self._messages:
            if message.ts == ts and message.channel == channel:
                return message
        return None

    def _next_ts(self) -> str:
        # Slack ts values are unique per channel and ordered; one counter for
        # the whole workspace keeps them strictly increasing everywhere.
        self._last_us = max(int(self._clock() * 1_000_000), self._last_us + 1)
        seconds, micros = divmod(self._last_us, 1_000_000)
        return f"{seconds}.{micros:06d}"
