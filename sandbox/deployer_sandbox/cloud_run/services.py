"""`google.cloud.run.v2.Services`: checks a request, records the new generation, answers an LRO.

The handler does everything that can fail synchronously (names, required
fields, traffic shape, etag, revision name reuse), bumps the generation and
queues a `Change` for the reconciler; the operation ends when it is applied.
"""

from __future__ import annotations

import uuid
from typing import Any

from google.cloud import run_v2
from google.longrunning import operations_pb2

from deployer_sandbox.cloud_run.iam import ServiceIam
from deployer_sandbox.cloud_run.launcher import RevisionLauncher
from deployer_sandbox.cloud_run.masks import drifted, masked_paths, merged_spec
from deployer_sandbox.cloud_run.names import (
    INVALID_PAGE_TOKEN,
    ServiceName,
    check_revision_id,
    check_service_id,
    generated_revision_id,
    parse_location,
    parse_service,
)
from deployer_sandbox.cloud_run.reconciler import Change, Reconciler, mark_reconciling
from deployer_sandbox.cloud_run.resources import (
    SANDBOX_PRINCIPAL,
    SERVICE_OUTPUT_FIELDS,
    apply_template_defaults,
    same,
    service_spec,
    template_config,
)
from deployer_sandbox.cloud_run.revisions import new_revision
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.cloud_run.serial import SerialQueues
from deployer_sandbox.cloud_run.state import RunState, ServiceRecord
from deployer_sandbox.cloud_run.traffic import validate
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import already_exists, etag_mismatch, invalid, service, unary

_PAGE_SIZE = 100


def _checked_spec(given: run_v2.Service, method: str) -> run_v2.Service:
    """The request's spec with defaults filled in, or INVALID_ARGUMENT naming the field."""
    spec = service_spec(given)
    if not spec.template.containers:
        raise invalid(f"Violation in {method}.service.template.containers: should not be empty")
    for index, container in enumerate(spec.template.containers):
        if not container.image:
            raise invalid(
                f"Violation in {method}.service.template.containers[{index}].image: should be set"
            )
    apply_template_defaults(spec.template)
    return spec


def _with_status(spec: run_v2.Service, status: run_v2.Service) -> run_v2.Service:
    """`spec`'s owner-written fields with `status`'s output fields."""
    merged = clone(spec)
    for field in SERVICE_OUTPUT_FIELDS:
        setattr(merged, field, getattr(status, field))
    merged.name = status.name
    return merged


