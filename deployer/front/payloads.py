"""What Slack and GitHub send, checked once: frozen, typed fields, or `Malformed` naming the field.

    slack_form(raw body)             -> SlashCommand | ButtonClick | SslCheck | Malformed
                                                                   (the Slack route's checks)
    slash_command(command)           -> SlashCommand | Malformed   (the bolt listeners, with
    button_click(body, action)       -> ButtonClick | Malformed     what bolt hands them)
    release(release event payload)   -> Release | Malformed        (the GitHub webhook)

A request is signed before it gets here, so a refusal means a sender that does
not speak Slack's or GitHub's format (or a bug there): the HTTP answer stays a
generic 400, and `Malformed.reason` (a field name, never its value) goes to the
logs. Any JSON type may stand where an object or a string belongs; it is
refused, never trusted. Identifiers must have Slack's shapes, strings are
bounded.

`slack_form` reads the body the way bolt does (`slack_bolt.request.internals.
parse_body`): a body starting with `{` is JSON; any `payload` in the raw body
means "the `payload` field is the whole request", and without that field bolt
sees nothing at all; otherwise the form's fields, the last of a repeated name
winning. So the check judges exactly what bolt will hand the listeners, and
repeated names are refused rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, parse_qsl

TEXT_LIMIT = 4000  # `/deploy` text; Slack itself caps a message far above any command
VALUE_LIMIT = 2000  # Slack's limit for a button's value
ACTION_ID_LIMIT = 255  # Slack's limit for an action_id

_USER = re.compile(r"[UW][A-Z0-9]{2,63}")
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,63}")
_TEAM = re.compile(r"[TE][A-Z0-9]{2,63}")
_COMMAND = re.compile(r"/\S{1,99}")
_TRIGGER = re.compile(r"[A-Za-z0-9._-]{1,255}")
_TS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_URL = re.compile(r"https?://[!-~]{1,2040}")
# Git's own ref rules, narrowed: no leading dash (an option to git), no "..", no spaces.
_TAG = re.compile(r"(?!-)[A-Za-z0-9._/+-]{1,128}")
_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_ACTION = re.compile(r"[a-z_]{1,32}")
_LOGIN = re.compile(r"[A-Za-z0-9_.\[\]-]{1,100}")


@dataclass(frozen=True)
class Malformed:
    """Not what Slack or GitHub send: which field was wrong (never its value)."""

    reason: str


@dataclass(frozen=True)
class SslCheck:
    """Slack checking the slash command URL's certificate (`ssl_check=1`): answer 200, do nothing."""


@dataclass(frozen=True)
class SlashCommand:
    """`/deploy <text>` typed by `user_id` in `channel_id`; optional fields are "" when absent."""

    text: str
    user_id: str
    channel_id: str
    team_id: str
    trigger_id: str
    response_url: str


@dataclass(frozen=True)
class ButtonClick:
    """A click on a message button (a `block_actions` payload and its first action)."""

    action_id: str
    value: str
    user_id: str
    channel_id: str
    action_ts: str
    trigger_id: str
    response_url: str
    message_ts: str
    team_id: str = ""  # the clicker's workspace (`team.id`), "" when not sent


@dataclass(frozen=True)
class Release:
    """A `release` event; `tag` is checked as a ref to build only when the release is `published`."""

    action: str
    repository: str
    tag: str
    draft: bool
    prerelease: bool
    sender: str
    html_url: str
    release_id: str = ""  # GitHub's id of the release: the same across all its deliveries

    @property
    def published(self) -> bool:
        """A release (`released`) or pre-release (`prereleased`) made public, not a draft:
        the only deliveries that may deploy (`published` comes with one of them)."""
        return self.action in ("released", "prereleased") and not self.draft


SlackInput = SlashCommand | ButtonClick | SslCheck | Malformed
T = TypeVar("T")


