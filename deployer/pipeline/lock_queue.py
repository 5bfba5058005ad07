"""Deploys waiting for their environment's lock, first come first served.

A queued deploy is a record in state `queued` (its `queued_at` orders the line);
the wait lives in the store, so it survives any process. Whoever frees the lock
(a run ending, an unlock) calls `start_next`, and so does the sweep, which
catches a release that did not: the first waiter takes the lock (handed over,
owner ""), becomes `pending`, and is returned for its caller to dispatch. A wait
longer than `[deployer] queue_timeout` ends it, cancelled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from deployer import window_gate
from deployer.config import Config
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.record import DeployRecord, Lock, State
from deployer.store.protocol import Store


@dataclass
class QueueStep:
    """What `start_next` did: the waiter it started (to dispatch), and waits it ended."""

    started: DeployRecord | None = None
    expired: list[DeployRecord] = field(default_factory=list)


def waiting(store: Store, environment: str) -> list[DeployRecord]:
    """The environment's queue, first in line first."""
    queued = [
        record
        for record in store.unfinished()
        if record.environment == environment and record.state == State.QUEUED
    ]
    return sorted(queued, key=lambda record: (record.queued_at or record.created_at, record.id))


def enqueue(store: Store, record: DeployRecord, now: float | None = None) -> int:
    """Put `record` in its environment's queue; its place in line (1: next)."""
    record.state = State.QUEUED
    record.queued_at = time.time() if now is None else now
    store.save(record)
    line = waiting(store, record.environment)
    return next((n for n, r in enumerate(line, start=1) if r.id == record.id), len(line))


def start_next(config: Config, store: Store, environment: str) -> QueueStep:
    """Give the free environment to its first waiter; end waits that ran out of time."""
    step = QueueStep()
    now = time.time()
    line = []
    for record in waiting(store, environment):
        if now - (record.queued_at or record.created_at) > config.deployer.queue_timeout:
            record.state = State.CANCELLED
            record.cancelled_by = "the queue"
            record.error = (
                f"waited {config.deployer.queue_timeout / 60:g} min for {environment}; gave up"
            )
            store.save(record)
            step.expired.append(record)
        else:
            line.append(record)
    if not line or store.locks(environment):
        return step
    # A deploy waits for the lock, not for its deploy window: one that would start while
    # the window is closed ends, told when it opens (a break-glass one goes on).
    while line and (closed := window_gate.closed_text(config, line[0])) is not None:
        refused = line.pop(0)
        refused.state = State.CANCELLED
        refused.cancelled_by = "the deploy window"
        refused.error = f"not started: {closed}"
        store.save(refused)
        step.expired.append(refused)
    if not line:
        return step
    first = line[0]
    lease = config.deployer.lease
    handover = Lock(environment, DEPLOY, first.id, first.kind, now, "", now + lease)
    if store.acquire_lock(handover, now).holder != first.id:
        return step
    if not store.claim(f"dequeued:{first.id}"):
        return step  # another caller started it
    first.state = State.PENDING
    first.note(
        f"{environment} is free: starting after waiting {now - (first.queued_at or now):.0f} s"
    )
    store.save(first)
    step.started = first
    return step
