"""Cloud Run Admin v2 behind the pipeline's `Services` port.

    start_candidate  get -> candidate template + traffic pinned by revision -> update (etag)
    route            traffic only, under an update mask: never a template, never a revision
    wait / route     wait until Cloud Run has reconciled: not reconciling, Ready true or
                     false (a failed rollout never brings observed_generation up);
                     a failed candidate's message is its Ready condition's plus the last
                     lines its container logged (Cloud Logging, `RevisionLogs`), redacted
                     of the revision's environment values and credential shapes
    current, revisions   reads

Every write carries the etag it was read with, so a concurrent change is never
overwritten: Cloud Run answers ABORTED and the adapter reads again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from google.api_core import exceptions
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import field_mask_pb2

from deployer.adapters import cloud_run_iam
from deployer.adapters.cloud_logging import RevisionLogs
from deployer.adapters.cloud_run_operations import CloudRunOperations
from deployer.adapters.cloud_run_revisions import (
    created,
    revision_failure,
    revision_info,
    revision_spec,
)
from deployer.adapters.cloud_run_template import (
    candidate_template,
    candidate_traffic,
    describe_traffic,
    same_traffic,
    service_state,
    short_name,
    split_targets,
)
from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig
from deployer.pipeline.ports import (
    CandidateSpec,
    RevisionInfo,
    RevisionSpec,
    RolloutOutcome,
    RolloutRefused,
    ServiceState,
    TrafficShare,
)

State = run_v2.Condition.State
_TERMINAL = (State.CONDITION_SUCCEEDED, State.CONDITION_FAILED)
_CALL_TIMEOUT = 30.0
_WRITE_ATTEMPTS = 3  # the first write and two retries after an etag conflict
# Fast first polls so a failure is seen within a second of Cloud Run reporting it.
_FIRST_POLL, _MAX_POLL, _BACKOFF = 0.02, 0.5, 1.5
_TRAFFIC_ONLY = field_mask_pb2.FieldMask(paths=["traffic"])


def service_name(service: ServiceConfig) -> str:
    """The full resource name of the configured Cloud Run service."""
    return f"projects/{service.project}/locations/{service.region}/services/{service.service}"


class CloudRunServices:
    """`Services` over the Cloud Run Admin v2 API.

    `RunSettings.allow_unauthenticated` is applied by `set_public`, as gcloud's
    `--[no-]allow-unauthenticated` does: the `allUsers` binding of
    `roles/run.invoker` in the service's IAM policy.
    """

    def __init__(
        self,
        services: run_v2.ServicesClient | None = None,
        revisions: run_v2.RevisionsClient | None = None,
        logs: RevisionLogs | None = None,
    ) -> None:
        self._services = services or google_client(run_v2.ServicesClient)
        self._revisions = revisions or google_client(run_v2.RevisionsClient)
        self._logs = logs or RevisionLogs()
        self._operations = CloudRunOperations(self._services)

    # --- reads ---------------------------------------------------------------------------

    def current(self, service: ServiceConfig) -> ServiceState | None:
        """The service as Cloud Run serves it now, or None when it does not exist."""
        try:
            found = self._get(service_name(service), _CALL_TIMEOUT)
        except exceptions.NotFound:
            return None
        return service_state(found)

    def revisions(self, service: ServiceConfig, limit: int) -> list[RevisionInfo]:
        """The service's revisions, newest first (at most `limit`)."""
        try:
            pages = self._revisions.list_revisions(
                parent=service_name(service), timeout=_CALL_TIMEOUT
            )
            found: list[run_v2.Revision] = list(pages)
        except exceptions.NotFound:
            return []
        # The API does not promise an order: sort by creation time ourselves.
        found.sort(key=created, reverse=True)
        return [revision_info(revision) for revision in found[: max(0, limit)]]

    def revision_spec(self, service: ServiceConfig, revision: str) -> RevisionSpec | None:
        """What `revision` runs, read from Cloud Run; None when it has no such revision."""
        try:
            found: run_v2.Revision = self._revisions.get_revision(
                name=f"{service_name(service)}/revisions/{revision}", timeout=_CALL_TIMEOUT
            )
        except exceptions.NotFound:
            return None
        except exceptions.GoogleAPICallError as error:
            raise RolloutRefused(f"cannot read revision {revision}: {_words(error)}") from None
        return revision_spec(found)

    # --- writes --------------------------------------------------------------------------

    def start_candidate(
        self, service: ServiceConfig, spec: CandidateSpec, keep: ServiceState
    ) -> str:
        """Create the candidate revision at 0 % with its tag, traffic pinned as in `keep`; the operation name.

        Raises RolloutRefused with Cloud Run's own words when it refuses the change.
        """
        targets = candidate_traffic(keep, spec.revision, spec.tag)
        name = service_name(service)

        def change(fresh: run_v2.Service) -> run_v2.UpdateServiceRequest:
            # Started from the live template, so settings the deployer does not manage stay;
            # under the candidate's new name, so a read that differs from what was stored
            # cannot collide with an existing revision.
            fresh.template = candidate_template(fresh.template, spec)
            del fresh.traffic[:]
            fresh.traffic.extend(targets)
            return run_v2.UpdateServiceRequest(service=fresh)

        deadline = time.monotonic() + _CALL_TIMEOUT * _WRITE_ATTEMPTS
        try:
            return self._update(name, change, deadline)
        except exceptions.GoogleAPICallError as error:
            raise RolloutRefused(
                f"Cloud Run refused revision {spec.revision}: {_words(error)}"
            ) from None

    def create(self, service: ServiceConfig, spec: CandidateSpec) -> str:
        """First deploy: create the service with `spec` as its only revision; the operation name."""
        created = run_v2.Service(
            template=candidate_template(run_v2.RevisionTemplate(), spec),
            traffic=split_targets([TrafficShare(spec.revision, 100, spec.tag)]),
        )
        try:
            operation = self._services.create_service(
                parent=f"projects/{service.project}/locations/{service.region}",
                service_id=service.service,
                service=created,
                timeout=_CALL_TIMEOUT,
            )
        except exceptions.GoogleAPICallError as error:
            raise RolloutRefused(
                f"Cloud Run refused to create {service.service}: {_words(error)}"
            ) from None
        operation_name: str = operation.operation.name
        return operation_name

    def set_public(self, service: ServiceConfig, public: bool) -> bool:
        """Grant (or revoke) `roles/run.invoker` to `allUsers`; whether the policy changed.

        Other bindings stay as they are. Raises RolloutRefused (naming the missing
        permission when denied) when Cloud Run refuses to read or write the policy.
        """
        return cloud_run_iam.set_public(
            self._services, service_name(service), public, _CALL_TIMEOUT
        )

    def wait(self, service: ServiceConfig, operation: str, timeout: float) -> RolloutOutcome:
        """Wait until Cloud Run has reconciled the candidate and say how it ended."""
        return self._await_reconciled(service, operation, timeout, candidate=True)

    def route(
        self,
        service: ServiceConfig,
        split: Sequence[TrafficShare],
        timeout: float,
    ) -> RolloutOutcome:
        """Set traffic exactly to `split` (tags included) and wait until Cloud Run serves it."""
        wanted: list[TrafficShare] = list(split)
        targets = split_targets(wanted)
        name = service_name(service)
        total = sum(share.percent for share in wanted)
        if total != 100:
            # Refused here: empty traffic would mean "100 % to the latest revision" to Cloud Run.
            return RolloutOutcome(
                False,
                self._state_or_none(name),
                f"traffic {describe_traffic(wanted)} adds up to {total}%, not 100%; nothing changed",
            )
        started = time.monotonic()

        def change(fresh: run_v2.Service) -> run_v2.UpdateServiceRequest:
            # Traffic only, under a mask: a template read back can differ from the one
            # its revision was made from (Cloud Run normalises what it stores), and sent
            # back under that revision's name it is refused with 409 "Revision named …
            # with different configuration already exists" (google-cloud-python#11870,
            # #14259). Without a template, no revision can be created either.
            only = run_v2.Service(name=fresh.name, etag=fresh.etag, traffic=targets)
            return run_v2.UpdateServiceRequest(service=only, update_mask=_TRAFFIC_ONLY)

        try:
            operation = self._update(name, change, started + timeout)
        except exceptions.GoogleAPICallError as error:
            return RolloutOutcome(
                False,
                self._state_or_none(name),
                f"Cloud Run refused traffic {describe_traffic(wanted)}: {_words(error)}",
            )
        left = max(0.0, timeout - (time.monotonic() - started))
        outcome = self._await_reconciled(service, operation, left, candidate=False)
        if not outcome.ok or outcome.state is None:
            return outcome
        if not same_traffic(outcome.state.traffic, wanted):
            return RolloutOutcome(
                False,
                outcome.state,
                f"asked for {describe_traffic(wanted)}, "
                f"Cloud Run serves {describe_traffic(outcome.state.traffic)}",
            )
        return outcome

    # --- helpers -------------------------------------------------------------------------

    def _get(self, name: str, timeout: float) -> run_v2.Service:
        found: run_v2.Service = self._services.get_service(
            name=name, timeout=max(0.5, min(timeout, _CALL_TIMEOUT))
        )
        return found

    def _state_or_none(self, name: str) -> ServiceState | None:
        try:
            return service_state(self._get(name, _CALL_TIMEOUT))
        except exceptions.GoogleAPICallError:
            return None

    def _update(
        self,
        name: str,
        change: Callable[[run_v2.Service], run_v2.UpdateServiceRequest],
        deadline: float,
    ) -> str:
        """Read, `change` into a request, write it with the etag read; on a conflict read
        again. The operation name."""
        for attempt in range(_WRITE_ATTEMPTS):
            fresh = self._get(name, deadline - time.monotonic())
            # The request carries `fresh.etag`, the one just read: a concurrent write is refused.
            request = change(fresh)
            try:
                operation = self._services.update_service(
                    request=request,
                    timeout=max(0.5, min(deadline - time.monotonic(), _CALL_TIMEOUT)),
                )
            except exceptions.Aborted:
                if attempt + 1 == _WRITE_ATTEMPTS or time.monotonic() >= deadline:
                    raise
                continue
            operation_name: str = operation.operation.name
            return operation_name
        raise AssertionError("unreachable")  # pragma: no cover

    def _await_reconciled(
        self, service: ServiceConfig, operation: str, timeout: float, candidate: bool
    ) -> RolloutOutcome:
        """Poll the operation and the service until this change is reconciled, or `timeout`."""
        name = service_name(service)
        deadline = time.monotonic() + timeout
        delay = _FIRST_POLL
        target: run_v2.Service | None = None  # the service as the change left it (metadata)
        use_operation = bool(operation)
        while True:
            left = deadline - time.monotonic()
            try:
                op = self._operations.read(operation, left) if use_operation else None
                found = self._get(name, left)
            except exceptions.GoogleAPICallError as error:
                return RolloutOutcome(False, None, f"reading {name} failed: {_words(error)}")
            use_operation = op is not None
            if target is None and op is not None:
                target = _metadata(op)
            generation = target.generation if target is not None else found.generation
            failed_op = op is not None and op.done and op.HasField("error")
            if failed_op or _reconciled(found, generation):
                revision = _candidate_revision(target, found) if candidate else ""
                return self._outcome(service, found, op, revision)
            if time.monotonic() >= deadline:
                return RolloutOutcome(
                    False,
                    service_state(found),
                    f"Cloud Run had not finished after {timeout:.0f}s "
                    f"(generation {found.observed_generation} of {generation} reconciled)",
                    timed_out=True,
                )
            if op is not None and not op.done and self._operations.can_wait:
                # Cloud Run answers the moment the operation ends (the LRO `WaitOperation`,
                # REST `operations.wait`): no polling delay, no polling quota.
                self._operations.wait(operation, deadline - time.monotonic())
                continue
            time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
            delay = min(delay * _BACKOFF, _MAX_POLL)

    def _outcome(
        self,
        service: ServiceConfig,
        found: run_v2.Service,
        op: operations_pb2.Operation | None,
        revision: str,
    ) -> RolloutOutcome:
        state = service_state(found)
        op_error = op.error.message if op is not None and op.HasField("error") else ""
        ready = found.terminal_condition.state == State.CONDITION_SUCCEEDED
        if ready and not op_error:
            return RolloutOutcome(True, state)
        # Why the candidate failed is on the revision; what its container said, in its logs.
        message = (
            revision_failure(self._revisions, self._logs, service_name(service), service, revision)
            if revision
            else ""
        )
        return RolloutOutcome(
            False, state, message or found.terminal_condition.message or op_error or "not ready"
        )