def _string(
    data: Mapping[str, Any],
    key: str,
    *,
    shape: re.Pattern[str] | None = None,
    limit: int = 255,
    required: bool = True,
) -> str | Malformed:
    """`data[key]` as a string of at most `limit` characters (and `shape`); "" when optional and absent."""
    value = data.get(key)
    if value is None or value == "":
        return Malformed(f"{key} is missing") if required else ""
    if not isinstance(value, str):
        return Malformed(f"{key} is not a string")
    if len(value) > limit:
        return Malformed(f"{key} is longer than {limit} characters")
    if shape is not None and not shape.fullmatch(value):
        return Malformed(f"{key} does not have the expected shape")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool | Malformed:
    value = data.get(key)
    return value if isinstance(value, bool) else Malformed(f"{key} is not true or false")


def _object(data: Mapping[str, Any], key: str, *, required: bool) -> Mapping[str, Any] | Malformed:
    """`data[key]` as a JSON object; an empty one when optional and absent (or null)."""
    value = data.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        return Malformed(f"{key} is not an object")
    return value


def _build(kind: Callable[..., T], fields: Mapping[str, object]) -> T | Malformed:
    """`kind(**fields)`, or the first field that was refused."""
    for value in fields.values():
        if isinstance(value, Malformed):
            return value
    return kind(**fields)


