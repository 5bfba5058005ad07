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
from deployer.pipeline.preflight import check_locks, current_service
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
        service = self.config.services[settings.service]
        runner = StageRunner(record, self.store, self.listener, lease=lease)
        record.state = State.RUNNING
        target: list[RevisionInfo] = []

        def preflight(deadline: Deadline) -> Done:
            check_locks(self.store, record.environment, record.requester, record.id)
            resumed = record.baseline_traffic is not None
            state = (
                self.platform.revisions.current(service)
                if resumed
                else current_service(self.platform.revisions, service)
            )
            if state is None:
                raise StageFailed(f"service {service.service} does not exist; nothing to roll back")
            chosen = choose_target(
                record.target_revision,
                state,
                self.platform.revisions.revisions(service, 50),
                resumed,
            )
            target.append(chosen)
            if not resumed:
                record.baseline_traffic = traffic.to_shares(state.traffic)
                record.previous_revision = max(state.serving(), key=lambda s: s.percent).revision
            record.target_revision = chosen.name
            record.commit = chosen.labels.get(COMMIT_LABEL)
            record.image = chosen.image
            return Done(f"from {record.previous_revision} to {chosen.name}")

        ok = runner.run(Stage.PREFLIGHT, settings.timeouts.preflight, preflight).outcome
        if ok == Outcome.SUCCEEDED:
            ok = runner.run(
                Stage.PROMOTE,
                settings.timeouts.promote,
                lambda d: self._route(service, target[0], d),
            ).outcome
        if ok == Outcome.SUCCEEDED:
            ok = runner.run(
                Stage.VERIFY,
                settings.timeouts.verify,
                lambda d: self._verify(
                    runner, service, target[0], settings.run.allow_unauthenticated, d
                ),
            ).outcome
        record.state = State.SUCCEEDED if ok == Outcome.SUCCEEDED else State.FAILED
        read_back(self.platform.revisions, service, record)
        runner.save()
        self.listener(DeployFinished(record))
        return record

    def _route(self, service: ServiceConfig, target: RevisionInfo, deadline: Deadline) -> Done:
        outcome = self.platform.revisions.route(
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
        state = self.platform.revisions.current(service)
        now = traffic.serving(state)
        if now != [(target.name, 100)]:
            raise StageFailed(f"traffic is {traffic.describe(now)}, expected 100% on {target.name}")
        assert state is not None
        commit = target.labels.get(COMMIT_LABEL, "")
        check = service.health.model_copy(
            update={
                "consecutive": 1,
                "version_field": service.health.version_field if commit else "",
            }
        )
        outcome = self.platform.health.check(
            state.uri + check.path,
            check,
            commit,
            deadline.left(),
            traffic.audience(public, state.uri),
            runner.progress,
        )
        if not outcome.ok:
            raise StageFailed(
                f"{target.name} unhealthy after rollback: {outcome.message}", outcome.body
            )
        return Done(f"{state.uri} healthy on {target.name}", link=state.uri)