class ServicesServicer:
    """Serves `google.cloud.run.v2.Services` from the shared state."""

    def __init__(
        self,
        state: RunState,
        operations: Operations,
        launcher: RevisionLauncher,
        router: Router,
        faults: Faults,
        queues: SerialQueues,
    ) -> None:
        self._state = state
        self._operations = operations
        self._launcher = launcher
        self._router = router
        self._faults = faults
        self._queues = queues
        self._reconciler = Reconciler(state, launcher, router, operations)
        self._iam = ServiceIam(state, router, faults)

    def handler(self) -> Any:
        op = operations_pb2.Operation
        return service(
            "google.cloud.run.v2.Services",
            {
                "CreateService": unary(self._create, run_v2.CreateServiceRequest, op),
                "GetService": unary(self._get, run_v2.GetServiceRequest, run_v2.Service),
                "ListServices": unary(
                    self._list, run_v2.ListServicesRequest, run_v2.ListServicesResponse
                ),
                "UpdateService": unary(self._update, run_v2.UpdateServiceRequest, op),
                "DeleteService": unary(self._delete, run_v2.DeleteServiceRequest, op),
                **self._iam.methods(),
            },
        )

    # --- reads ---------------------------------------------------------------------------

    def _get(self, request: run_v2.GetServiceRequest) -> run_v2.Service:
        with self._state.lock:
            return self._shown(self._state.record(request.name).service)

    def _shown(self, stored: run_v2.Service) -> run_v2.Service:
        """A service as a read returns it: a copy, drifted while `template_drift` is armed."""
        return drifted(stored) if self._faults.armed("template_drift") else clone(stored)

    def _list(self, request: run_v2.ListServicesRequest) -> run_v2.ListServicesResponse:
        location = parse_location(request.parent)
        found, token = page(
            self._state.services_in(location.name),
            request.page_size,
            request.page_token,
            default_size=_PAGE_SIZE,
            invalid_token=INVALID_PAGE_TOKEN,
        )
        return run_v2.ListServicesResponse(
            services=[self._shown(stored) for stored in found], next_page_token=token
        )

    # --- mutations -----------------------------------------------------------------------

    def _create(self, request: run_v2.CreateServiceRequest) -> operations_pb2.Operation:
        location = parse_location(request.parent)
        check_service_id(request.service_id)
        name = ServiceName(location.project, location.location, request.service_id)
        spec = _checked_spec(request.service, "CreateServiceRequest")
        return self._create_service(name, spec, request.validate_only)

    def _create_service(
        self, name: ServiceName, spec: run_v2.Service, validate_only: bool
    ) -> operations_pb2.Operation:
        traffic = validate(name.service, spec.traffic)
        spec.traffic = traffic  # stored normalised: no traffic means LATEST 100 %
        revision_id = spec.template.revision or generated_revision_id(name.service, 1)
        if spec.template.revision:
            check_revision_id(name.service, revision_id)
        stamp = now()
        status = run_v2.Service(
            name=name.name,
            uid=str(uuid.uuid4()),
            generation=1,
            create_time=stamp,
            update_time=stamp,
            creator=SANDBOX_PRINCIPAL,
            last_modifier=SANDBOX_PRINCIPAL,
            latest_created_revision=name.revision(revision_id),
            etag=new_etag(),
        )
        with self._state.lock:
            if self._state.find(name) is not None:
                raise already_exists(f"Resource '{name.service}' already exists.")
            if validate_only:
                return self._done(name, _with_status(spec, status))
            status.uri = self._router.service_url(name.name)
            # A new service has an empty IAM policy: private, whatever an earlier namesake was.
            self._router.set_public(name.name, False)
            self._set_access(name, spec)
            status.urls.append(status.uri)
            mark_reconciling(status)
            record = ServiceRecord(name, _with_status(spec, status))
            record.revisions[revision_id] = new_revision(name, revision_id, spec.template)
            self._state.add(record)
            snapshot = clone(record.service)
        self._faults.bind_new_revision(revision_id)
        return self._enqueue(record, snapshot, revision_id, traffic)

    def _update(self, request: run_v2.UpdateServiceRequest) -> operations_pb2.Operation:
        name = parse_service(request.service.name, "service.name")
        paths = masked_paths(list(request.update_mask.paths))
        with self._state.lock:
            record = self._state.find(name)
            if record is None:
                if not request.allow_missing:
                    self._state.record(name.name)  # raises NOT_FOUND
                check_service_id(name.service)
                spec = _checked_spec(request.service, "UpdateServiceRequest")
                return self._create_service(name, spec, request.validate_only)
            current = record.service
            if request.service.etag and request.service.etag != current.etag:
                raise etag_mismatch(name.name)
            # The body's revision name is checked whatever the mask (`cloud_run.masks`).
            self._revision_for(record, request.service, named_only=True)
            given = request.service
            if paths is not None:
                given = merged_spec(service_spec(current), request.service, paths)
            spec = _checked_spec(given, "UpdateServiceRequest")
            traffic = validate(name.service, spec.traffic)
            spec.traffic = traffic
            revision_id = self._revision_for(record, spec)
            if request.validate_only:
                return self._done(name, _with_status(spec, current))
            changed = not same(spec, service_spec(current))
            if changed:
                updated = _with_status(spec, current)
                updated.generation = current.generation + 1
                updated.last_modifier = SANDBOX_PRINCIPAL
                if revision_id is not None:
                    updated.latest_created_revision = name.revision(revision_id)
                    record.revisions[revision_id] = new_revision(name, revision_id, spec.template)
                mark_reconciling(updated)
                record.service = updated
                record.touch()
                self._set_access(name, spec)
            snapshot = clone(record.service)
        if not changed:
            return self._unchanged(record)
        if revision_id is not None:
            self._faults.bind_new_revision(revision_id)
        return self._enqueue(record, snapshot, revision_id, traffic)

    def deploy(self, request: run_v2.UpdateServiceRequest) -> operations_pb2.Operation:
        """UpdateService (with `allow_missing`, create) for another sandbox API that deploys
        through Cloud Run: a 2nd-gen function is a Cloud Run service (`functions.api`)."""
        return self._update(request)

    def remove(self, request: run_v2.DeleteServiceRequest) -> operations_pb2.Operation:
        """DeleteService, for the same callers."""
        return self._delete(request)

    def _revision_for(
        self, record: ServiceRecord, spec: run_v2.Service, named_only: bool = False
    ) -> str | None:
        """Id of the revision this spec creates, None if it creates none (caller holds the lock).

        `named_only`: only refuse a name already taken by another configuration.
        """
        chosen = spec.template.revision
        if named_only and not (chosen and chosen in record.revisions):
            return None
        given = clone(spec.template)
        if named_only:
            apply_template_defaults(given)  # as the stored configuration was
        config = template_config(given)
        if chosen:
            existing = record.revisions.get(chosen)
            if existing is not None:
                if not same(existing.config, config):
                    raise already_exists(
                        f"Revision named '{chosen}' with different configuration already exists."
                    )
                return None
            check_revision_id(record.name.service, chosen)
            return str(chosen)
        if same(config, template_config(record.service.template)):
            return None
        return generated_revision_id(record.name.service, record.service.generation + 1)

    def _delete(self, request: run_v2.DeleteServiceRequest) -> operations_pb2.Operation:
        with self._state.lock:
            record = self._state.record(request.name)
            if request.etag and request.etag != record.service.etag:
                raise etag_mismatch(record.name.name)
            snapshot = clone(record.service)
            if request.validate_only:
                return self._done(record.name, snapshot)
            self._state.remove(record)
            snapshot.delete_time = now()
            revisions = list(record.revisions)
        operation = self._operations.start(record.name.parent, snapshot)

        def clean_up() -> None:
            for revision_id in revisions:
                self._launcher.stop(revision_id)
            self._router.remove(record.name.name)
            self._operations.succeed(operation, snapshot)

        # Behind whatever reconcile is running, so nothing routes to it afterwards.
        self._queues.submit(record.name.name, clean_up)
        return self._operations.get(operation)

    # --- helpers -------------------------------------------------------------------------

    def _set_access(self, name: ServiceName, spec: run_v2.Service) -> None:
        """Who the router lets in, as the service's own settings say (caller holds the lock).

        They apply at once, like the IAM policy (the custom-audiences page: "applies to
        all serving revisions, similar to IAM authorization membership").
        """
        self._router.set_access(name.name, spec.invoker_iam_disabled, list(spec.custom_audiences))

    def _enqueue(
        self,
        record: ServiceRecord,
        snapshot: run_v2.Service,
        revision_id: str | None,
        traffic: list[run_v2.TrafficTarget],
    ) -> operations_pb2.Operation:
        operation = self._operations.start(record.name.parent, snapshot)
        change = Change(
            record=record,
            generation=snapshot.generation,
            operation=operation,
            new_revision=revision_id,
            template=clone(snapshot.template),
            traffic=traffic,
        )
        self._queues.submit(record.name.name, lambda: self._reconciler.reconcile(change))
        return self._operations.get(operation)

    def _unchanged(self, record: ServiceRecord) -> operations_pb2.Operation:
        """An update that changes nothing: done once the changes queued before it are."""
        with self._state.lock:
            operation = self._operations.start(record.name.parent, clone(record.service))

        def finish() -> None:
            with self._state.lock:
                snapshot = clone(record.service)
            self._operations.succeed(operation, snapshot, metadata=snapshot)

        self._queues.submit(record.name.name, finish)
        return self._operations.get(operation)

    def _done(self, name: ServiceName, service_: run_v2.Service) -> operations_pb2.Operation:
        """A finished operation for `validate_only`: the service as it would be, nothing stored."""
        operation = self._operations.start(name.parent, service_)
        self._operations.succeed(operation, service_)
        return self._operations.get(operation)
