"""The Slack thread of one deploy: a parent message kept current, and replies for what matters.

Slack is told, never trusted: every call is bounded by the client's timeout and
retry handlers, and a failure is logged and dropped, so a deploy ends the same
whether Slack answered or not. After a network-level failure the thread stays
quiet for a while instead of paying the timeout again on every event; the final
update is always attempted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from deployer.front.messages import (
    SlackMessage,
    deploy_parent,
    plan_reply,
    progress_reply,
    stage_reply,
)
from deployer.pipeline.events import (
    DeployFinished,
    Event,
    StageFinished,
    StageProgressed,
    StageStarted,
)
from deployer.pipeline.record import DeployRecord, Stage

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # at most one progress-driven parent update a second
QUIET_AFTER_OUTAGE = 30.0  # seconds without Slack calls after a network-level failure


def post_parent(client: WebClient, channel: str, record: DeployRecord) -> str | None:
    """Post the thread's parent message for a new record; its ts (None if Slack failed)."""
    message = deploy_parent(record, time.time())
    try:
        answer = client.chat_postMessage(channel=channel, **message.to_kwargs())
    except Exception as error:  # Slack failing must not stop the request
        log.warning("slack: cannot post the parent of %s in %s: %s", record.id, channel, error)
        return None
    ts = answer.get("ts")
    return ts if isinstance(ts, str) else None


def _outage(error: Exception) -> bool:
    """True when Slack itself did not answer usefully (network, 429 or 5xx after retries)."""
    if isinstance(error, SlackApiError):
        status = getattr(error.response, "status_code", 200)
        return isinstance(status, int) and (status == 429 or status >= 500)
    return True


class SlackThread:
    """A pipeline listener telling one deploy's story in its Slack thread."""

    def __init__(self, client: WebClient, record: DeployRecord) -> None:
        self.client = client
        self.channel = record.slack_channel
        self.ts = record.slack_ts
        self._running: Stage | None = None
        self._since: float | None = None
        self._activity = ""
        self._last_update = float("-inf")
        self._quiet_until = float("-inf")

    def __call__(self, event: Event) -> None:
        if self.channel is None or self.ts is None:
            return
        try:
            self._handle(event)
        except Exception:  # a rendering bug must not break the deploy either
            log.exception("slack: thread %s could not handle %s", self.ts, type(event).__name__)

    def _handle(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._running, self._since, self._activity = event.stage, time.time(), ""
            self._update(event.record)
        elif isinstance(event, StageProgressed):
            self._activity = event.message
            reply = progress_reply(event.record, event.stage, event.message, event.link)
            if reply is not None:
                self._reply(reply)
            if time.monotonic() - self._last_update >= PROGRESS_INTERVAL:
                self._update(event.record)
        elif isinstance(event, StageFinished):
            self._running, self._since, self._activity = None, None, ""
            self._update(event.record)
            reply = stage_reply(event.record, event.result)
            if reply is not None:
                self._reply(reply)
        elif isinstance(event, DeployFinished):
            self._running, self._since, self._activity = None, None, ""
            if event.plan:
                self._reply(plan_reply(event.plan))
            self._update(event.record, final=True)

    def _update(self, record: DeployRecord, final: bool = False) -> None:
        message = deploy_parent(
            record,
            time.time(),
            running=self._running,
            since=self._since,
            activity=self._activity,
        )
        self._last_update = time.monotonic()
        self._call("chat_update", final, ts=self.ts, **message.to_kwargs())

    def _reply(self, message: SlackMessage) -> None:
        self._call("chat_postMessage", False, thread_ts=self.ts, **message.to_kwargs())

    def _call(self, method: str, always: bool, **kwargs: Any) -> None:
        if not always and time.monotonic() < self._quiet_until:
            log.info("slack: skipped %s in thread %s (Slack unreachable)", method, self.ts)
            return
        try:
            getattr(self.client, method)(channel=self.channel, **kwargs)
        except Exception as error:
            log.warning("slack: %s in thread %s failed: %s", method, self.ts, error)
            if _outage(error):
                self._quiet_until = time.monotonic() + QUIET_AFTER_OUTAGE
        else:
            self._quiet_until = float("-inf")
