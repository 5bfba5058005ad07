"""Service Usage v1 in the sandbox: `google.api.serviceusage.v1.ServiceUsage` over gRPC.

Served: EnableService, DisableService, GetService, ListServices,
BatchEnableServices and BatchGetServices, per project (named by ID or number,
`resource_manager.projects`). A project starts with Google's default services
enabled (`catalog.DEFAULT_ENABLED`) and nothing else.

    EnableService / BatchEnableServices   an operation, already done, whose response
                                          holds the services' new state. Google's take up
                                          to minutes, so callers must wait on the
                                          operation (`.result()`); one that changes
                                          nothing is `operations/noop.DONE_OPERATION`, as
                                          gcloud shows it
    DisableService                        likewise; disabling what is disabled is a no-op
    unknown service                       PERMISSION_DENIED "Not found or permission
                                          denied for service(s): X." (`catalog`); a batch
                                          naming one changes nothing
    more than 20 in a batch               INVALID_ARGUMENT, nothing changes (the proto:
                                          "A single request can enable a maximum of 20
                                          services at a time. If more than 20 services are
                                          specified, the request will fail, and no state
                                          changes will occur.")
    ListServices                          every known service, or `state:ENABLED` /
                                          `state:DISABLED` ("The allowed filter strings are
                                          `state:ENABLED` and `state:DISABLED`"); pages of
                                          50 by default, at most 200 (the proto)
    names in answers                      `projects/{NUMBER}/services/{SERVICE}`, the
                                          number even when asked by ID, as Google answers

Service dependencies (enabling one service enabling those it needs, DisableService's
`disable_dependent_services`) and usage checks are not modelled.
"""

from __future__ import annotations

import re
import threading
import uuid
from typing import Any

import grpc
from google.cloud.service_usage_v1.types import resources, serviceusage
from google.longrunning import operations_pb2

from deployer_sandbox.common import rpc
from deployer_sandbox.common.operations import Operations, pack
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.rpc import invalid, permission_denied, unary
from deployer_sandbox.resource_manager.projects import Project, Projects
from deployer_sandbox.service_usage.catalog import DEFAULT_ENABLED, SERVICES, unknown_services

SERVICE = "google.api.serviceusage.v1.ServiceUsage"
NOOP_OPERATION = "operations/noop.DONE_OPERATION"
MAX_BATCH = 20
State = resources.State
_SERVICE_NAME = re.compile(r"projects/([^/]+)/services/([^/]+)")
_PARENT = re.compile(r"projects/([^/]+)")
_FILTERS = {"": None, "state:ENABLED": State.ENABLED, "state:DISABLED": State.DISABLED}


