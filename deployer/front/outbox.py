"""The durable thread: every message and update the deployer means to make in Slack, kept in
the store before it is sent, and sent until Slack takes it.

    one box per deploy (the store's outbox document, written only over the version read)
    ├── parent     the latest rendering of the thread's parent; posted once (its ts kept),
    │              then updated to the latest rendering: updates coalesce, none is queued
    ├── replies    in order; each is posted once Slack has taken the one before
    └── schedule   when the next call may go: a 429's Retry-After, else a backoff after
                   a failure; at most one parent update per `UPDATE_INTERVAL`

`drain` sends what is due within a time budget and returns; whatever is left is
sent by the next drain: the worker's, or `deployer sweep`'s. A box is drained by
one process at a time (a short claim kept in the box); a claim left by an earlier
attempt of the same Cloud Run job task is void (`outbox_claims`), so a retried worker
tells the thread at once. Slack refusing a message for good (a bad block,
`msg_too_long`) drops that message and is logged; a parent Slack refuses, or
anything still unsent after `deadline`, ends the box.

Slack's limits (api.slack.com/apis/rate-limits): `chat.postMessage` allows about
one message per second per channel with short bursts; `chat.update` is Tier 3
(50+ a minute per workspace). Each 429 says how long to wait, and the box waits
that long; parent updates are coalesced, so a busy channel costs one update per
interval per deploy however many events the deploy has.

A reply whose answer was lost (Slack took it, the connection dropped before we
heard) is sent again: Slack offers no idempotency key for `chat.postMessage`,
so a reply may rarely appear twice; a parent is never posted twice once its ts
is known. A reply carrying a file (the analysis chart) is posted, then its file is
shared in the thread at most once, and a file Slack will not take never holds the
thread up (`thread_files`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from deployer.front import thread_files
from deployer.front.outbox_claims import dead_claim, drainer_name
from deployer.front.outbox_failures import UNJOINED, failed, unjoined
from deployer.front.ports import Chat, ChatError, SlackMessage
from deployer.front.thread_box import ThreadBox, change_box, read_box
from deployer.store.protocol import Store

log = logging.getLogger(__name__)

DEADLINE = 24 * 3600.0  # seconds a box keeps trying
CLAIM = 10.0  # seconds a drainer's claim lasts beyond its budget
# The metadata event every thread parent carries (api.slack.com/metadata): its payload
# names the deploy, so a parent whose post went unanswered can be found.
THREAD_EVENT = "deployer_thread"


def _unclaimed(box: ThreadBox | None, me: str) -> ThreadBox | None:
    if box is not None and box.drainer == me:
        box.drainer, box.drain_until = "", 0.0
    return box


def _message(data: dict[str, Any]) -> SlackMessage:
    return SlackMessage(str(data.get("text") or ""), list(data.get("blocks") or []))


def _data(message: SlackMessage) -> dict[str, Any]:
    data: dict[str, Any] = {"text": message.text, "blocks": message.blocks}
    if message.file is not None:
        data["file"] = message.file
    return data


class Outbox:
    """Deploy threads kept in `store` and sent through `chat` (a client without retries)."""

    def __init__(
        self,
        store: Store,
        chat: Chat,
        deadline: float = DEADLINE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.chat = chat
        self.deadline = deadline
        self._clock = clock

    # --- what the deployer means to say --------------------------------------------------

    def open(
        self, deploy_id: str, channel: str, parent: SlackMessage, respond_to: str = ""
    ) -> ThreadBox:
        """Start the thread of `deploy_id` in `channel` with its parent (idempotent).

        `respond_to`: the asker's response_url, told if Slack refuses the channel.
        """

        def start(box: ThreadBox | None) -> ThreadBox:
            if box is not None:
                return box
            return ThreadBox(
                deploy_id,
                channel,
                self._clock(),
                parent=_data(parent),
                parent_version=1,
                respond_to=respond_to,
            )

        opened = self._change(deploy_id, start)
        assert opened is not None
        return opened

    def parent(
        self, deploy_id: str, message: SlackMessage, final: bool = False
    ) -> ThreadBox | None:
        """The parent should now read `message` (replacing any rendering not yet shown).

        Once a `final` rendering (the deploy's end) is kept, only another final one may
        replace it: a run that lost its deploy must never make the thread go back.
        """

        def set_parent(box: ThreadBox | None) -> ThreadBox | None:
            if box is None or (box.final and not final):
                return box
            box.final = final
            if box.parent != _data(message):
                box.parent = _data(message)
                box.parent_version += 1
            return box

        return self._change(deploy_id, set_parent)

    def reply(
        self, deploy_id: str, message: SlackMessage, during_run: bool = False
    ) -> ThreadBox | None:
        """Add `message` to the thread, after every reply before it.

        A reply `during_run` (a stage's news) is dropped once the thread shows the end.
        """

        def add(box: ThreadBox | None) -> ThreadBox | None:
            if box is not None and not (during_run and box.final):
                box.replies.append(_data(message))
            return box

        return self._change(deploy_id, add)

    def get(self, deploy_id: str) -> ThreadBox | None:
        return read_box(self.store, deploy_id)

    # --- sending -------------------------------------------------------------------------

    def drain(
        self, deploy_id: str, budget: float, max_calls: int | None = None
    ) -> ThreadBox | None:
        """Send what is due in the thread of `deploy_id` within `budget` seconds (and at most
        `max_calls` Slack calls); the box after."""
        end = time.monotonic() + budget
        # Each drain is a drainer of its own: two couriers sharing this Outbox (two runs of
        # one deploy in a process, one of them lost) must not both hold the claim.
        me = drainer_name()
        box = self._claim(deploy_id, budget, me)
        if box is None:
            return self.get(deploy_id)
        calls = 0
        try:
            sending: ThreadBox | None = box
            while sending is not None and time.monotonic() < end:
                if max_calls is not None and calls >= max_calls:
                    break
                calls += 1
                sending = self._send_one(sending)
                due = sending.due_at() if sending is not None else None
                if due is None:
                    break
                wait = due - self._clock()
                if wait > end - time.monotonic():
                    break  # not due within the budget: the next drain sends it
                if wait > 0:
                    time.sleep(wait)
        finally:
            box = self._change(deploy_id, lambda saved: _unclaimed(saved, me))
        return box

    def link(self, deploy_id: str) -> str:
        """The thread's permalink, asked of Slack once its parent is posted ("" if unknown).

        Not part of a drain: a request that posts the parent must not pay for it.
        """
        box = self.get(deploy_id)
        if box is None or not box.ts or box.permalink:
            return box.permalink if box else ""
        try:
            found = self.chat.permalink(box.channel, box.ts)
        except ChatError:
            return ""  # only a convenience for links to the thread

        def keep(saved: ThreadBox | None) -> ThreadBox | None:
            if saved is not None:
                saved.permalink = found
            return saved

        self._change(deploy_id, keep)
        return found

    def drain_due(self, budget: float, skip: Callable[[str], bool] = lambda _: False) -> int:
        """Drain every box that is due, within `budget` seconds in all; how many were drained.

        `skip(deploy_id)` leaves a box to a drainer that is alive (a running worker).
        """
        end = time.monotonic() + budget
        drained = 0
        for found in self.store.outbox_due(self._clock(), 100):
            left = end - time.monotonic()
            if left <= 0:
                break
            if skip(found.key):
                continue
            self.drain(found.key, left)
            drained += 1
        return drained

    def _claim(self, deploy_id: str, budget: float, me: str) -> ThreadBox | None:
        """The box, claimed for this drainer, when it has something due and nobody else drains it."""
        now = self._clock()
        claimed: list[ThreadBox] = []

        def take(box: ThreadBox | None) -> ThreadBox | None:
            claimed.clear()
            due = box.due_at() if box is not None else None
            if box is None or due is None or due > now:
                return box
            held = box.drainer and box.drainer != me and box.drain_until > now
            if held and not dead_claim(box.drainer, me):
                return box
            if now - box.created_at > self.deadline:
                box.ended = f"gave up after {self.deadline / 3600:g} h: {box.last_error}"
                log.error("slack: thread of %s dropped: %s", deploy_id, box.ended)
                return box
            box.drainer, box.drain_until = me, now + budget + CLAIM
            claimed.append(box)
            return box

        self._change(deploy_id, take)
        return claimed[0] if claimed else None

    def _send_one(self, box: ThreadBox) -> ThreadBox | None:
        """Make the one call that comes next; the box as saved after it."""
        if box.ts is None:
            assert box.parent is not None
            version = box.parent_version
            return self._call(box, lambda: self._post_parent(box, version))
        if box.replies_sent < len(box.replies):
            index = box.replies_sent
            if box.replies[index].get("text_posted"):
                return self._share_file(box, index)
            return self._call(box, lambda: self._post_reply(box, index))
        version = box.parent_version
        assert box.parent is not None
        return self._call(box, lambda: self._update_parent(box, version))

    def _post_parent(self, box: ThreadBox, version: int) -> Callable[[ThreadBox], None]:
        assert box.parent is not None
        ts = self._parent_found(box) if box.parent_unsure else None
        if ts is None:
            ts = self.chat.post(
                box.channel,
                _message(box.parent),
                metadata={
                    "event_type": THREAD_EVENT,
                    "event_payload": {"deploy_id": box.deploy_id},
                },
            )
        if ts is None:
            raise ChatError("Slack gave the parent no ts", "no_ts")

        def posted(saved: ThreadBox) -> None:
            saved.ts = ts
            saved.shown_version = max(saved.shown_version, version)
            saved.last_update_at = self._clock()

        return posted

    def _parent_found(self, box: ThreadBox) -> str | None:
        """The parent an unanswered post may have left in the channel (its metadata names
        the deploy), so that a thread never gets two parents; None when there is none."""
        try:
            return self.chat.find_posted(box.channel, THREAD_EVENT, "deploy_id", box.deploy_id)
        except ChatError as error:
            if error.outage or error.retry_after is not None:
                raise  # looked for again on the next try
            # No history to read (a missing scope): posting again is the lesser harm.
            log.warning("slack: cannot look for the parent of %s: %s", box.deploy_id, error.error)
            return None

    def _post_reply(self, box: ThreadBox, index: int) -> Callable[[ThreadBox], None]:
        self.chat.post(box.channel, _message(box.replies[index]), thread_ts=box.ts)

        def posted(saved: ThreadBox) -> None:
            if saved.replies_sent == index and saved.replies[index].get("file"):
                saved.replies[index]["text_posted"] = True  # its file goes next
            else:
                saved.replies_sent = max(saved.replies_sent, index + 1)

        return posted

    def _share_file(self, box: ThreadBox, index: int) -> ThreadBox | None:
        """Share the file of reply `index` (posted already): at most once, never retried
        into a duplicate, never ending the box (`thread_files`)."""
        begun = self._change(box.deploy_id, lambda saved: thread_files.begin(saved, index))
        if begun is None or begun.replies_sent != index:
            return begun  # given up: a share begun before ended unrecorded
        try:
            thread_files.share(self.chat, begun, begun.replies[index]["file"])
        except (ChatError, thread_files.FileNotDrawn) as error:
            failure = error
            return self._change(
                box.deploy_id,
                lambda saved: thread_files.failed(saved, index, failure, self._clock()),
            )
        return self._change(box.deploy_id, lambda saved: thread_files.shared(saved, index))

    def _update_parent(self, box: ThreadBox, version: int) -> Callable[[ThreadBox], None]:
        assert box.parent is not None and box.ts is not None
        self.chat.update(box.channel, box.ts, _message(box.parent))

        def updated(saved: ThreadBox) -> None:
            saved.shown_version = max(saved.shown_version, version)
            saved.last_update_at = self._clock()

        return updated

    def _call(
        self, box: ThreadBox, call: Callable[[], Callable[[ThreadBox], None]]
    ) -> ThreadBox | None:
        """Run one Slack call and save what it changed, or schedule the retry it needs."""
        try:
            done = call()
        except ChatError as error:
            failure = error
            saved = self._change(box.deploy_id, lambda saved: failed(saved, failure, self._clock()))
            if saved is not None and saved.ended and error.error in UNJOINED:
                self._tell_asker(saved, error.error)
            return saved

        def succeeded(saved: ThreadBox | None) -> ThreadBox | None:
            if saved is not None:
                done(saved)
                saved.failures, saved.retry_at, saved.last_error = 0, 0.0, ""
            return saved

        return self._change(box.deploy_id, succeeded)

    def _tell_asker(self, box: ThreadBox, error: str) -> None:
        """The thread's channel refused the bot: say so to whoever asked, once."""
        if not box.respond_to:
            return
        try:
            self.chat.respond(box.respond_to, unjoined(box.deploy_id, box.channel, error))
        except ChatError as failure:
            log.warning("slack: could not tell the asker of %s: %s", box.deploy_id, failure.error)

        def forget(saved: ThreadBox | None) -> ThreadBox | None:
            if saved is not None:
                saved.respond_to = ""  # a response_url takes five posts at most
            return saved

        self._change(box.deploy_id, forget)

    # --- the store ----------------------------------------------------------------------

    def _change(
        self, deploy_id: str, change: Callable[[ThreadBox | None], ThreadBox | None]
    ) -> ThreadBox | None:
        """Read the box, apply `change`, write it over the version read; again on a conflict."""
        return change_box(self.store, deploy_id, change)
