"""Requests exactly as Slack and GitHub send them, signed, for the front's tests.

    slash_command(secret, "prod v1.4.2", user=..., channel=...)   POST /slack/events (form)
    block_action(secret, "deploy_cancel", deploy_id, ...)          POST /slack/events (payload=JSON)
    github_event(secret, "release", release_payload(...))          POST /github/webhook (JSON)
    signed_form(secret, [(name, value), ...])                      any form, names repeated and all
    signed_payload(secret, anything)                               any JSON as the `payload` field

Each builds a `WireRequest` (method, path, headers, raw body) that can be sent
through a functions-framework test client (`send_flask`) or over real HTTP
(`send_http`), or tampered with first (`replace(request, body=...)`).
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, urlencode

import httpx

from deployer.front.mrkdwn import escape
from deployer.front.verify import github_signature, slack_signature

SLACK_PATH = "/slack/events"
GITHUB_PATH = "/github/webhook"
TEAM = "T0SANDBOX1"
TEAM_DOMAIN = "sandbox"
APP = "A0SANDBOX1"
FORM = "application/x-www-form-urlencoded"
SLACK_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


@dataclass(frozen=True)
class WireRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.text)


def slack_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with `body`, signed with `secret` at `timestamp` (default now)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": FORM,
        "User-Agent": SLACK_USER_AGENT,
        "Accept": "application/json,*/*",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": slack_signature(secret, ts, body),
    }


def _form(fields: Mapping[str, str]) -> bytes:
    # Slack percent-encodes spaces (%20); a `+` re-encoding changes the signed bytes.
    return urlencode(fields, quote_via=quote).encode("ascii")


def trigger_id() -> str:
    return f"{secrets.randbelow(10**13)}.{secrets.randbelow(10**13)}.{secrets.token_hex(16)}"


def slash_command(
    secret: str,
    text: str,
    *,
    user: str,
    channel: str,
    user_name: str = "tester",
    channel_name: str = "deploys",
    response_url: str = "",
    command: str = "/deploy",
    timestamp: int | None = None,
) -> WireRequest:
    """`/deploy <text>` typed by `user` in `channel`, as Slack POSTs it to the app."""
    fields = {
        "token": "legacy-verification-token-unused",
        "team_id": TEAM,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": channel_name,
        "user_id": user,
        "user_name": user_name,
        "command": command,
        # Slack sends the text with `&`, `<` and `>` escaped, as in any message it sends.
        "text": escape(text),
        "api_app_id": APP,
        "is_enterprise_install": "false",
        "response_url": response_url or f"https://hooks.slack.com/commands/{TEAM}/1/x",
        "trigger_id": trigger_id(),
    }
    body = _form(fields)
    return WireRequest("POST", SLACK_PATH, slack_headers(secret, body, timestamp), body)


def block_action(
    secret: str,
    action_id: str,
    value: str,
    *,
    user: str,
    channel: str,
    message_ts: str,
    response_url: str = "",
    action_ts: str | None = None,
    trigger: str | None = None,
    timestamp: int | None = None,
    retry_num: int | None = None,
) -> WireRequest:
    """A click on the button `action_id` (value `value`) of the message at `message_ts`."""
    label = {"deploy_cancel": "Cancel", "deploy_rollback": "Roll back", "deploy_retry": "Retry"}
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "tester", "name": "tester", "team_id": TEAM},
        "api_app_id": APP,
        "token": "legacy-verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": trigger or trigger_id(),
        "team": {"id": TEAM, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel, "name": "deploys"},
        "message": {"type": "message", "ts": message_ts, "text": "", "user": "U0SANDBOT1"},
        "state": {"values": {}},
        "response_url": response_url or f"https://hooks.slack.com/actions/{TEAM}/1/x",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "deploy_actions",
                "text": {"type": "plain_text", "text": label.get(action_id, action_id)},
                "value": value,
                "type": "button",
                "action_ts": action_ts or f"{time.time():.6f}",
            }
        ],
    }
    body = _form({"payload": json.dumps(payload, separators=(",", ":"))})
    headers = slack_headers(secret, body, timestamp)
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = "http_timeout"
    return WireRequest("POST", SLACK_PATH, headers, body)


def signed_form(
    secret: str, fields: Sequence[tuple[str, str]], *, timestamp: int | None = None
) -> WireRequest:
    """Any form (names repeated, values of any text) percent-encoded and signed as Slack signs."""
    body = urlencode(list(fields), quote_via=quote).encode("ascii")
    return WireRequest("POST", SLACK_PATH, slack_headers(secret, body, timestamp), body)


def signed_payload(secret: str, payload: Any, *, timestamp: int | None = None) -> WireRequest:
    """Any JSON value as the `payload` field of an interactive request, signed as Slack signs."""
    text = json.dumps(payload, separators=(",", ":"))
    return signed_form(secret, [("payload", text)], timestamp=timestamp)


def form_fields(request: WireRequest) -> list[tuple[str, str]]:
    """The fields of a signed form such as `slash_command` builds, in order (to alter, sign again)."""
    return parse_qsl(request.body.decode("ascii"), keep_blank_values=True)


def interactive_payload(request: WireRequest) -> dict[str, Any]:
    """The JSON `payload` of a signed interactive request such as `block_action` builds."""
    (payload,) = parse_qs(request.body.decode("ascii"))["payload"]
    data: dict[str, Any] = json.loads(payload)
    return data


def release_payload(
    repository: str,
    tag: str,
    *,
    action: str = "released",
    draft: bool = False,
    prerelease: bool = False,
    release_id: int | None = None,
) -> dict[str, Any]:
    """The parts of a `release` event payload GitHub sends that a deployer may read.

    GitHub sends `published` and then `released` (a release) or `prereleased` (a
    pre-release) as separate deliveries of one release (one `release.id`).
    """
    owner = repository.split("/", 1)[0]
    return {
        "action": action,
        "release": {
            "id": secrets.randbelow(10**9) if release_id is None else release_id,
            "tag_name": tag,
            "target_commitish": "main",
            "name": tag,
            "draft": draft,
            "prerelease": prerelease,
            "html_url": f"https://github.com/{repository}/releases/tag/{tag}",
            "author": {"login": owner, "id": 1, "type": "User"},
        },
        "repository": {
            "id": 1,
            "name": repository.split("/", 1)[1],
            "full_name": repository,
            "private": True,
            "owner": {"login": owner, "id": 1, "type": "Organization"},
            "html_url": f"https://github.com/{repository}",
        },
        "sender": {"login": owner, "id": 1, "type": "User"},
    }


def github_event(
    secret: str, event: str, payload: Mapping[str, Any], *, delivery: str | None = None
) -> WireRequest:
    """A webhook delivery of `event` with `payload`, signed as GitHub signs it."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/a1b2c3d",
        "Accept": "*/*",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "123456",
        "X-Hub-Signature-256": github_signature(secret, body),
    }
    return WireRequest("POST", GITHUB_PATH, headers, body)


def send_flask(client: Any, request: WireRequest) -> Answer:
    """Send through a Flask/functions-framework test client."""
    response = client.open(
        request.path, method=request.method, data=request.body, headers=request.headers
    )
    return Answer(
        response.status_code, response.get_data(as_text=True), dict(response.headers.items())
    )


def send_http(base_url: str, request: WireRequest, timeout: float = 10.0) -> Answer:
    """Send over real HTTP to `base_url` (e.g. a `deployer serve`)."""
    response = httpx.request(
        request.method,
        base_url.rstrip("/") + request.path,
        content=request.body,
        headers=request.headers,
        timeout=timeout,
    )
    return Answer(response.status_code, response.text, dict(response.headers.items()))
