"""The one place a Slack `WebClient` is built: token, base URL, timeout and bounded retries.

`SlackChat` (deployer/adapters/slack_chat.py) wraps it for the front; bolt's `App`
gets one of its own from here.

A 429 waits Retry-After and tries again (3 times at most); a 5xx (500, 503) or a
dropped connection is retried twice after short backoffs. With the 5 s timeout a
call's worst case is bounded, so Slack being slow or down never holds a deploy long.
"""

from __future__ import annotations

import os
import random

from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.jitter import Jitter

SLACK_API_URL = "https://slack.com/api/"
TIMEOUT = 5  # seconds per HTTP request
RATE_LIMIT_RETRIES = 3
SERVER_ERROR_RETRIES = 2
CONNECTION_RETRIES = 2
BACKOFF = 0.25  # seconds before the first retry, doubling after


class _SmallJitter(Jitter):
    """Up to a quarter second of jitter (slack_sdk's default adds up to a whole second)."""

    def recalculate(self, duration: float) -> float:
        return duration + random.random() * BACKOFF


def slack_web_client(
    token: str | None = None,
    base_url: str | None = None,
    *,
    retries: bool = True,
    timeout: float = TIMEOUT,
) -> WebClient:
    """A WebClient for `token` (default SLACK_BOT_TOKEN) at `base_url` (default SLACK_API_URL, then Slack's).

    Without `retries` every call is tried once: the outbox, which keeps what it
    could not send and tries again later, must never sleep through a Retry-After.
    """
    url = base_url or os.environ.get("SLACK_API_URL") or SLACK_API_URL
    if not url.endswith("/"):
        url += "/"
    backoff = BackoffRetryIntervalCalculator(backoff_factor=BACKOFF, jitter=_SmallJitter())
    # slack_sdk's timeout is whole seconds in its signature but a float works with urllib.
    return WebClient(
        token=token if token is not None else os.environ.get("SLACK_BOT_TOKEN"),
        base_url=url,
        timeout=timeout,  # type: ignore[arg-type]
        retry_handlers=[]
        if not retries
        else [
            RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            ServerErrorRetryHandler(
                max_retry_count=SERVER_ERROR_RETRIES, interval_calculator=backoff
            ),
            ConnectionErrorRetryHandler(
                max_retry_count=CONNECTION_RETRIES, interval_calculator=backoff
            ),
        ],
    )
