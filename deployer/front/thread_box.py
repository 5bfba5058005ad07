"""One deploy's Slack thread as the outbox keeps it: what it should say, and what Slack shows.

Stored as JSON in the store's outbox document of the deploy (written only over the
version read); `due_at` is when the next Slack call may go, the field the sweep's
query orders by.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from deployer.store.protocol import Store, Versioned

UPDATE_INTERVAL = 1.0  # seconds between two updates of one parent
_CAS_ATTEMPTS = 30


@dataclass
class ThreadBox:
    """One deploy's Slack thread as the deployer means it to be, and how much Slack shows."""

    deploy_id: str
    channel: str
    created_at: float
    ts: str | None = None
    permalink: str = ""
    parent: dict[str, Any] | None = None
    parent_version: int = 0
    shown_version: int = 0  # the parent version Slack shows; 0: not posted yet
    replies: list[dict[str, Any]] = field(default_factory=list)
    replies_sent: int = 0
    failures: int = 0  # in a row
    retry_at: float = 0.0
    last_update_at: float = 0.0
    last_error: str = ""
    dropped: int = 0  # messages Slack refused for good
    ended: str = ""  # why the box gave up; "" while it has not
    final: bool = False  # the parent shows the deploy's end: a run's later words are stale
    drainer: str = ""
    drain_until: float = 0.0
    # Where to tell the person who asked when Slack refuses the thread's channel (a
    # slash command's response_url: a capability, never logged or shown).
    respond_to: str = ""
    # A post of the parent ended without an answer (a timeout, a 5xx): Slack may have
    # posted it. Before posting again, the channel is searched for it (its metadata).
    parent_unsure: bool = False

    def pending(self) -> bool:
        return not self.ended and (
            self.shown_version < self.parent_version or self.replies_sent < len(self.replies)
        )

    def due_at(self) -> float | None:
        """When the next call may go; None when there is nothing to send."""
        if not self.pending():
            return None
        due = self.retry_at
        only_update = self.ts is not None and self.replies_sent >= len(self.replies)
        if only_update:
            due = max(due, self.last_update_at + UPDATE_INTERVAL)
        return due

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ThreadBox:
        return cls(**json.loads(text))


def read_box(store: Store, deploy_id: str) -> ThreadBox | None:
    """The box of `deploy_id` as the store keeps it, or None."""
    found = store.outbox_read(deploy_id)
    return ThreadBox.from_json(found.body) if found else None


def change_box(
    store: Store, deploy_id: str, change: Callable[[ThreadBox | None], ThreadBox | None]
) -> ThreadBox | None:
    """Read the box, apply `change`, write it over the version read; again on a conflict."""
    for attempt in range(_CAS_ATTEMPTS):
        if attempt:
            # Racing writers (the listener, the courier) back off apart, not in step.
            time.sleep(random.uniform(0, min(0.2, 0.005 * 2**attempt)))
        found: Versioned | None = store.outbox_read(deploy_id)
        box = ThreadBox.from_json(found.body) if found else None
        changed = change(box)
        if changed is None:
            return None
        if found is not None and changed.to_json() == found.body:
            return changed  # nothing to write
        written = store.outbox_write(
            deploy_id, changed.to_json(), changed.due_at(), found.version if found else 0
        )
        if written:
            return changed
    raise RuntimeError(f"the outbox of {deploy_id} kept changing while it was written")
