"""The store interface: deploy records, environment locks, claims and the Slack outbox.

Every method is one atomic step against the shared store (SQLite on one machine,
Firestore for the function and the job): of several processes racing for the same
lock, claim or outbox version, exactly one wins, and the losers read the winner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from deployer.pipeline.record import DeployRecord, Lock


@dataclass(frozen=True)
class Versioned:
    """A document written only over the version it was read at (compare and swap)."""

    key: str
    body: str  # JSON, the caller's
    version: int  # 1 after the first write
    due_at: float | None = None  # when there is work to do on it; None: nothing pending


class Store(Protocol):
    def save(self, record: DeployRecord, owner: str | None = None) -> bool:
        """Insert or replace the record (the pipeline saves after every stage output).

        With `owner`, only while that run holds the record's deploy lock, checked in the
        same transaction as the write: a run that lost its deploy can never write over
        the run that took it over. Whether it was saved.
        """
        ...

    def get(self, deploy_id: str) -> DeployRecord | None: ...

    def history(self, environment: str, limit: int = 20) -> list[DeployRecord]:
        """The environment's records, newest first."""
        ...

    def unfinished(self) -> list[DeployRecord]:
        """Every record that has not ended (pending, queued or running), oldest first."""
        ...

    def acquire_lock(self, lock: Lock, now: float | None = None) -> Lock:
        """Take `lock` unless one of its kind is held; the lock that holds the environment now.

        A held lock is taken over (replaced by `lock`) only by the same holder, and only
        when its owner is `lock.owner`, is empty (handed over, not yet taken by a run), or
        its lease ran out before `now` (default: the clock). Of racing claimants exactly one gets it: compare
        the answer's `owner` with yours.
        """
        ...

    def renew_lock(
        self,
        environment: str,
        kind: str,
        holder: str,
        owner: str,
        lease_until: float,
        hand_over: bool = False,
    ) -> bool:
        """Extend the lease of the lock `holder` and `owner` hold; False when they lost it.

        `hand_over`: in the same step, leave the lock to `holder`'s next run (owner empty,
        as the front hands a new deploy over), e.g. a deploy parked awaiting approval with
        `lease_until` 0: held, with no lease to run out.
        """
        ...

    def release_lock(
        self, environment: str, kind: str, holder: str, owner: str | None = None
    ) -> bool:
        """Release the lock if `holder` (and, when given, `owner`) holds it; whether it did."""
        ...

    def locks(self, environment: str) -> list[Lock]:
        """The locks held on `environment`."""
        ...

    def request_cancel(self, deploy_id: str, who: str) -> bool:
        """Ask a running deploy to stop (kept apart from the record, which the run rewrites)."""
        ...

    def cancel_requested(self, deploy_id: str) -> str | None:
        """Who asked `deploy_id` to stop, or None."""
        ...

    def claim(self, key: str) -> bool:
        """Record `key` (e.g. a GitHub delivery id) once: True the first time, False after."""
        ...

    def outbox_read(self, key: str) -> Versioned | None:
        """The outbox document `key` (one deploy's Slack thread), or None."""
        ...

    def outbox_write(self, key: str, body: str, due_at: float | None, version: int) -> bool:
        """Write `key` if it is still at `version` (0: it must not exist); whether it was."""
        ...

    def outbox_due(self, now: float, limit: int) -> list[Versioned]:
        """Outbox documents with work due at or before `now`, most overdue first."""
        ...
