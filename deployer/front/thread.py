"""The Slack thread of one deploy: a parent message kept current, and replies for what matters.

The listener never calls Slack itself: it writes what the thread should say into
the deploy's box in the outbox, which the store keeps, and wakes a
`Courier` that sends it on a thread of its own. A deploy therefore runs at the
same speed whether Slack answers, is slow, rate-limits or is down; what Slack
did not take is sent later by the next drain (this worker's, or the sweep's).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping

from deployer.front.analysis_messages import analysis_reply
from deployer.front.approval_messages import approval_ask
from deployer.front.messages import (
    SlackMessage,
    deploy_parent,
    note_reply,
    plan_reply,
    progress_reply,
    stage_reply,
)
from deployer.front.outbox import Outbox
from deployer.pipeline.events import (
    AwaitingApproval,
    DeployFinished,
    Event,
    Noted,
    StageFinished,
    StageProgressed,
    StageStarted,
)
from deployer.pipeline.record import DeployRecord, Stage

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0  # at most one progress-driven parent rendering a second
DRAIN_SLICE = 5.0  # seconds one background drain may take before it looks again
FINAL_FLUSH = 20.0  # seconds a worker spends at the end making Slack show the final state


def open_thread(outbox: Outbox, channel: str, record: DeployRecord, respond_to: str = "") -> None:
    """Start `record`'s thread in `channel` (kept in the store; sent by the next drain)."""
    record.slack_channel = channel
    outbox.open(record.id, channel, deploy_parent(record, time.time()), respond_to)


class Courier:
    """Drains one deploy's box on a background thread whenever woken; `flush` at the end."""

    def __init__(self, outbox: Outbox, deploy_id: str) -> None:
        self.outbox = outbox
        self.deploy_id = deploy_id
        self._linked = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"slack-{deploy_id}", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=self._until_due())
            self._wake.clear()
            if self._stop.is_set():
                return
            self._drain(DRAIN_SLICE)

    def _until_due(self) -> float:
        box = self.outbox.get(self.deploy_id)
        due = box.due_at() if box else None
        return 30.0 if due is None else min(30.0, max(0.05, due - time.time()))

    def _drain(self, budget: float) -> None:
        try:
            box = self.outbox.drain(self.deploy_id, budget)
            if box is not None and box.ts and not box.permalink and not self._linked:
                self._linked = True
                self.outbox.link(self.deploy_id)
        except Exception:  # the thread is told later; the deploy goes on regardless
            log.exception("slack: draining the thread of %s failed", self.deploy_id)

    def flush(self, budget: float = FINAL_FLUSH) -> bool:
        """Stop the background drains; send what is left within `budget`; whether all went."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=DRAIN_SLICE + 5)
        end = time.monotonic() + budget
        while True:
            box = self.outbox.get(self.deploy_id)
            if box is None or not box.pending():
                return True
            left = end - time.monotonic()
            due = box.due_at()
            due = time.time() if due is None else due
            if left <= 0 or due - time.time() > left:
                log.warning(
                    "slack: the thread of %s is left to the sweep (%s)",
                    self.deploy_id,
                    box.last_error or "not due yet",
                )
                return False
            time.sleep(max(0.0, due - time.time()))
            self._drain(max(0.1, end - time.monotonic()))


class SlackThread:
    """A pipeline listener writing one deploy's story into its Slack thread's outbox."""

    def __init__(
        self,
        outbox: Outbox,
        record: DeployRecord,
        courier: Courier | None = None,
        thresholds: Mapping[str, float] | None = None,
    ) -> None:
        """`thresholds`: the environment's analysis thresholds (`Analysis.thresholds()`),
        drawn on the chart the final reply carries."""
        self.outbox = outbox
        self.deploy_id = record.id
        self.enabled = record.slack_channel is not None
        self.courier = courier
        self._running: Stage | None = None
        self._since: float | None = None
        self._activity = ""
        self._last_render = float("-inf")
        # What the store has not taken yet (it failed or raced): kept in order, never dropped.
        self._replies: list[SlackMessage] = []
        self._parent: SlackMessage | None = None
        self._final = False
        self.thresholds = dict(thresholds or {})

    def __call__(self, event: Event) -> None:
        if not self.enabled:
            return
        try:
            self._handle(event)
        except Exception:  # a rendering bug must not break the deploy either
            log.exception(
                "slack: thread of %s could not take %s", self.deploy_id, type(event).__name__
            )
        self._keep(event.record)
        if self.courier is not None:
            self.courier.wake()

    def _keep(self, record: DeployRecord | None) -> bool:
        """Write what is pending into the outbox, in order; whether all of it is kept."""
        try:
            while self._replies:
                self.outbox.reply(self.deploy_id, self._replies[0], during_run=True)
                self._replies.pop(0)
            if self._parent is not None:
                box = self.outbox.parent(self.deploy_id, self._parent, self._final)
                self._parent = None
                if box is not None and box.ts and record is not None and record.slack_ts is None:
                    record.slack_ts = box.ts  # saved with the record's next save
        except Exception as error:  # the store is slow or racing: the next event tries again
            log.warning("slack: thread of %s kept in memory for now: %s", self.deploy_id, error)
            return False
        return True

    def flush_pending(self, budget: float = 10.0) -> bool:
        """At the end: keep trying to write what is pending for up to `budget` seconds."""
        end = time.monotonic() + budget
        delay = 0.05
        while not self._keep(None):
            if time.monotonic() + delay > end:
                log.error(
                    "slack: thread of %s lost messages the store would not take", self.deploy_id
                )
                return False
            time.sleep(delay)
            delay = min(1.0, delay * 2)
        return True

    def _handle(self, event: Event) -> None:
        if isinstance(event, StageStarted):
            self._running, self._since, self._activity = event.stage, time.time(), ""
            self._render(event.record)
        elif isinstance(event, StageProgressed):
            self._activity = event.message
            reply = progress_reply(event.record, event.stage, event.message, event.link)
            if reply is not None:
                self._reply(reply)
            if time.monotonic() - self._last_render >= PROGRESS_INTERVAL:
                self._render(event.record)
        elif isinstance(event, StageFinished):
            self._running, self._since, self._activity = None, None, ""
            self._render(event.record)
            reply = stage_reply(event.record, event.result)
            if reply is not None:
                self._reply(reply)
        elif isinstance(event, Noted):
            self._reply(note_reply(event.text))
            self._render(event.record)
        elif isinstance(event, AwaitingApproval):
            self._running, self._since, self._activity = None, None, ""
            self._reply(approval_ask(event.record, event.approval))
            self._render(event.record)
        elif isinstance(event, DeployFinished):
            self._running, self._since, self._activity = None, None, ""
            if event.plan:
                self._reply(plan_reply(event.plan))
            analysis = None if event.dry_run else analysis_reply(event.record, self.thresholds)
            if analysis is not None:
                self._reply(analysis)  # the final reply, its chart shared right after it
            self._render(event.record, final=True, dry_run=event.dry_run)

    def _render(self, record: DeployRecord, final: bool = False, dry_run: bool = False) -> None:
        message = deploy_parent(
            record,
            time.time(),
            running=self._running,
            since=self._since,
            activity=self._activity,
            dry_run=dry_run,
        )
        self._last_render = time.monotonic()
        self._parent = message  # only the latest rendering matters
        self._final = final

    def _reply(self, message: SlackMessage) -> None:
        self._replies.append(message)