class ServiceUsage:
    """Which services each project has enabled, served over gRPC."""

    def __init__(self, projects: Projects, operations: Operations) -> None:
        self._projects = projects
        self._operations = operations
        self._lock = threading.Lock()
        self._enabled: dict[str, set[str]] = {}  # project ID -> enabled services

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.api.serviceusage.v1.ServiceUsage`."""
        su, op = serviceusage, operations_pb2.Operation
        table: list[tuple[str, Any, Any, Any]] = [
            ("EnableService", self._enable, su.EnableServiceRequest, op),
            ("DisableService", self._disable, su.DisableServiceRequest, op),
            ("GetService", self._get, su.GetServiceRequest, resources.Service),
            ("ListServices", self._list, su.ListServicesRequest, su.ListServicesResponse),
            ("BatchEnableServices", self._batch_enable, su.BatchEnableServicesRequest, op),
            (
                "BatchGetServices",
                self._batch_get,
                su.BatchGetServicesRequest,
                su.BatchGetServicesResponse,
            ),
        ]
        return rpc.service(SERVICE, {n: unary(h, req, resp) for n, h, req, resp in table})

    # --- the interface the rest of the sandbox calls -------------------------------------

    def is_enabled(self, project_id: str, service: str) -> bool:
        """Whether `service` is enabled in the project `project_id`."""
        project = self._projects.find(project_id)
        if project is None:
            return False
        with self._lock:
            return service in self._enabled_in(project)

    def enable(self, project_id: str, *services: str) -> None:
        """Enable `services` in a project, as a test seeds one."""
        project = self._project(project_id)
        with self._lock:
            self._enabled_in(project).update(services)

    # --- methods -----------------------------------------------------------------------------

    def _enable(self, request: serviceusage.EnableServiceRequest) -> operations_pb2.Operation:
        project, name = self._service_name(request.name)
        with self._lock:
            enabled = self._enabled_in(project)
            changed = name not in enabled
            enabled.add(name)
            answer = serviceusage.EnableServiceResponse(service=self._service(project, name))
        return self._done(project, [name], answer, changed)

    def _disable(self, request: serviceusage.DisableServiceRequest) -> operations_pb2.Operation:
        project, name = self._service_name(request.name)
        with self._lock:
            enabled = self._enabled_in(project)
            changed = name in enabled
            enabled.discard(name)
            answer = serviceusage.DisableServiceResponse(service=self._service(project, name))
        return self._done(project, [name], answer, changed)

    def _batch_enable(
        self, request: serviceusage.BatchEnableServicesRequest
    ) -> operations_pb2.Operation:
        project = self._parent(request.parent)
        names = list(dict.fromkeys(request.service_ids))
        if not names:
            raise invalid("service_ids must name at least one service.")
        if len(names) > MAX_BATCH:
            raise invalid(
                f"A single request can enable at most {MAX_BATCH} services; {len(names)} given."
            )
        unknown = [name for name in names if name not in SERVICES]
        if unknown:
            raise permission_denied(unknown_services(unknown))
        with self._lock:
            enabled = self._enabled_in(project)
            changed = not enabled.issuperset(names)
            enabled.update(names)
            answer = serviceusage.BatchEnableServicesResponse(
                services=[self._service(project, name) for name in names]
            )
        return self._done(project, names, answer, changed)

    def _get(self, request: serviceusage.GetServiceRequest) -> resources.Service:
        project, name = self._service_name(request.name)
        with self._lock:
            return self._service(project, name)

    def _batch_get(
        self, request: serviceusage.BatchGetServicesRequest
    ) -> serviceusage.BatchGetServicesResponse:
        parent = self._parent(request.parent)
        if len(request.names) > 30:  # the proto: "a maximum of 30 services at a time"
            raise invalid(f"A single request can get at most 30 services; {len(request.names)}.")
        found = [self._service_name(name) for name in request.names]
        if any(project != parent for project, _ in found):
            raise invalid("Every name in names must be under the parent.")
        with self._lock:
            return serviceusage.BatchGetServicesResponse(
                services=[self._service(project, name) for project, name in found]
            )

    def _list(self, request: serviceusage.ListServicesRequest) -> serviceusage.ListServicesResponse:
        project = self._parent(request.parent)
        if request.filter.strip() not in _FILTERS:
            raise invalid(
                f"Invalid filter [{request.filter}]: use state:ENABLED or state:DISABLED."
            )
        wanted = _FILTERS[request.filter.strip()]
        with self._lock:
            services = [self._service(project, name) for name in sorted(SERVICES)]
        matching = [s for s in services if wanted is None or s.state == wanted]
        found, token = page(
            matching, request.page_size, request.page_token, default_size=50, max_size=200
        )
        return serviceusage.ListServicesResponse(services=found, next_page_token=token)

    # --- helpers -----------------------------------------------------------------------------

    def _done(
        self, project: Project, names: list[str], answer: Any, changed: bool
    ) -> operations_pb2.Operation:
        """The finished operation of a change (or of a no-op)."""
        metadata = resources.OperationMetadata(
            resource_names=[f"services/{n}/projectSettings/{project.number}" for n in names]
        )
        if not changed:
            # Google answers every no-op under this one name, so it is not stored: two
            # callers at once must each get their own answer.
            return operations_pb2.Operation(
                name=NOOP_OPERATION, done=True, metadata=pack(metadata), response=pack(answer)
            )
        # The name Google gives an enable operation (gcloud: "Operation
        # "operations/acat.p2-123456789012-..." finished successfully.").
        name = f"operations/acat.p2-{project.number}-{uuid.uuid4()}"
        self._operations.start("", metadata, name=name)
        self._operations.succeed(name, answer)
        return self._operations.get(name)

    def _enabled_in(self, project: Project) -> set[str]:
        """The enabled services of `project` (callers hold the lock)."""
        return self._enabled.setdefault(project.project_id, set(DEFAULT_ENABLED))

    def _service(self, project: Project, name: str) -> resources.Service:
        """The answer about one service (callers hold the lock)."""
        enabled = name in self._enabled_in(project)
        return resources.Service(
            name=f"projects/{project.number}/services/{name}",
            parent=f"projects/{project.number}",
            config=resources.ServiceConfig(name=name, title=SERVICES[name]),
            state=State.ENABLED if enabled else State.DISABLED,
        )

    def _project(self, reference: str) -> Project:
        project = self._projects.find(reference)
        if project is None:
            # Service Usage's words, as gcloud quotes them ("... Project 'example-com' not
            # found or permission denied.", upspin/upspin#589).
            raise permission_denied(f"Project '{reference}' not found or permission denied.")
        return project

    def _parent(self, parent: str) -> Project:
        match = _PARENT.fullmatch(parent)
        if match is None:
            raise invalid(f"Invalid parent [{parent}]: expected projects/PROJECT.")
        return self._project(match[1])

    def _service_name(self, name: str) -> tuple[Project, str]:
        match = _SERVICE_NAME.fullmatch(name)
        if match is None:
            raise invalid(f"Invalid name [{name}]: expected projects/PROJECT/services/SERVICE.")
        project = self._project(match[1])
        if match[2] not in SERVICES:
            raise permission_denied(unknown_services([match[2]]))
        return project, match[2]
