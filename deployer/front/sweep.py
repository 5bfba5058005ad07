"""`deployer sweep`: the time-driven work nobody else is left to do once the function has
answered and the job has exited. Cloud Scheduler runs it every minute in production;
`deployer serve` and the sandbox run it on a timer (`[deployer] sweep_interval`).

    dead deploys     a deploy whose lease ran out (its worker died, or never started)
                     is dispatched again, once per loss; the run resumes it, or gives it
                     up safely once it was lost `max_attempts` times
    approvals        a deploy parked awaiting approval whose time is up, or that was
                     decided while no dispatch reached a run, is dispatched once a minute
                     until a run takes it: rejected or timed out, its tag goes
    queues           an environment that came free starts its first waiting deploy;
                     waits older than `queue_timeout` end
    outbox           every thread with messages due is drained, except those a live
                     worker drains itself
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from deployer.front.context import FrontContext
from deployer.front.intake import release_stale, revive, waiters
from deployer.pipeline import approval
from deployer.pipeline.approval import Decision
from deployer.pipeline.lease import DEPLOY, run_alive
from deployer.pipeline.record import Lock, State

log = logging.getLogger(__name__)

DRAIN_BUDGET = 20.0  # seconds one sweep may spend sending Slack what is due


@dataclass
class SweepReport:
    revived: list[str] = field(default_factory=list)
    decided: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    drained: int = 0

    def lines(self) -> list[str]:
        return [
            f"resumed {len(self.revived)} deploy(s) whose worker was lost"
            + (f": {', '.join(self.revived)}" if self.revived else ""),
            f"woke {len(self.decided)} deploy(s) awaiting approval, decided or out of time"
            + (f": {', '.join(self.decided)}" if self.decided else ""),
            f"started {len(self.started)} queued deploy(s)"
            + (f": {', '.join(self.started)}" if self.started else ""),
            f"drained {self.drained} Slack thread(s)",
        ]


class Sweeper:
    """One sweep at a time over a front context."""

    def __init__(self, context: FrontContext) -> None:
        self.context = context
        self._lock = threading.Lock()

    def sweep(self, budget: float = DRAIN_BUDGET) -> SweepReport:
        with self._lock:
            report = SweepReport()
            self._revive_dead(report)
            self._wake_decided(report)
            for environment in sorted(self.context.config.environments):
                started = waiters(self.context).start_next(environment)
                if started is not None:
                    report.started.append(started.id)
            if self.context.settings.slack_bot_token:
                report.drained = self.context.outbox.drain_due(
                    budget, lambda deploy_id: run_alive(self.context.store, deploy_id)
                )
            return report

    def _deploy_lock(self, environment: str) -> Lock | None:
        return next(
            (lock for lock in self.context.store.locks(environment) if lock.kind == DEPLOY), None
        )

    def _release_stale(self, now: float) -> None:
        for environment in self.context.config.environments:
            lock = self._deploy_lock(environment)
            if lock is not None and lock.expired(now):
                release_stale(self.context, lock, self.context.store.get(lock.holder), now)

    def _revive_dead(self, report: SweepReport) -> None:
        now = time.time()
        self._release_stale(now)
        lease = self.context.config.deployer.lease
        for record in self.context.store.unfinished():
            if record.state == State.QUEUED:
                continue
            lock = self._deploy_lock(record.environment)
            if lock is not None and lock.holder == record.id:
                dead = lock.expired(now)
            else:
                # It holds no lock (a store restored, a lock deleted by hand): once it has
                # been quiet for two leases, a run takes the lock again or ends it.
                lock = Lock(record.environment, DEPLOY, record.id, "", 0.0, "", record.updated_at)
                dead = now - record.updated_at > 2 * lease
            if dead and revive(self.context, record, lock):
                report.revived.append(record.id)

    def _wake_decided(self, report: SweepReport) -> None:
        now = time.time()
        for record in self.context.store.unfinished():
            if record.state != State.AWAITING_APPROVAL:
                continue
            if approval.decided(self.context.store, record, now) == Decision.WAITING:
                continue
            # Once a minute at most: the run it starts takes the deploy out of this state.
            if self.context.store.claim(f"approval-wake:{record.id}:{int(now // 60)}"):
                self.context.dispatcher.dispatch(record.id)
                report.decided.append(record.id)


class SweepTimer:
    """Runs `Sweeper.sweep` every `interval` seconds on a daemon thread until `stop()`."""

    def __init__(self, sweeper: Sweeper, interval: float) -> None:
        self._sweeper = sweeper
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._sweeper.sweep()
            except Exception:  # the next tick tries again
                log.exception("sweep failed")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
