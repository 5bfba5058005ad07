"""The Slack thread of one deploy: a parent message kept current, and replies for what matters.

Slack is told, never trusted: every call is bounded by the `Chat` adapter's
timeout and retry handlers, and a failure is logged and dropped, so a deploy
ends the same whether Slack answered or not. After a network-level failure the
thread stays quiet for a while instead of paying the timeout again on every
event; the final update is always attempted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from deployer.front.messages import (
    SlackMessage,
    deploy_parent,
    plan_reply,
    progress_reply,
    stage_reply,
)
from deployer.front.ports import Chat, ChatError
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


def post_parent(chat: Chat, channel: str, record: DeployRecord) -> str | None:
    """Post the thread's parent message for a new record; its ts (None if Slack failed)."""
    message = deploy_parent(record, time.time())
    try:
        return chat.post(channel, message)
    except Exception as error:  # Slack failing must not stop the request
        log.warning("slack: cannot post the parent of %s in %s: %s", record.id, channel, error)
        return None


def _outage(error: Exception) -> bool:
    """True when Slack itself did not answer usefully (network, 429 or 5xx after retries)."""
    return error.outage if isinstance(error, ChatError) else True


class SlackThread:
    """A pipeline listener telling one deploy's story in its Slack thread."""

    def __init__(self, chat: Chat, record: DeployRecord) -> None:
        self.chat = chat
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
        self._call("chat_update", final, lambda c, t: self.chat.update(c, t, message))

    def _reply(self, message: SlackMessage) -> None:
        self._call("chat_postMessage", False, lambda c, t: self.chat.post(c, message, t))

    def _call(self, method: str, always: bool, call: Callable[[str, str], object]) -> None:
        """`call(channel, ts)` unless Slack was found unreachable lately (`always` calls anyway)."""
        if not always and time.monotonic() < self._quiet_until:
            log.info("slack: skipped %s in thread %s (Slack unreachable)", method, self.ts)
            return
        assert self.channel is not None and self.ts is not None  # __call__ checked both
        try:
            call(self.channel, self.ts)
        except Exception as error:
            log.warning("slack: %s in thread %s failed: %s", method, self.ts, error)
            if _outage(error):
                self._quiet_until = time.monotonic() + QUIET_AFTER_OUTAGE
        else:
            self._quiet_until = float("-inf")
