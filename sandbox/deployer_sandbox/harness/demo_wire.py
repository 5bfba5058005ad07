"""The demo's wire: requests to the chat front exactly as Slack sends them, signed, over HTTP.

    slash_command(webhook, secret, "staging", user, channel, response_url)
        POST /slack/events, form-encoded: `/deploy staging` typed by `user`
    click(webhook, secret, parent, button, user, channel, response_url)
        POST /slack/events, form field `payload`: a `block_actions` interaction, the click
        on `button` as drawn in `parent` (its action_id and value read back from Slack)
    channel_messages(sink, channel)      GET /_sandbox/messages: the channel as Slack holds it
    drawn_button(parent, wanted)         the first button of the parent `wanted` accepts

Both requests carry Slack's signature (`v0=` HMAC-SHA256 of `v0:{timestamp}:{body}`) and
its headers; the front verifies them as it would verify Slack's.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from deployer.front.mrkdwn import escape
from deployer.front.verify import slack_signature

HTTP_TIMEOUT = 10.0
TEAM_ID = "T0SANDBOX1"
TEAM_DOMAIN = "sandbox"
APP_ID = "A0SANDBOX1"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """One HTTP call on loopback: (status, body text); errors with a status are answers too."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


class UserTraffic:
    """Requests to a service's URL while the story goes on, as its users would send them
    (`POST /_sandbox/traffic`, on a thread of its own); `answer` once they all ended."""

    def __init__(self, sandbox_url: str, service: str, rps: int, seconds: int) -> None:
        self.answer: dict[str, Any] = {}
        body = json.dumps({"rps": rps, "seconds": seconds, "service": service}).encode()
        headers = {"Content-Type": "application/json"}

        def send() -> None:
            request = urllib.request.Request(
                f"{sandbox_url}/_sandbox/traffic", data=body, method="POST", headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=seconds + 70) as answered:
                    self.answer = json.loads(answered.read())
            except (urllib.error.URLError, OSError, ValueError) as error:
                self.answer = {"error": str(error)}

        self._thread = threading.Thread(target=send, name="user-traffic", daemon=True)
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, Any]:
        self._thread.join(timeout)
        return self.answer


def _trigger_id() -> str:
    return f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}"


def _signed(secret: str, body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "User-Agent": SLACK_USER_AGENT,
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": slack_signature(secret, timestamp, body),
    }


def signed_slash_command(
    secret: str, text: str, user: str, channel: str, response_url: str
) -> tuple[bytes, dict[str, str]]:
    """`/deploy <text>` as Slack POSTs it: the form body and its signed headers."""
    fields = {
        "token": "unused-legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": "deploys",
        "user_id": user,
        "user_name": "demo.user",
        "command": "/deploy",
        # Slack escapes &, < and > in what was typed (docs.slack.dev, "Formatting text for
        # app surfaces": escaping text); the front unescapes it once.
        "text": escape(text),
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": _trigger_id(),
    }
    # Slack percent-encodes spaces as %20; the signature covers these exact bytes.
    body = urlencode(fields, quote_via=quote).encode("ascii")
    return body, _signed(secret, body)


def slash_command(
    webhook: str, secret: str, text: str, user: str, channel: str, response_url: str
) -> tuple[int, str]:
    """POST `/deploy <text>` to the front exactly as Slack does; (status, body)."""
    body, headers = signed_slash_command(secret, text, user, channel, response_url)
    return http("POST", f"{webhook}/slack/events", body, headers)


def signed_click(
    secret: str,
    parent: dict[str, Any],
    button: dict[str, Any],
    user: str,
    channel: str,
    response_url: str,
) -> tuple[bytes, dict[str, str]]:
    """A click on `button` of the message `parent`, as Slack POSTs it: the form body (one
    field, `payload`, the interaction as JSON) and its signed headers.

    The payload's fields are those of Slack's `block_actions` reference
    (docs.slack.dev/reference/interaction-payloads/block_actions-payload): who clicked,
    the message's container and the message itself, and the action with the button's
    action_id, block_id, text and value as drawn.
    """
    block_id = next(
        (
            str(block.get("block_id", ""))
            for block in parent.get("blocks") or []
            if button in (block.get("elements") or [])
        ),
        "",
    )
    action = {
        "type": "button",
        "action_id": button.get("action_id"),
        "block_id": block_id,
        "text": button.get("text"),
        "value": button.get("value", ""),
        "action_ts": f"{time.time():.6f}",
    }
    if button.get("style"):
        action["style"] = button["style"]
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "name": user.lower(), "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": "unused-legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": parent.get("ts"),
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": _trigger_id(),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "deploys"},
        "message": {
            "type": "message",
            "user": parent.get("user"),
            "ts": parent.get("ts"),
            "text": parent.get("text") or "",
            "blocks": parent.get("blocks") or [],
        },
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [action],
    }
    body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}, quote_via=quote)
    encoded = body.encode("ascii")
    return encoded, _signed(secret, encoded)


def click(
    webhook: str,
    secret: str,
    parent: dict[str, Any],
    button: dict[str, Any],
    user: str,
    channel: str,
    response_url: str,
) -> tuple[int, str]:
    """POST the click to the front exactly as Slack does; (status, body)."""
    body, headers = signed_click(secret, parent, button, user, channel, response_url)
    return http("POST", f"{webhook}/slack/events", body, headers)


def channel_messages(sink: str, channel: str) -> list[dict[str, Any]]:
    """Every message of `channel` the sandbox's Slack recorded, oldest first ([] if unread)."""
    status, text = http("GET", f"{sink}/_sandbox/messages?channel={quote(channel)}")
    if status != 200:
        return []
    found: list[dict[str, Any]] = json.loads(text)
    return found


def drawn_button(
    parent: dict[str, Any] | None, wanted: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The first button of `parent`'s actions blocks that `wanted` accepts, as drawn."""
    for block in (parent or {}).get("blocks") or []:
        if block.get("type") != "actions":
            continue
        for element in block.get("elements") or []:
            if element.get("type") == "button" and wanted(element):
                return dict(element)
    return None


def label_of(button: dict[str, Any]) -> str:
    """A button's label as drawn."""
    text = button.get("text")
    return str(text.get("text", "")) if isinstance(text, dict) else str(text or "")
