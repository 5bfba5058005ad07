"""Slack response URLs: minted per interaction, good for five posts within thirty minutes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from deployer_sandbox.slack.arguments import content, flag, text_param
from deployer_sandbox.slack.workspace import BOT_USER_ID, Message, SlackError, SlackWorkspace

RESPONSE_URL_USES = 5  # Slack: "up to five times within 30 minutes"
RESPONSE_URL_TTL = 30 * 60.0


@dataclass
class ResponseUrl:
    url: str
    created: float
    channel: str | None
    user: str | None
    message_ts: str | None  # the message whose button produced it, if any
    uses: int = 0
    last_ts: str | None = None  # the last message it posted, for replace_original


class ResponseUrls:
    """The response URLs minted in one workspace; callers hold the workspace's lock."""

    def __init__(self, workspace: SlackWorkspace) -> None:
        self._workspace = workspace
        self._urls: dict[str, ResponseUrl] = {}

    def open(
        self, base_url: str, channel: str | None, user: str | None, message_ts: str | None
    ) -> str:
        """Mint a response URL under `base_url`."""
        token = secrets.token_urlsafe(12)
        url = f"{base_url.rstrip('/')}/response/{token}"
        self._urls[token] = ResponseUrl(url, self._workspace.now(), channel, user, message_ts)
        return url

    def respond(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        """Answer a post to a response URL: (HTTP status, body text) as Slack does."""
        entry = self._urls.get(token)
        if entry is None:
            return 404, "no_service"
        if self._workspace.now() - entry.created > RESPONSE_URL_TTL:
            return 404, "expired_url"
        if entry.uses >= RESPONSE_URL_USES:
            return 404, "used_url"
        try:
            self._apply(entry, body)
        except SlackError as error:
            # Slack's webhooks answer the bare code as text, without the Web API's
            # detail: blocks it refuses are "400 invalid_blocks" and nothing more
            # (slackapi/java-slack-sdk#1017, "invalid_blocks response with no error
            # message": Slack's answer there is to call chat.postMessage for detail).
            return 400, error.code
        entry.uses += 1
        return 200, "ok"

    def _apply(self, entry: ResponseUrl, body: dict[str, Any]) -> None:
        ws = self._workspace
        original_ts = entry.message_ts or entry.last_ts
        original = ws.find(entry.channel, original_ts) if original_ts else None
        if flag(body.get("delete_original")):
            if original is None:
                raise SlackError("message_not_found")
            original.deleted = True
            return
        text, blocks = content(body)
        if flag(body.get("replace_original")) and original is not None:
            ws.edit(original, text, blocks)
            return
        response_type = body.get("response_type") or "ephemeral"
        if response_type not in ("ephemeral", "in_channel"):
            raise SlackError("invalid_payload")
        ephemeral = response_type == "ephemeral"
        thread_ts = text_param(body, "thread_ts")
        message = Message(entry.channel, ws.next_ts(), BOT_USER_ID, text, blocks, thread_ts)
        message.ephemeral = ephemeral
        message.user_target = entry.user if ephemeral else None
        message.response_url, message.response_type = entry.url, response_type
        ws.append(message)
        entry.last_ts = message.ts
