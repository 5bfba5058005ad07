"""Running one stage: its timeout, its typed result, its events, its saved record."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from deployer.pipeline.events import (
    Event,
    Listener,
    Noted,
    StageFinished,
    StageProgressed,
    StageStarted,
)
from deployer.pipeline.lease import Lease, LeaseLost
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult
from deployer.store.protocol import Store

LEASE_CHECK = 1.0  # seconds between two checks that this run still owns its deploy


class StageFailed(Exception):
    """Raised inside a stage to end it unsuccessfully with a summary and details."""

    def __init__(
        self, summary: str, detail: str = "", outcome: Outcome = Outcome.FAILED, link: str = ""
    ) -> None:
        super().__init__(summary)
        self.summary = summary
        self.detail = detail
        self.outcome = outcome
        self.link = link


@dataclass(frozen=True)
class Done:
    """What a successful stage reports."""

    summary: str
    detail: str = ""
    link: str = ""


class Deadline:
    """A stage's time budget: how long is left, never negative."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

    def expired(self) -> bool:
        return self.left() <= 0


StageBody = Callable[[Deadline], Done]
"""What a stage does, within its deadline; raises StageFailed to end it unsuccessfully."""


class StageRunner:
    """Runs stages of one record, emitting events and saving the record as it goes.

    With a `lease`, the record is saved only while this run holds the deploy (the
    store checks the lock in the write's own transaction) and events are told only
    while it does (the lock is read at most once a second; the heartbeat renews it):
    a run that lost it raises LeaseLost instead of writing over the run that took it
    over, or telling the thread anything more.
    """

    def __init__(
        self,
        record: DeployRecord,
        store: Store | None,
        listener: Listener,
        cancellable: tuple[Stage, ...] = (),
        lease: Lease | None = None,
    ) -> None:
        self.record = record
        self._store = store
        self._listener = listener
        self._current: Stage | None = None
        self._last: Stage | None = None
        self._cancellable = cancellable
        self.lease = lease
        self._checked = time.monotonic()

    def cancel_requested(self) -> bool:
        """Whether someone asked (through the store) to cancel this record."""
        if self._store is None:
            return False
        who = self._store.cancel_requested(self.record.id)
        if who is None:
            return False
        self.record.cancel_requested, self.record.cancelled_by = True, who
        return True

    def _emit(self, event: Event) -> None:
        """Tell the listeners, while this run still owns the deploy (checked at most once
        a second): a run that lost it must not tell the thread anything more."""
        self._still_owned()
        self._listener(event)

    def _still_owned(self) -> None:
        """Raise LeaseLost when another run took the deploy over (checked at most once a
        second; the heartbeat renews the lease meanwhile)."""
        if self.lease is not None and time.monotonic() - self._checked >= LEASE_CHECK:
            self._checked = time.monotonic()
            if not self.lease.owned():
                raise LeaseLost(f"deploy {self.record.id} was taken over by another run")

    def save(self) -> None:
        """Persist the record now (stage outputs are saved the moment they are known)."""
        if self._store is None:
            return
        owner = self.lease.owner if self.lease is not None else None
        if not self._store.save(self.record, owner):
            if self.lease is not None:
                self.lease.lost.set()
            raise LeaseLost(f"deploy {self.record.id} was taken over by another run")

    def progress(self, message: str, link: str = "") -> None:
        """Report progress of the stage that is running, else of the one that just ended.

        Between stages the pipeline still has news about the last one (after a
        failure: "traffic untouched"); it is not dropped.
        """
        stage = self._current or self._last
        if stage is not None:
            self._emit(StageProgressed(self.record, stage, message, link))
        else:
            self.note(message)

    def note(self, text: str) -> None:
        """Keep `text` in the record's story and tell the listeners (no stage needed)."""
        self.record.note(text)
        self._emit(Noted(self.record, text))

    def run_in_order(self, stages: Sequence[tuple[Stage, float, StageBody]]) -> bool:
        """Run each (stage, seconds, body) in turn until one does not succeed; whether all did."""
        return all(
            self.run(stage, seconds, body).outcome == Outcome.SUCCEEDED
            for stage, seconds, body in stages
        )

    def run(self, stage: Stage, seconds: float, body: StageBody) -> StageResult:
        """Run `body` as `stage` within `seconds`; StageFailed ends it with that outcome."""
        self._current = stage
        self.record.running_stage = stage
        self.save()
        self._emit(StageStarted(self.record, stage))
        started_wall, started = time.time(), time.monotonic()
        deadline = Deadline(seconds)
        try:
            if stage in self._cancellable and self.cancel_requested():
                raise StageFailed(
                    f"cancelled by {self.record.cancelled_by or 'request'}",
                    outcome=Outcome.CANCELLED,
                )
            done = body(deadline)
            outcome, summary, detail, link = Outcome.SUCCEEDED, done.summary, done.detail, done.link
        except StageFailed as failure:
            outcome, summary, detail, link = (
                failure.outcome,
                failure.summary,
                failure.detail,
                failure.link,
            )
        result = StageResult(
            stage=stage,
            outcome=outcome,
            started_at=started_wall,
            duration=round(time.monotonic() - started, 3),
            summary=summary,
            detail=detail,
            link=link,
        )
        self.record.stages.append(result)
        self.record.running_stage = None
        if outcome != Outcome.SUCCEEDED:
            self.record.error = f"{stage}: {summary}"
        # Saved with the next stage's start (one write a boundary, not two) or the run's
        # end: a run lost in between does this stage again, which every stage allows.
        self._current, self._last = None, stage
        self._emit(StageFinished(self.record, result))
        return result
