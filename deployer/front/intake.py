"""Intake: from an accepted request to a deploy that is recorded, announced and dispatched, once.

    lock      the environment's deploy lock is taken for the new record first, atomically,
              before anything is saved: of racing requests exactly one gets it (handed
              over with owner "", so its worker takes it over; leased, so a worker that
              never starts is noticed)
    refused   everyone else learns the true holder: its id, who started it, its thread;
              a holder whose lease ran out is being resumed, and they are told so
    queued    with `--queue` (or the Queue button) the record waits for the lock instead
    record    saved with the thread's channel, then the thread opened in the outbox; an
              intake the store gives out on ends failed with its lock freed, and raises
              (the request answers 5xx: nothing is "taken in" that will not run)
    dispatch  handed to the worker; a failed hand-over is tried again by the sweep, or
              ends the record and frees the lock

No Slack Web API call is made here: the request only writes to the store. The
worker posts the thread (and whatever else is due in the outbox) as it starts, and
the sweep sends what nobody else did. Slack slow, rate-limiting or down costs the
answer to `/deploy` nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from deployer.front.context import FrontContext
from deployer.front.messages import deploy_parent
from deployer.front.ports import SlackMessage
from deployer.front.thread import open_thread
from deployer.front.thread_box import ThreadBox
from deployer.front.waiters import Waiters
from deployer.pipeline import lock_queue
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.record import DeployRecord, Lock, State

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Started:
    record: DeployRecord  # as the hand-over left it (failed, when it could not start)


@dataclass(frozen=True)
class Queued:
    record: DeployRecord
    position: int  # 1: next in line
    holder: Lock


@dataclass(frozen=True)
class Busy:
    """Another deploy holds the environment."""

    holder: Lock
    record: DeployRecord | None  # the holder's record, when the store has it
    thread: ThreadBox | None  # its thread, for a link
    reviving: bool  # its worker was lost and it is being resumed now


Outcome = Started | Queued | Busy


def blocking_manual_lock(context: FrontContext, environment: str, who: str) -> Lock | None:
    """Someone else's manual lock on `environment`."""
    for lock in context.store.locks(environment):
        if lock.kind == "manual" and lock.holder != who:
            return lock
    return None


def take_in(
    context: FrontContext,
    record: DeployRecord,
    channel: str | None,
    queue: bool = False,
    first_reply: SlackMessage | None = None,
    respond_to: str = "",
) -> Outcome:
    """Lock, record, announce and dispatch `record` (see the module docstring).

    A busy environment refuses it, or with `queue` takes it into its queue (a manual
    lock too: the deploy waits for the unlock). `first_reply` opens its thread;
    `respond_to` (the asker's response_url) is told if Slack refuses the channel.
    """
    store, now = context.store, time.time()
    lease = context.config.deployer.lease
    wanted = Lock(record.environment, DEPLOY, record.id, record.kind, now, "", now + lease)
    held = store.acquire_lock(wanted, now)
    holder = store.get(held.holder) if held.holder != record.id else None
    if held.holder != record.id and release_stale(context, held, holder, now):
        held = store.acquire_lock(wanted, now)
        holder = store.get(held.holder) if held.holder != record.id else None
    if held.holder != record.id:
        reviving = held.expired(now) and holder is not None and revive(context, holder, held)
        if not queue:
            thread = context.outbox.get(held.holder)
            return Busy(held, holder, thread, reviving)
        record.slack_channel = channel or None
        position = lock_queue.enqueue(store, record, now)  # the thread opens saying so
        _open(context, record, channel, first_reply, respond_to)
        waiters(context).start_next(record.environment)  # the lock may have come free since
        return Queued(record, position, held)
    # Saved before its thread opens: a thread is never kept for a deploy that is not.
    record.slack_channel = channel or None
    try:
        store.save(record)
    except Exception:
        _forget_lock(context, record)
        raise
    _open(context, record, channel, first_reply, respond_to)
    context.dispatcher.dispatch(record.id)
    return Started(store.get(record.id) or record)


def release_stale(
    context: FrontContext, lock: Lock, holder: DeployRecord | None, now: float
) -> bool:
    """Free a deploy lock whose lease ran out and whose deploy is gone or ended; whether it did.

    (A front that died between taking the lock and saving its record leaves one.)
    """
    if lock.kind != DEPLOY or not lock.expired(now):
        return False
    if holder is not None and not holder.state.finished:
        return False
    released = context.store.release_lock(lock.environment, DEPLOY, lock.holder, lock.owner)
    if released:
        log.warning("released %s's lock on %s: its deploy has ended", lock.holder, lock.environment)
    return released


def _open(
    context: FrontContext,
    record: DeployRecord,
    channel: str | None,
    first_reply: SlackMessage | None,
    respond_to: str,
) -> None:
    if not channel:
        return
    try:
        open_thread(context.outbox, channel, record, respond_to)
        if first_reply is not None:
            context.outbox.reply(record.id, first_reply)
    except Exception:
        # The caller answers that nothing was taken in; so it must be true.
        _never_taken_in(context, record)
        raise


NOT_TAKEN_IN = "not taken in: the store failed while its thread was opened"


def never_taken_in(record: DeployRecord) -> bool:
    """Whether `record` is one whose intake failed part-way (so it may be taken in again)."""
    return record.state == State.FAILED and record.error == NOT_TAKEN_IN


def _never_taken_in(context: FrontContext, record: DeployRecord) -> None:
    """End a saved record whose intake failed part-way (the store gave out); best effort."""
    try:
        record.state = State.FAILED
        record.error = NOT_TAKEN_IN
        context.store.save(record)
        # Not final: a redelivery may take the same deploy in again, in the same thread.
        context.outbox.parent(record.id, deploy_parent(record, time.time()))
    except Exception:
        log.exception("could not end %s, whose intake failed", record.id)
    _forget_lock(context, record)


def _forget_lock(context: FrontContext, record: DeployRecord) -> None:
    try:
        context.store.release_lock(record.environment, DEPLOY, record.id, "")
    except Exception:
        log.exception("could not free %s's lock on %s", record.id, record.environment)


def revive(context: FrontContext, record: DeployRecord, lock: Lock) -> bool:
    """Dispatch a run of `record`, whose worker was lost, once per loss; whether this did."""
    if record.state.finished:
        return False
    if not context.store.claim(f"revive:{record.id}:{record.attempt}:{lock.lease_until:.3f}"):
        return True  # another request or sweep is reviving it
    log.warning(
        "deploy %s lost its worker (lease ran out); resuming it",
        record.id,
        extra={"deploy_id": record.id},
    )
    context.dispatcher.dispatch(record.id)
    return True


def waiters(context: FrontContext) -> Waiters:
    return Waiters(context.config, context.store, context.outbox, context.dispatcher)
