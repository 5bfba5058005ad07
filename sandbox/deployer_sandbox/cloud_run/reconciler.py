"""Turns one generation of a service into running revisions and routes, then ends its operation.

    Change(generation N, new revision?, traffic)
      1. start the new revision, if any            fails -> Ready false, traffic untouched
      2. resolve traffic onto ready revisions      fails -> Ready false, traffic untouched
      3. (re)start every revision that must serve, route, scale the rest to zero
      4. observed_generation = N, Ready true, operation done with the Service
    a failure leaves observed_generation, traffic and latest_ready_revision at the last
    serving generation; reconciling false, Ready false with the reason (the proto's
    comment on `Service.reconciling`)

Runs on the service's own queue (`SerialQueues`), so generations apply in order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from google.cloud import run_v2

from deployer_sandbox.cloud_run.launcher import RevisionLauncher
from deployer_sandbox.cloud_run.names import service_not_found
from deployer_sandbox.cloud_run.resources import State, condition
from deployer_sandbox.cloud_run.revisions import record_start
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.cloud_run.state import RunState, ServiceRecord
from deployer_sandbox.cloud_run.traffic import Resolution, not_ready_error, resolve
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.protos import clone
from deployer_sandbox.common.rpc import RpcError

log = logging.getLogger(__name__)

Reason = run_v2.Condition.CommonReason


@dataclass(frozen=True)
class Change:
    """One generation to reconcile, as its request left it."""

    record: ServiceRecord
    generation: int
    operation: str
    new_revision: str | None  # id of the revision this generation creates
    template: run_v2.RevisionTemplate
    traffic: list[run_v2.TrafficTarget]


def mark_reconciling(service: run_v2.Service) -> None:
    """Status of a service whose latest generation is being applied (caller holds the lock)."""
    service.reconciling = True
    service.terminal_condition = condition("Ready", State.CONDITION_RECONCILING)
    del service.conditions[:]
    service.conditions.extend(
        [
            condition("RoutesReady", State.CONDITION_RECONCILING),
            condition("ConfigurationsReady", State.CONDITION_RECONCILING),
        ]
    )


class Reconciler:
    """Applies `Change`s; every wait it makes is bounded by the revision's startup timeout."""

    def __init__(
        self,
        state: RunState,
        launcher: RevisionLauncher,
        router: Router,
        operations: Operations,
    ) -> None:
        self._state = state
        self._launcher = launcher
        self._router = router
        self._operations = operations

    def reconcile(self, change: Change) -> None:
        """Apply one generation and finish its operation, successfully or not."""
        try:
            self._apply(change)
        except RpcError as error:
            self._fail(change, error, configuration=False)
        except Exception:
            log.exception("reconciling %s failed", change.record.name.name)
            self._fail(
                change, RpcError(grpc.StatusCode.INTERNAL, "Internal error encountered."), False
            )

    def _apply(self, change: Change) -> None:
        record, name = change.record, change.record.name
        if change.new_revision is not None:
            outcome = self._launcher.launch(name, change.new_revision, change.template)
            with self._state.lock:
                revision = record.revisions.get(change.new_revision)
                if revision is not None:
                    record_start(revision, outcome)
                if outcome.ready and revision is not None:
                    record.service.latest_ready_revision = revision.revision.name
                    record.touch()
            if not outcome.ready:
                error = not_ready_error(change.new_revision, outcome.message)
                self._fail(change, error, configuration=True)
                return
        with self._state.lock:
            latest_ready = str(record.service.latest_ready_revision).rsplit("/", 1)[-1]
            resolution = resolve(change.traffic, record.revisions, latest_ready)
            templates = {rid: record.revisions[rid].revision for rid in resolution.serving()}
        backends: dict[str, str] = {}
        for revision_id, revision in templates.items():
            template = run_v2.RevisionTemplate(
                containers=list(revision.containers), revision=revision_id
            )
            started = self._launcher.ensure_running(name, revision_id, template)
            if started.url is None:
                raise not_ready_error(revision_id, started.message)
            backends[revision_id] = started.url
        if record.deleted:
            raise service_not_found(name)
        self._route(change, resolution, backends)

    def _route(self, change: Change, resolution: Resolution, backends: dict[str, str]) -> None:
        record, name = change.record, change.record.name
        self._router.update(
            name.name,
            split=[(rid, backends[rid], pct) for rid, pct in resolution.split.items() if pct > 0],
            tags={tag: (rid, backends[rid]) for tag, rid in resolution.tags.items()},
        )
        statuses = resolution.statuses(lambda tag: self._router.tag_url(name.name, tag))
        with self._state.lock:
            service = record.service
            del service.traffic_statuses[:]
            service.traffic_statuses.extend(statuses)
            self._record_reconciled(service, change.generation, None, configuration=False)
            record.touch()
            snapshot = clone(service)
            idle = [rid for rid in record.revisions if rid not in resolution.serving()]
        # Cloud Run scales revisions without traffic to zero; so does the sandbox.
        for revision_id in idle:
            self._launcher.stop(revision_id)
        self._operations.succeed(change.operation, snapshot, metadata=snapshot)

    def _fail(self, change: Change, error: RpcError, configuration: bool) -> None:
        record = change.record
        with self._state.lock:
            self._record_reconciled(record.service, change.generation, error, configuration)
            record.touch()
            snapshot = clone(record.service)
        if record.deleted:
            for revision_id in list(record.revisions):
                self._launcher.stop(revision_id)
        self._operations.fail(change.operation, error, metadata=snapshot)

    @staticmethod
    def _record_reconciled(
        service: run_v2.Service, generation: int, error: RpcError | None, configuration: bool
    ) -> None:
        # As `Service.reconciling`'s comment says: when reconciliation fails,
        # observed_generation, traffic_statuses and latest_ready_revision keep the state of
        # the last serving revision (empty for a new service); terminal_condition says why.
        if error is None:
            service.observed_generation = max(service.observed_generation, generation)
        service.reconciling = generation < service.generation
        if service.reconciling:
            return  # a newer generation is queued: the conditions will speak for it
        ok, failed = State.CONDITION_SUCCEEDED, State.CONDITION_FAILED
        if error is None:
            ready = condition("Ready", ok)
            routes, configs = condition("RoutesReady", ok), condition("ConfigurationsReady", ok)
        else:
            ready = condition("Ready", failed, error.message, reason=Reason.REVISION_FAILED)
            configs = (
                condition(
                    "ConfigurationsReady", failed, error.message, reason=Reason.REVISION_FAILED
                )
                if configuration
                else condition("ConfigurationsReady", ok)
            )
            # Traffic stays where it was: the routes are fine if they were before.
            routes = (
                condition("RoutesReady", ok)
                if configuration and service.traffic_statuses
                else condition("RoutesReady", failed, error.message)
            )
        service.terminal_condition = ready
        del service.conditions[:]
        service.conditions.extend([routes, configs])
