"""`google.cloud.run.v2.Revisions`, and the revision records a service's changes create.

A revision is immutable configuration plus status: created RECONCILING when a
generation of its service asks for it, then Ready (its process listens) or
failed with the container's own last words. Only retired revisions - no
traffic, no tag, not the latest - can be deleted.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.cloud import run_v2
from google.longrunning import operations_pb2

from deployer_sandbox.cloud_run.launcher import Outcome, RevisionLauncher
from deployer_sandbox.cloud_run.names import INVALID_PAGE_TOKEN, ServiceName, log_uri, parse_service
from deployer_sandbox.cloud_run.resources import (
    SANDBOX_PRINCIPAL,
    State,
    condition,
    template_config,
)
from deployer_sandbox.cloud_run.serial import SerialQueues
from deployer_sandbox.cloud_run.state import RevisionRecord, RunState, ServiceRecord
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import etag_mismatch, failed_precondition, service, unary

_PAGE_SIZE = 100


def new_revision(
    name: ServiceName, revision_id: str, template: run_v2.RevisionTemplate
) -> RevisionRecord:
    """A revision record, starting, made from `template`."""
    stamp = now()
    revision = run_v2.Revision(
        name=name.revision(revision_id),
        uid=str(uuid.uuid4()),
        generation=1,
        labels=dict(template.labels),
        annotations=dict(template.annotations),
        create_time=stamp,
        update_time=stamp,
        service=name.name,
        scaling=template.scaling,
        vpc_access=template.vpc_access,
        max_instance_request_concurrency=template.max_instance_request_concurrency,
        timeout=template.timeout,
        service_account=template.service_account,
        containers=list(template.containers),
        volumes=list(template.volumes),
        execution_environment=template.execution_environment,
        encryption_key=template.encryption_key,
        session_affinity=template.session_affinity,
        reconciling=True,
        conditions=[
            condition("Ready", State.CONDITION_RECONCILING),
            condition("ResourcesAvailable", State.CONDITION_RECONCILING),
            condition("ContainerHealthy", State.CONDITION_RECONCILING),
        ],
        observed_generation=1,
        log_uri=log_uri(name, revision_id),
        creator=SANDBOX_PRINCIPAL,
        etag=new_etag(),
    )
    return RevisionRecord(revision, template_config(template))


def record_start(record: RevisionRecord, outcome: Outcome) -> None:
    """Record how starting the revision ended (caller holds the state lock)."""
    revision = record.revision
    if outcome.ready:
        conditions = [
            condition("Ready", State.CONDITION_SUCCEEDED),
            condition("ResourcesAvailable", State.CONDITION_SUCCEEDED),
            condition("ContainerHealthy", State.CONDITION_SUCCEEDED),
        ]
    else:
        failed = condition(
            "Ready",
            State.CONDITION_FAILED,
            outcome.message,
            reason=outcome.reason,
            revision_reason=outcome.revision_reason,
        )
        # A missing image or secret is a resource problem; anything else, the container's.
        resources_failed = outcome.reason is not None
        conditions = [
            failed,
            condition(
                "ResourcesAvailable",
                State.CONDITION_FAILED if resources_failed else State.CONDITION_SUCCEEDED,
                outcome.message if resources_failed else "",
                reason=outcome.reason,
            ),
            condition(
                "ContainerHealthy",
                State.CONDITION_PENDING if resources_failed else State.CONDITION_FAILED,
                "" if resources_failed else outcome.message,
                revision_reason=outcome.revision_reason,
            ),
        ]
    del revision.conditions[:]
    revision.conditions.extend(conditions)
    revision.reconciling = False
    revision.update_time = now()
    revision.etag = new_etag()


def is_retired(record: ServiceRecord, revision_id: str) -> bool:
    """Whether nothing routes to the revision and it is not the service's latest."""
    svc = record.service
    full = record.name.revision(revision_id)
    if full in (svc.latest_created_revision, svc.latest_ready_revision):
        return False
    return not any(
        status.revision == revision_id and (status.percent > 0 or status.tag)
        for status in svc.traffic_statuses
    )


class RevisionsServicer:
    """Serves `google.cloud.run.v2.Revisions` from the shared state."""

    def __init__(
        self,
        state: RunState,
        operations: Operations,
        launcher: RevisionLauncher,
        queues: SerialQueues,
    ) -> None:
        self._state = state
        self._operations = operations
        self._launcher = launcher
        self._queues = queues

    def handler(self) -> Any:
        return service(
            "google.cloud.run.v2.Revisions",
            {
                "GetRevision": unary(self._get, run_v2.GetRevisionRequest, run_v2.Revision),
                "ListRevisions": unary(
                    self._list, run_v2.ListRevisionsRequest, run_v2.ListRevisionsResponse
                ),
                "DeleteRevision": unary(
                    self._delete, run_v2.DeleteRevisionRequest, operations_pb2.Operation
                ),
            },
        )

    def _get(self, request: run_v2.GetRevisionRequest) -> run_v2.Revision:
        with self._state.lock:
            _, record = self._state.revision_record(request.name)
            return clone(record.revision)

    def _list(self, request: run_v2.ListRevisionsRequest) -> run_v2.ListRevisionsResponse:
        parse_service(request.parent, "parent")
        with self._state.lock:
            owner = self._state.record(request.parent, "parent")
            # Newest first, as Cloud Run lists them.
            revisions = [clone(r.revision) for r in reversed(owner.revisions.values())]
        found, token = page(
            revisions,
            request.page_size,
            request.page_token,
            default_size=_PAGE_SIZE,
            invalid_token=INVALID_PAGE_TOKEN,
        )
        return run_v2.ListRevisionsResponse(revisions=found, next_page_token=token)

    def _delete(self, request: run_v2.DeleteRevisionRequest) -> operations_pb2.Operation:
        with self._state.lock:
            owner, record = self._state.revision_record(request.name)
            if request.etag and request.etag != record.revision.etag:
                raise etag_mismatch(request.name)
            if not is_retired(owner, record.id):
                raise failed_precondition(
                    f"Revision '{record.id}' cannot be deleted: it is receiving traffic, holds a "
                    "traffic tag or is the service's latest revision. Only retired revisions can "
                    "be deleted; route its traffic elsewhere first."
                )
            snapshot = clone(record.revision)
            if not request.validate_only:
                del owner.revisions[record.id]
                snapshot.delete_time = now()
        operation = self._operations.start(owner.name.parent, snapshot)
        if request.validate_only:
            self._operations.succeed(operation, snapshot)
        else:

            def stop() -> None:
                self._launcher.stop(record.id)
                self._operations.succeed(operation, snapshot)

            # Behind any reconcile of the service still using the process.
            self._queues.submit(owner.name.name, stop)
        return self._operations.get(operation)