def unescape(text: str) -> str:
    """Slash-command text as typed: Slack sends `&`, `<` and `>` as `&amp;`, `&lt;` and
    `&gt;`, the three characters its text format reserves, and nothing else
    (api.slack.com/reference/surfaces/formatting#escaping). Undone
    once, here; every echo escapes again (`mrkdwn.escape`)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def is_ssl_check(body: bytes) -> bool:
    """Whether `body` is Slack checking a slash command URL's certificate (`ssl_check=1`).

    Slack sends it without signature headers (bolt-js #1397), so it is recognised before
    the signature is checked; it is answered 200 and nothing else, so it can start
    nothing, whatever else the body carries (bolt-python #1494).
    """
    try:
        form = parse_qs(body.decode("ascii"), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        return False
    return form.get("ssl_check") == ["1"]


def slash_command(command: Mapping[str, Any]) -> SlashCommand | Malformed:
    """The fields of a slash command (bolt's `command`, or the parsed form)."""
    refused = _string(command, "command", shape=_COMMAND, limit=100)
    if isinstance(refused, Malformed):
        return refused
    text = _string(command, "text", limit=TEXT_LIMIT, required=False)
    return _build(
        SlashCommand,
        {
            "text": text if isinstance(text, Malformed) else unescape(text),
            "user_id": _string(command, "user_id", shape=_USER),
            "channel_id": _string(command, "channel_id", shape=_CHANNEL),
            "team_id": _string(command, "team_id", shape=_TEAM, required=False),
            "trigger_id": _string(command, "trigger_id", shape=_TRIGGER),
            "response_url": _string(
                command, "response_url", shape=_URL, limit=2048, required=False
            ),
        },
    )


def button_click(body: Mapping[str, Any], action: Mapping[str, Any]) -> ButtonClick | Malformed:
    """The fields of a button click (bolt's `body` and `action`: the payload and its first action)."""
    if not isinstance(body, Mapping) or not isinstance(action, Mapping):
        return Malformed("the payload or its action is not an object")
    if body.get("type") != "block_actions":
        return Malformed("type is not block_actions")
    user = _object(body, "user", required=True)
    if isinstance(user, Malformed):
        return user
    channel = _object(body, "channel", required=False)
    if isinstance(channel, Malformed):
        return channel
    container = _object(body, "container", required=False)
    if isinstance(container, Malformed):
        return container
    team = _object(body, "team", required=False)
    if isinstance(team, Malformed):
        return team
    # Messages carry `channel`; `container` names the channel too (and is all some surfaces send).
    where = channel if channel.get("id") is not None else {"id": container.get("channel_id")}
    return _build(
        ButtonClick,
        {
            "action_id": _string(action, "action_id", limit=ACTION_ID_LIMIT),
            "value": _string(action, "value", limit=VALUE_LIMIT, required=False),
            "user_id": _string(user, "id", shape=_USER),
            "channel_id": _string(where, "id", shape=_CHANNEL),
            "action_ts": _string(action, "action_ts", shape=_TS),
            "team_id": _string(team, "id", shape=_TEAM, required=False),
            "trigger_id": _string(body, "trigger_id", shape=_TRIGGER),
            "response_url": _string(body, "response_url", shape=_URL, limit=2048, required=False),
            "message_ts": _string(container, "message_ts", shape=_TS, required=False),
        },
    )


def block_actions(payload: Mapping[str, Any]) -> ButtonClick | Malformed:
    """A whole `block_actions` payload: its first action, as bolt hands it to `app.action` listeners."""
    actions = payload.get("actions")
    if not isinstance(actions, list) or not actions:
        return Malformed("actions is not a non-empty list")
    first = actions[0]
    if not isinstance(first, Mapping):
        return Malformed("the first action is not an object")
    return button_click(payload, first)


def slack_form(body: bytes) -> SlackInput:
    """A signed `POST /slack/events` body, read as bolt will read it (see the module docstring)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return Malformed("the body is not UTF-8")
    if text.startswith("{"):
        return Malformed("the body is JSON, not a form")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return Malformed("the body is not a form")
    form: dict[str, str] = {}
    for key, value in pairs:
        if key in form:
            return Malformed("a form field is repeated")
        form[key] = value
    if "payload" in text:
        raw = form.get("payload")
        if raw is None:
            return Malformed("'payload' appears outside a payload field (bolt would read nothing)")
        try:
            payload = json.loads(raw)
        except (ValueError, RecursionError):
            return Malformed("payload is not JSON")
        if not isinstance(payload, dict):
            return Malformed("payload is not an object")
        return block_actions(payload)
    if form.get("ssl_check") == "1":
        return SslCheck()
    if "command" in form:
        return slash_command(form)
    return Malformed("neither a command, a payload nor an ssl_check")


def release(payload: Mapping[str, Any]) -> Release | Malformed:
    """The fields of a GitHub `release` event (the delivery's JSON object)."""
    details = _object(payload, "release", required=True)
    if isinstance(details, Malformed):
        return details
    repository = _object(payload, "repository", required=True)
    if isinstance(repository, Malformed):
        return repository
    sender = _object(payload, "sender", required=False)
    if isinstance(sender, Malformed):
        return sender
    parsed = _build(
        Release,
        {
            "action": _string(payload, "action", shape=_ACTION),
            "repository": _string(repository, "full_name", shape=_REPOSITORY),
            "tag": _string(details, "tag_name", limit=1024),
            "draft": _flag(details, "draft"),
            "prerelease": _flag(details, "prerelease"),
            "sender": _string(sender, "login", shape=_LOGIN, required=False),
            "html_url": _string(details, "html_url", limit=2048, required=False),
            "release_id": _identifier(details, "id"),
        },
    )
    # Only a release that may deploy has its tag built; GitHub sees 200 for the others as before.
    if isinstance(parsed, Release) and parsed.published and not _buildable(parsed.tag):
        return Malformed("tag_name is not a tag that may be built")
    return parsed


def _identifier(source: Mapping[str, Any], key: str) -> str | Malformed:
    """A GitHub id: a positive whole number (JSON number or digits), as text; "" when absent."""
    value = source.get(key)
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return Malformed(f"{key} is not an id")
    text = str(value)
    if not text.isdigit() or len(text) > 20:
        return Malformed(f"{key} is not an id")
    return text


def _buildable(tag: str) -> bool:
    return _TAG.fullmatch(tag) is not None and ".." not in tag
