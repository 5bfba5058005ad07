"""The sandbox's Slack workspace: a team, a bot, users, channels and every message posted.

`SlackSink.call(method, params)` answers a Web API method the way Slack does
(the response dict, or `SlackError` carrying Slack's error string);
`respond(id, body)` answers a post to a `response_url`. Everything posted is
kept, with thread replies and edit history, for `GET /_sandbox/messages`. The
bot token holds `DEFAULT_SCOPES` unless `scopes=` (or `set_scopes`) says
otherwise; channels may be ones the bot has not joined (`add_channel(...,
is_member=False)`).

The recorded state lives in `slack.workspace`, the Web API methods in
`slack.methods` (Block Kit checks in `slack.blocks`), response URLs in
`slack.response_urls`; this module joins them and keeps the names others import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from deployer_sandbox.slack.methods import HANDLERS, METHODS
from deployer_sandbox.slack.response_urls import ResponseUrls
from deployer_sandbox.slack.workspace import (
    BOT_USER_ID,
    DEFAULT_SCOPES,
    TEAM_ID,
    SlackError,
    SlackWorkspace,
)

# What the HTTP front, the demo and the tests import from here.
__all__ = ["BOT_USER_ID", "DEFAULT_SCOPES", "METHODS", "TEAM_ID", "SlackError", "SlackSink"]


class SlackSink(SlackWorkspace):
    """Thread-safe recorded Slack workspace that answers the Web API and response URLs."""

    def __init__(
        self,
        tokens: Iterable[str] | None = None,
        clock: Callable[[], float] = time.time,
        scopes: Iterable[str] | None = None,
    ) -> None:
        super().__init__(tokens, clock, scopes)
        self._response_urls = ResponseUrls(self)

    def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Answer one Web API method (token already checked); raise `SlackError`."""
        handler = HANDLERS.get(method)
        if handler is None:
            raise SlackError("unknown_method")
        with self._lock:
            return {"ok": True, **handler(self, params)}

    def open_response_url(
        self,
        base_url: str,
        *,
        channel: str | None = None,
        user: str | None = None,
        message_ts: str | None = None,
    ) -> str:
        """Mint a response URL under `base_url` (5 posts within 30 minutes, like Slack's)."""
        with self._lock:
            return self._response_urls.open(base_url, channel, user, message_ts)

    def respond(self, token: str, body: dict[str, Any]) -> tuple[int, str]:
        """Answer a post to a response URL: (HTTP status, body text) as Slack does."""
        with self._lock:
            return self._response_urls.respond(token, body)