def _reconciled(found: run_v2.Service, generation: int) -> bool:
    """Whether Cloud Run is done with `generation`, as `Service.reconciling`'s comment says.

    Reconciliation is over when `reconciling` is false and the Ready condition is
    true or false. It succeeded when `observed_generation` reached the generation; when
    it failed, `observed_generation` (with the traffic and latest ready revision) keeps
    the last serving generation's value and never reaches it, and the terminal
    condition carries the failure.
    """
    if found.reconciling or found.terminal_condition.state not in _TERMINAL:
        return False
    if found.generation < generation:
        return False  # the change is not visible yet
    if found.observed_generation == found.generation:
        return True
    return found.terminal_condition.state == State.CONDITION_FAILED


def _metadata(op: operations_pb2.Operation) -> run_v2.Service | None:
    """The Service a Cloud Run operation carries as metadata (its generation and template)."""
    if not op.metadata.type_url.endswith("google.cloud.run.v2.Service"):
        return None
    service: run_v2.Service = run_v2.Service.deserialize(op.metadata.value)
    return service


def _candidate_revision(target: run_v2.Service | None, found: run_v2.Service) -> str:
    """The revision the awaited change created: named in its template, else the latest created."""
    if target is not None and target.template.revision:
        return str(target.template.revision)
    return short_name(found.latest_created_revision)


def _words(error: exceptions.GoogleAPICallError) -> str:
    return f"{type(error).__name__}: {error.message}"
