"""The deploy pipeline: preflight -> build -> deploy -> ready -> health [-> approval]
[-> predeploy] -> promote -> verify [-> postdeploy] [-> watch].

Any unsuccessful end (a failure, a timeout, a cancel, at any stage, on any run)
leaves the traffic that served when the deploy first began: read back, and put
back and verified when it is not what serves. Stage outputs are saved the
moment they are known, so running the same record again continues
where it stopped: the build is followed, not restarted; an existing candidate
is not created twice; traffic steps resume from what the candidate serves.

An environment with `[approval]` parks the deploy after health (`approval.py`): the
run ends in state awaiting_approval, its lock left held for the run a decision
dispatches, which goes through the stages again (each finds its work done, and the
candidate's health is checked anew) and on to traffic, or to the tag's removal.
A promotion (`promotion.py`) takes its image at its first preflight and builds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deployer.config import Config, ServiceConfig
from deployer.pipeline import failpoints, traffic
from deployer.pipeline.approval import ApprovalGate
from deployer.pipeline.candidate import CandidateStages
from deployer.pipeline.events import AwaitingApproval, DeployFinished, Listener
from deployer.pipeline.hooks import HookStages, hook_seconds
from deployer.pipeline.lease import Lease
from deployer.pipeline.ports import (
    BuildRejected,
    Platform,
)
from deployer.pipeline.preflight import Plan, make_plan
from deployer.pipeline.promotion import take_promoted_image
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.pipeline.restore import keep_safe, read_back
from deployer.pipeline.reuse import dry_run_build_line
from deployer.pipeline.rollout import Rollout
from deployer.pipeline.stages import Deadline, Done, StageBody, StageRunner
from deployer.pipeline.watch import Watch, watch_seconds
from deployer.run_names import candidate_revision_name as candidate_revision_name
from deployer.store.protocol import Store

# Until traffic moves a deploy can stop cleanly; from promotion on, only a rollback undoes it.
CANCELLABLE = (
    Stage.PREFLIGHT,
    Stage.BUILD,
    Stage.DEPLOY,
    Stage.READY,
    Stage.HEALTH,
    Stage.PREDEPLOY,
)


@dataclass
class DeployPipeline:
    """Runs deploy records through the stages against a platform and a store."""

    config: Config
    platform: Platform
    store: Store
    listener: Listener

    def run(
        self, record: DeployRecord, dry_run: bool = False, lease: Lease | None = None
    ) -> DeployRecord:
        """Run (or continue) `record` to its end; the finished record.

        The caller holds the environment's deploy lock (`lease`) and releases it.
        """
        store = None if dry_run else self.store
        runner = StageRunner(record, store, self.listener, CANCELLABLE, lease)
        settings = self.config.environment(record.environment)
        service = self.config.target(record.environment)
        record.state = State.RUNNING
        plan = self._preflight(runner, settings.timeouts.preflight, dry_run)
        if dry_run:
            record.state = _stopped(record) if plan is None else State.SUCCEEDED
            lines = () if plan is None else (*plan.lines(), self._would_build(record, plan))
            self.listener(DeployFinished(record, lines, dry_run=True))
            return record
        record.state = _stopped(record) if plan is None else self._deploy(runner, plan)
        if record.state == State.AWAITING_APPROVAL:
            assert plan is not None and plan.settings.approval is not None
            runner.save()  # the caller parks the lock
            self.listener(AwaitingApproval(record, plan.settings.approval))
            return record
        failpoints.reached(f"{record.state}.done", record.attempt)
        if record.state != State.SUCCEEDED:
            self._stop_build(runner, self.config.service_of(record.environment))
            services = self.platform.services
            record.state = keep_safe(runner, services, service, settings, record.state)
        read_back(self.platform.services, service, record)
        runner.save()
        self.listener(DeployFinished(record))
        return record

    def _would_build(self, record: DeployRecord, plan: Plan) -> str:
        builds, images = self.platform.builds, self.platform.images
        timeout = plan.settings.timeouts.preflight
        return dry_run_build_line(record, plan, builds, images, timeout)

    def _stop_build(self, runner: StageRunner, service: ServiceConfig) -> None:
        """A deploy that ended without its image leaves no build running (a lost run's too)."""
        record = runner.record
        if not record.build_id or record.image or record.stage(Stage.BUILD) is not None:
            return  # no build, or it ended (a build stage that ends stops its build)
        try:
            self.platform.builds.cancel(service, record.build_id)
        except BuildRejected as error:
            runner.progress(f"could not stop build {record.build_id}: {error}")
            return
        runner.progress(f"build {record.build_id} stopped")

    def _preflight(self, runner: StageRunner, seconds: float, dry_run: bool) -> Plan | None:
        """The preflight stage; its plan, or None when it did not pass."""
        plan: Plan | None = None

        def body(deadline: Deadline) -> Done:
            nonlocal plan
            record = runner.record
            took = ""
            if record.promoted_from and not record.image:
                took = take_promoted_image(self.config, self.platform, self.store, record, deadline)
                if dry_run:  # a dry run keeps nothing: what it read is said, not saved
                    record.image = None
            plan = make_plan(self.config, self.platform, self.store, record, deadline)
            done = self._planned(runner, plan, dry_run)
            return replace(done, summary=f"{took}; {done.summary}") if took else done

        passed = runner.run(Stage.PREFLIGHT, seconds, body).outcome == Outcome.SUCCEEDED
        return plan if passed else None

    def _planned(self, runner: StageRunner, plan: Plan, dry_run: bool) -> Done:
        """Keep what preflight learned in the record (a dry run keeps nothing); say it."""
        record = runner.record
        if dry_run:
            record.baseline_traffic = None
        else:
            record.commit = plan.commit
            record.previous_revision = record.previous_revision or plan.previous_revision
            runner.save()
        for warning in plan.warnings:
            runner.progress(warning)
        if plan.keep:
            serving = traffic.describe(traffic.shares(plan.keep))
        elif plan.current is None:
            serving = "nothing yet"
        else:
            serving = f"nothing: {plan.service.service} exists, and this deploy takes it over"
        return Done(
            f"{plan.ref} is {plan.commit[:12]}; {_count(len(plan.secret_env), 'secret')} pinned; "
            f"serving {serving}"
        )

    def _deploy(self, runner: StageRunner, plan: Plan) -> State:
        """The stages after preflight, in order, until one does not succeed or the deploy
        parks awaiting approval; how it ended (or that it waits)."""
        timeouts = plan.settings.timeouts
        # Every probe of the candidate quotes its answers redacted of the plan's values.
        platform = replace(self.platform, health=self.platform.health.redacting(plan.known_values))
        candidate = CandidateStages(platform, runner, plan)
        rollout = Rollout(platform, runner, plan)
        before: list[tuple[Stage, float, StageBody]] = [
            (Stage.BUILD, timeouts.build, candidate.build),
            (Stage.DEPLOY, timeouts.deploy, candidate.create),
            (Stage.READY, timeouts.ready, candidate.ready),
            (Stage.HEALTH, timeouts.health, candidate.health),
        ]
        hooks, configured = HookStages(platform, runner, plan), plan.settings.hooks
        after: list[tuple[Stage, float, StageBody]] = []
        # Right before traffic moves, after health and any approval: a deploy nobody
        # approved changes no schema.
        if configured.predeploy is not None:
            after.append((Stage.PREDEPLOY, hook_seconds(configured.predeploy), hooks.predeploy))
        after.append((Stage.PROMOTE, timeouts.promote, rollout.promote))
        after.append((Stage.VERIFY, timeouts.verify, rollout.verify))
        if configured.postdeploy is not None:
            after.append((Stage.POSTDEPLOY, hook_seconds(configured.postdeploy), hooks.postdeploy))
        rules = plan.settings.analysis
        if rules is not None and rules.watch:
            watch = Watch(platform, runner, plan, rules)
            after.append((Stage.WATCH, watch_seconds(rules, timeouts.promote), watch.watch))
        if not runner.run_in_order(before):
            return _stopped(runner.record)
        approval, record = plan.settings.approval, runner.record
        if approval is not None:
            record.approval_required = max(record.approval_required, approval.required)
        # The stricter of the config the deploy was asked under and the one it runs under:
        # asked for under approval, it never moves traffic unapproved.
        if record.approval_required:
            gate = ApprovalGate(platform, runner, plan, self.store, approval)
            if gate.waiting():
                failpoints.reached("approval.parking", record.attempt)
                record.parks += 1
                return State.AWAITING_APPROVAL
            after.insert(0, (Stage.APPROVAL, timeouts.promote, gate.decide))
        return State.SUCCEEDED if runner.run_in_order(after) else _stopped(runner.record)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _stopped(record: DeployRecord) -> State:
    """The state of a deploy that stopped: cancelled, or failed."""
    last = record.stages[-1] if record.stages else None
    return State.CANCELLED if last and last.outcome == Outcome.CANCELLED else State.FAILED
