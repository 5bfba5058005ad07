"""A run's hold on its deploy lock: taken, kept alive by a heartbeat, given back.

    take()      the environment's deploy lock for this run (owner) with a lease; a run of
                the same deploy takes over a lock whose owner is empty (handed over by the
                front) or its own, or whose lease ran out (the run before it died)
    heartbeat   a thread renewing the lease every third of its length; a renewal the store
                refuses means another run took the deploy over: `lost` is set, and the
                pipeline stops at its next step without touching anything more
    release()   gives the lock back, only if this run still owns it
    pause()     leaves it held for the deploy's next run, owner empty and no lease
                (a deploy parked awaiting approval: no run is alive, none is dead)

Owners name the run. On a Cloud Run job the owner is the execution and task
(`job:EXECUTION/TASK`), so a retry of a task that died takes its deploy over at
once: Cloud Run starts a task's next attempt only after the last one ended.
Anywhere else it is the host, the process and a random part.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

from deployer.errors import DeployerError
from deployer.pipeline.record import Lock
from deployer.store.protocol import Store

log = logging.getLogger(__name__)

DEPLOY = "deploy"  # the lock kind a deploy (or rollback) holds
ABANDON_OWNER = "abandon:"  # owner prefix of a lock handed over to be abandoned


class LeaseLost(DeployerError):
    """Another run took this deploy over: this one must stop without changing anything."""


def run_owner() -> str:
    """Who this run is, as a lock owner (see the module docstring)."""
    execution = os.environ.get("CLOUD_RUN_EXECUTION")
    if execution:
        return f"job:{execution}/{os.environ.get('CLOUD_RUN_TASK_INDEX', '0')}"
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Lease:
    """The deploy lock of one run of `deploy_id` in `environment`."""

    store: Store
    environment: str
    deploy_id: str
    owner: str
    seconds: float
    reason: str = DEPLOY
    lost: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _renewed: float = 0.0

    def take(self, now: float | None = None) -> Lock:
        """Try to take the lock; the lock held afterwards (ours when `owns` says so)."""
        now = time.time() if now is None else now
        wanted = Lock(
            self.environment,
            DEPLOY,
            self.deploy_id,
            self.reason,
            now,
            self.owner,
            now + self.seconds,
        )
        held = self.store.acquire_lock(wanted, now)
        if self.owns(held):
            self._renewed = now
        return held

    def owns(self, lock: Lock) -> bool:
        return lock.holder == self.deploy_id and lock.owner == self.owner

    def renew(self) -> bool:
        """Extend the lease now; False (and `lost` set) when the store says it is not ours."""
        if self.lost.is_set():
            return False
        now = time.time()
        try:
            kept = self.store.renew_lock(
                self.environment, DEPLOY, self.deploy_id, self.owner, now + self.seconds
            )
        except DeployerError as error:
            # The store did not answer: the lease still runs until it runs out.
            log.warning("deploy %s: renewing its lease failed: %s", self.deploy_id, error)
            if now - self._renewed > self.seconds:
                self.lost.set()
            return not self.lost.is_set()
        if kept:
            self._renewed = now
        else:
            log.warning("deploy %s: another run took it over; this one stops", self.deploy_id)
            self.lost.set()
        return kept

    def owned(self) -> bool:
        """Whether the store still shows this run as the deploy's owner (a read, no write);
        False (and `lost` set) when another run took it over."""
        if self.lost.is_set():
            return False
        try:
            locks = self.store.locks(self.environment)
        except DeployerError as error:
            log.warning("deploy %s: reading its lock failed: %s", self.deploy_id, error)
            return True  # the heartbeat decides once the lease could have run out
        if not any(lock.kind == DEPLOY and self.owns(lock) for lock in locks):
            log.warning("deploy %s: another run took it over; this one stops", self.deploy_id)
            self.lost.set()
        return not self.lost.is_set()

    def check(self) -> None:
        """Raise LeaseLost when another run owns the deploy now."""
        if self.lost.is_set():
            raise LeaseLost(f"deploy {self.deploy_id} was taken over by another run")

    def start(self) -> None:
        """Renew the lease on a thread of its own until `release()`."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._beat, name=f"lease-{self.deploy_id}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        interval = max(0.05, self.seconds / 3)
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def stop(self) -> None:
        """Stop renewing (the lease then runs out on its own unless released)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def release(self) -> bool:
        """Stop renewing and give the lock back if this run still owns it."""
        self.stop()
        if self.lost.is_set():
            return False
        try:
            return self.store.release_lock(self.environment, DEPLOY, self.deploy_id, self.owner)
        except DeployerError as error:
            log.error("deploy %s: could not release its lock: %s", self.deploy_id, error)
            return False

    def pause(self) -> bool:
        """Stop renewing and leave the lock held for the deploy's next run, with no lease to
        run out (a deploy parked awaiting approval); whether this run still owned it."""
        self.stop()
        if self.lost.is_set():
            return False
        try:
            return self.store.renew_lock(
                self.environment, DEPLOY, self.deploy_id, self.owner, 0.0, hand_over=True
            )
        except DeployerError as error:
            # Still ours: the lease runs out, and the sweep's run parks it again.
            log.error("deploy %s: could not park its lock: %s", self.deploy_id, error)
            return False


def run_alive(store: Store, deploy_id: str, now: float | None = None) -> bool:
    """Whether a live run of `deploy_id` owns its deploy now (a taken lock, a lease not out)."""
    record = store.get(deploy_id)
    if record is None or record.state.finished:
        return False
    now = time.time() if now is None else now
    return any(
        lock.kind == DEPLOY and lock.holder == deploy_id and lock.owner and not lock.expired(now)
        for lock in store.locks(record.environment)
    )
