"""Rollback: traffic back to a previous ready revision. No rebuild, nothing new to trust.

Stages: preflight (locks, the service, the target) -> promote (100 % to the
target) -> verify (traffic as asked, the service URL healthy and reporting the
target's commit when the deployer labelled it).
"""

from __future__ import annotations

from dataclasses import dataclass

from deployer.config import Config, ServiceConfig
from deployer.pipeline import traffic
from deployer.pipeline.events import DeployFinished, Listener
from deployer.pipeline.lease import Lease
from deployer.pipeline.ports import COMMIT_LABEL, Platform, RevisionInfo, ServiceState, TrafficShare
from deployer.pipeline.preflight import check_locks
from deployer.pipeline.probes import verify_serving
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from deployer.pipeline.restore import read_back
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner
from deployer.store.protocol import Store


def choose_target(
    requested: str | None,
    state: ServiceState,
    revisions: list[RevisionInfo],
    resumed: bool = False,
) -> RevisionInfo:
    """The revision to roll back to: the one asked for, else the newest ready one not serving.

    A `resumed` rollback may find its target serving already (the lost run moved it).
    """
    serving = {share.revision for share in state.serving()}
    if requested:
        found = next((r for r in revisions if r.name == requested), None)
        if found is None:
            raise StageFailed(f"revision {requested} not found in {state.name.rsplit('/', 1)[-1]}")
        if not found.ready:
            raise StageFailed(f"revision {requested} is not ready", found.message)
        if serving == {requested} and not resumed:
            raise StageFailed(f"{requested} already serves 100%; nothing to roll back")
        return found
    current_created = max((r.created for r in revisions if r.name in serving), default="")
    for revision in revisions:  # newest first
        if revision.ready and revision.name not in serving and revision.created < current_created:
            return revision
    raise StageFailed("no earlier ready revision to roll back to")


@dataclass
class RollbackPipeline:
    """Moves an environment's traffic to an earlier revision and verifies it."""

    config: Config
    platform: Platform
    store: Store
    listener: Listener

    def run(self, record: DeployRecord, lease: Lease | None = None) -> DeployRecord:
        """Run (or continue) the rollback; the caller holds the deploy lock (`lease`)."""
        settings = self.config.environment(record.environment)
        service = self.config.target(record.environment)
        runner = StageRunner(record, self.store, self.listener, lease=lease)
        record.state = State.RUNNING
        target = self._preflight(runner, service, settings.timeouts.preflight)
        public = settings.run.allow_unauthenticated
        timeouts = settings.timeouts
        moved = target is not None and runner.run_in_order(
            [
                (Stage.PROMOTE, timeouts.promote, lambda d: self._route(service, target, d)),
                (
                    Stage.VERIFY,
                    timeouts.verify,
                    lambda d: self._verify(runner, service, target, public, d),
                ),
            ]
        )
        record.state = State.SUCCEEDED if moved else State.FAILED
        read_back(self.platform.services, service, record)
        runner.save()
        self.listener(DeployFinished(record))
        return record

    def _preflight(
        self, runner: StageRunner, service: ServiceConfig, seconds: float
    ) -> RevisionInfo | None:
        """The preflight stage; the revision to roll back to, or None when it did not pass."""
        record = runner.record
        target: RevisionInfo | None = None

        def body(deadline: Deadline) -> Done:
            nonlocal target
            check_locks(self.store, record.environment, record.requester, record.id)
            resumed = record.baseline_traffic is not None
            services = self.platform.services
            state = services.current(service)
            if state is None:
                raise StageFailed(f"service {service.service} does not exist; nothing to roll back")
            if not resumed and not state.serving():
                # Cloud Run keeps traffic empty until a first revision serves: none ever did.
                raise StageFailed(
                    f"service {service.service} serves no revision and never has; "
                    "nothing to roll back to"
                )
            target = chosen = choose_target(
                record.target_revision, state, services.revisions(service, 50), resumed
            )
            if not resumed:
                record.baseline_traffic = traffic.to_shares(state.traffic)
                record.previous_revision = max(state.serving(), key=lambda s: s.percent).revision
            record.target_revision = chosen.name
            record.commit = chosen.labels.get(COMMIT_LABEL)
            record.image = chosen.image
            return Done(f"from {record.previous_revision} to {chosen.name}")

        passed = runner.run(Stage.PREFLIGHT, seconds, body).outcome == Outcome.SUCCEEDED
        return target if passed else None

    def _route(self, service: ServiceConfig, target: RevisionInfo, deadline: Deadline) -> Done:
        outcome = self.platform.services.route(
            service, [TrafficShare(target.name, 100)], deadline.left()
        )
        if not outcome.ok:
            raise StageFailed(f"could not move traffic to {target.name}", outcome.message)
        return Done(f"100% on {target.name}")

    def _verify(
        self,
        runner: StageRunner,
        service: ServiceConfig,
        target: RevisionInfo,
        public: bool,
        deadline: Deadline,
    ) -> Done:
        """100 % on the target, and the service URL healthy on the target's commit when the
        deployer labelled it (a revision made otherwise reports no version to check)."""
        uri = verify_serving(
            self.platform,
            service,
            target.name,
            target.labels.get(COMMIT_LABEL, ""),
            public,
            deadline,
            runner.progress,
            unhealthy=f"{target.name} unhealthy after rollback",
        )
        return Done(f"{uri} healthy on {target.name}", link=uri)
