"""One run of a deploy (or rollback) under its environment's deploy lock.

    take the lock     a new deploy from a terminal takes it here; a deploy the front
                      recorded holds it already, handed over (owner "") to its first run;
                      a run of a deploy whose worker died takes it over once the lease
                      ran out, or at once when it is the same job task retried
    refuse            another deploy holds the environment: nothing is touched
    step aside        another live run owns this deploy: nothing is touched
    abandon           the lock was handed over to be abandoned (a forced unlock), or the
                      deploy's runs were lost `max_attempts` times
    resume            "worker lost during promote; resumed, attempt 2", then the pipeline
                      continues from the saved stage outputs
    park              a deploy awaiting approval: the lock stays held, handed over to
                      the run a decision dispatches, with no lease to run out
    release           on every other way out, if this run still owns the lock

The caller learns the record as it ended (or as another run left it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from deployer.config import Config
from deployer.pipeline import failpoints
from deployer.pipeline.abandon import abandon
from deployer.pipeline.deploy import DeployPipeline
from deployer.pipeline.events import DeployFinished, Listener
from deployer.pipeline.lease import ABANDON_OWNER, DEPLOY, Lease, LeaseLost, run_owner
from deployer.pipeline.ports import Platform
from deployer.pipeline.record import DeployRecord, Lock, Stage, State
from deployer.pipeline.rollback import RollbackPipeline
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.store.protocol import Store

log = logging.getLogger(__name__)


@dataclass
class Runs:
    """Runs saved (or new) records to their end, one run at a time per deploy."""

    config: Config
    platform: Platform
    store: Store

    def run(
        self, record: DeployRecord, listener: Listener, owner: str | None = None
    ) -> DeployRecord:
        """Take `record`'s lock for this run and run it to its end (see the module docstring)."""
        if record.state.finished or record.state == State.QUEUED:
            return record
        settings = self.config.deployer
        held_now = self._deploy_lock(record.environment)
        handed = held_now is not None and held_now.holder == record.id
        if handed and held_now is not None and held_now.owner.startswith(ABANDON_OWNER):
            owner = held_now.owner  # a forced unlock handed the deploy over to be abandoned
        lease = Lease(
            self.store,
            record.environment,
            record.id,
            owner or run_owner(),
            settings.lease,
            record.kind,
        )
        held = lease.take()
        if not lease.owns(held):
            if held.holder == record.id:
                log.info("deploy %s: run %s owns it; this run steps aside", record.id, held.owner)
                return record
            return self._refuse(record, held, listener)
        try:
            done = self._owned_run(record, listener, lease, held_now)
        except LeaseLost as lost:
            log.warning("%s", lost)
            return self.store.get(record.id) or record
        except BaseException:
            # A run that crashed is a run that died: its traffic may be half moved, so it
            # keeps the lock; the lease runs out, and the deploy is resumed (or, lost too
            # often, abandoned with its traffic put back) like any other.
            lease.stop()
            raise
        if done.state == State.AWAITING_APPROVAL:
            # No run is alive now and none is dead: the next is dispatched by a vote, or by
            # the sweep once the approval's time is up.
            failpoints.reached("approval.parked", done.attempt)
            lease.pause()
            return done
        lease.release()
        return done

    def _owned_run(
        self, record: DeployRecord, listener: Listener, lease: Lease, held_now: Lock | None
    ) -> DeployRecord:
        """The run, once this run owns the deploy: abandon it, or resume it."""
        settings = self.config.deployer
        if lease.owner.startswith(ABANDON_OWNER):
            who, _, why = held_now.reason.partition(": ") if held_now else ("", "", "")
            return abandon(
                record,
                who.removeprefix("forced unlock by ") or "an admin",
                why or "forced unlock",
                self.config,
                self.platform,
                self.store,
                listener,
                lease,
            )
        if record.attempt - record.parks >= settings.max_attempts:
            times = record.attempt - record.parks
            lost = "once" if times == 1 else f"{times} times"
            return abandon(
                record,
                "the deployer",
                f"its worker was lost {lost}",
                self.config,
                self.platform,
                self.store,
                listener,
                lease,
            )
        self._begin(record, listener, lease, held_now)
        lease.start()
        if record.kind == "rollback":
            pipeline = RollbackPipeline(self.config, self.platform, self.store, listener)
            return pipeline.run(record, lease)
        return DeployPipeline(self.config, self.platform, self.store, listener).run(
            record, lease=lease
        )

    def _deploy_lock(self, environment: str) -> Lock | None:
        return next((lock for lock in self.store.locks(environment) if lock.kind == DEPLOY), None)

    def _begin(
        self, record: DeployRecord, listener: Listener, lease: Lease, held_now: Lock | None
    ) -> None:
        """Count this run; say when it takes over from a run that was lost."""
        runner = StageRunner(record, self.store, listener, lease=lease)
        # A parked deploy's lock was paused (handed over, no lease): a decision (or the
        # clock) woke it. Any other lock means the last run died, parking or not.
        woken = held_now is not None and held_now.owner == "" and held_now.lease_until == 0
        parked = record.state == State.AWAITING_APPROVAL
        if parked:
            record.state = State.RUNNING
        if record.attempt > 0 and not (parked and woken):
            during = "approval" if parked else record.running_stage or _next_stage(record)
            runner.note(f"worker lost during {during}; resumed, attempt {record.attempt + 1}")
        record.attempt += 1
        runner.save()

    def _refuse(self, record: DeployRecord, held: Lock, listener: Listener) -> DeployRecord:
        """Another deploy holds the environment: end this one without touching anything."""
        runner = StageRunner(record, self.store, listener)

        def refused(deadline: Deadline) -> Done:
            raise StageFailed(f"deploy {held.holder} is already running in {record.environment}")

        settings = self.config.environment(record.environment)
        runner.run(Stage.PREFLIGHT, settings.timeouts.preflight, refused)
        record.state = State.FAILED if record.attempt == 0 else State.ABANDONED
        record.updated_at = time.time()
        runner.save()
        listener(DeployFinished(record))
        return record


def _next_stage(record: DeployRecord) -> str:
    """The stage after the last one that finished, for "lost during ..."."""
    if not record.stages:
        return "start"
    return f"the step after {record.stages[-1].stage}"
