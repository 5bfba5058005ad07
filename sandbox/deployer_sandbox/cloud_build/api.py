"""Cloud Build v1 (`google.devtools.cloudbuild.v1.CloudBuild`): builds and 2nd-gen triggers.

CreateBuild checks the request, applies the substitutions and answers an
operation (metadata.build: id, name, log_url, QUEUED); a `BuildRunner` thread
runs the build, and the operation ends with the final Build, or with an error
status when the build did not succeed. RunBuildTrigger makes the trigger's build
at a commit, which then goes the same way.

Methods: CreateBuild, GetBuild, ListBuilds, CancelBuild; CreateBuildTrigger,
GetBuildTrigger, ListBuildTriggers, DeleteBuildTrigger, RunBuildTrigger. Names
are `projects/P/locations/L/builds/ID`; builds created with `project_id` only
live in location `global`, as on the real API. Sources: `git_source` (see
`cloud_build.sources`), `connected_repository` (a 2nd-gen repository of
RepositoryManager, in the build's location) and `storage_source` (an archive in the
sandbox's Cloud Storage, `cloud_build.storage_sources`); other source kinds answer
UNIMPLEMENTED. Every other method of the service answers UNIMPLEMENTED.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.cloud.devtools import cloudbuild_v1 as cb
from google.longrunning import operations_pb2

from deployer_sandbox.cloud_build.repositories import Repositories
from deployer_sandbox.cloud_build.repository_store import ServedRepository
from deployer_sandbox.cloud_build.requests import (
    build_filter,
    build_name,
    check_build,
    check_connected_repository,
    parse_parent,
)
from deployer_sandbox.cloud_build.runner import BuildLogLine, BuildRunner
from deployer_sandbox.cloud_build.sources import TreeStore
from deployer_sandbox.cloud_build.status import (
    CANCELLED,
    DEFAULT_TIMEOUT_S,
    FAILURE,
    INTERNAL_ERROR,
    QUEUED,
    SUCCESS,
    TERMINAL,
    TIMEOUT,
)
from deployer_sandbox.cloud_build.storage_sources import ReadObject
from deployer_sandbox.cloud_build.substitutions import apply_substitutions
from deployer_sandbox.cloud_build.triggers import BuildTriggers
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import (
    RpcError,
    failed_precondition,
    not_found,
    service,
    unary,
)

_OPERATION_ERRORS = {
    FAILURE: (grpc.StatusCode.UNKNOWN, "Build failed; check build logs for details"),
    TIMEOUT: (grpc.StatusCode.UNKNOWN, "Build timed out; check build logs for details"),
    CANCELLED: (grpc.StatusCode.CANCELLED, "Build was cancelled"),
    INTERNAL_ERROR: (grpc.StatusCode.INTERNAL, "Build failed with an internal error"),
}


@dataclass
class _Record:
    build: cb.Build
    operation: str
    runner: BuildRunner | None = None


def _log_url(project: str, location: str, build_id: str) -> str:
    region = "" if location == "global" else f";region={location}"
    return (
        f"https://console.cloud.google.com/cloud-build/builds{region}/{build_id}?project={project}"
    )


class CloudBuild:
    """The Cloud Build v1 servicer and the builds it runs."""

    def __init__(
        self,
        operations: Operations,
        images: ImageStore,
        faults: Faults,
        workdir: Path,
        repositories: Repositories | None = None,
        read_object: ReadObject | None = None,
    ) -> None:
        """`read_object`: Cloud Storage's objects, for `storage_source` builds."""
        self._operations = operations
        self._read_object = read_object
        self._images = images
        self._faults = faults
        self._repositories = repositories
        private = (repositories.git_server.url,) if repositories is not None else ()
        self._trees = TreeStore(workdir, private_origins=private)
        self.triggers = BuildTriggers(repositories, self.submit)
        self._lock = threading.Lock()
        self._records: dict[str, _Record] = {}  # by build name, in creation order
        self._closed = False

    def logs(self, build_id: str) -> list[str]:
        """The log lines of a build (any location), or [] when unknown."""
        with self._lock:
            runners = [r.runner for r in self._records.values() if r.build.id == build_id]
        return runners[0].log_lines() if runners and runners[0] else []

    def project_logs(self, project: str) -> list[tuple[str, list[BuildLogLine]]]:
        """(build id, its log lines) for each build of `project`, any location, oldest first."""
        with self._lock:
            runners = [
                (r.build.id, r.runner)
                for r in self._records.values()
                if r.build.project_id == project and r.runner is not None
            ]
        return [(build_id, runner.log_entries()) for build_id, runner in runners]

    def close(self) -> None:
        """Cancel running builds and wait (bounded) for their threads to end."""
        with self._lock:
            self._closed = True
            runners = [r.runner for r in self._records.values() if r.runner is not None]
        for runner in runners:
            runner.cancel()
        deadline = time.monotonic() + 5.0
        for runner in runners:
            runner.join(max(0.0, deadline - time.monotonic()))

    # --- locating builds ----------------------------------------------------------------

    def _find(self, name: str, project_id: str, build_id: str) -> _Record:
        name = build_name(name, project_id, build_id)
        with self._lock:
            record = self._records.get(name)
        if record is None:
            raise not_found("Requested entity was not found.")
        return record

    # --- builds -------------------------------------------------------------------------

    def _publish(self, name: str, build: cb.Build) -> None:
        """Store a runner's snapshot and mirror it into the build's operation."""
        with self._lock:
            record = self._records[name]
            record.build = build
        metadata = cb.BuildOperationMetadata(build=build)
        if build.status == SUCCESS:
            self._operations.succeed(record.operation, build, metadata)
        elif build.status in TERMINAL:
            code, message = _OPERATION_ERRORS[build.status]
            self._operations.fail(record.operation, RpcError(code, message), metadata)
        else:
            self._operations.set_metadata(record.operation, metadata)

    def _create(self, request: cb.CreateBuildRequest) -> operations_pb2.Operation:
        project, location = parse_parent(request.parent, request.project_id)
        return self.submit(project, location, clone(request.build))

    def _locate(self, name: str) -> ServedRepository:
        if self._repositories is None:
            raise failed_precondition("This sandbox serves no 2nd-gen repositories.")
        return self._repositories.served(name)

    def submit(
        self,
        project: str,
        location: str,
        build: cb.Build,
        builtins: dict[str, str] | None = None,
    ) -> operations_pb2.Operation:
        """Validate and start `build` (owned by the caller no more) in `location`; answer
        CreateBuild's operation. `builtins`: the values of a triggered build's built-in
        substitutions, which the build's own `substitutions` override."""
        check_build(build)
        check_connected_repository(build, project, location, self._repositories)
        for key, value in (builtins or {}).items():
            build.substitutions.setdefault(key, value)
        build.id = str(uuid.uuid4())
        build.name = f"projects/{project}/locations/{location}/builds/{build.id}"
        build.project_id = project
        build.status = QUEUED
        build.create_time = now()
        build.log_url = _log_url(project, location, build.id)
        if not cb.Build.pb(build).HasField("timeout"):
            cb.Build.pb(build).timeout.seconds = DEFAULT_TIMEOUT_S
        cb.Build.pb(build).queue_ttl.seconds = cb.Build.pb(build).queue_ttl.seconds or 3600
        apply_substitutions(build, project, location)
        for step in build.steps:
            step.status = QUEUED
        with self._lock:
            if self._closed:
                raise RpcError(grpc.StatusCode.UNAVAILABLE, "The sandbox is shutting down.")
            operation = self._operations.start(
                f"projects/{project}/locations/{location}",
                cb.BuildOperationMetadata(build=build),
                on_cancel=lambda: self._cancel_quietly(build.name),
            )
            record = _Record(clone(build), operation)
            record.runner = BuildRunner(
                build,
                images=self._images,
                trees=self._trees,
                faults=self._faults,
                publish=lambda snapshot: self._publish(build.name, snapshot),
                locate=self._locate,
                read_object=self._read_object,
            )
            self._records[build.name] = record
        # The answer shows the build as created (QUEUED), whatever the runner does next.
        response = self._operations.get(operation)
        record.runner.start()
        return response

    def _cancel_record(self, name: str) -> cb.Build:
        with self._lock:
            record = self._records[name]
        if record.build.status in TERMINAL:
            status = cb.Build.Status(record.build.status).name
            raise failed_precondition(f"Build {record.build.id} is already finished ({status}).")
        if record.runner is not None:
            record.runner.cancel()
            record.runner.done.wait(5.0)
        with self._lock:
            return clone(record.build)

    def _cancel_quietly(self, name: str) -> None:
        """CancelOperation's hook: a build that already ended just stays as it is."""
        with contextlib.suppress(RpcError):
            self._cancel_record(name)

    def _get(self, request: cb.GetBuildRequest) -> cb.Build:
        record = self._find(request.name, request.project_id, request.id)
        with self._lock:
            return clone(record.build)

    def _cancel(self, request: cb.CancelBuildRequest) -> cb.Build:
        return self._cancel_record(
            self._find(request.name, request.project_id, request.id).build.name
        )

    def _list(self, request: cb.ListBuildsRequest) -> cb.ListBuildsResponse:
        project, location = parse_parent(request.parent, request.project_id)
        keep = build_filter(request.filter)
        prefix = f"projects/{project}/locations/{location}/builds/"
        with self._lock:
            builds = [clone(r.build) for n, r in self._records.items() if n.startswith(prefix)]
        builds = [b for b in reversed(builds) if keep(b)]  # newest first, as the API sorts
        found, following = page(
            builds,
            request.page_size,
            request.page_token,
            default_size=50,
            invalid_token="invalid page token {token!r}",
        )
        return cb.ListBuildsResponse(builds=found, next_page_token=following)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler serving `google.devtools.cloudbuild.v1.CloudBuild`."""
        return service(
            "google.devtools.cloudbuild.v1.CloudBuild",
            {
                "CreateBuild": unary(self._create, cb.CreateBuildRequest, operations_pb2.Operation),
                "GetBuild": unary(self._get, cb.GetBuildRequest, cb.Build),
                "ListBuilds": unary(self._list, cb.ListBuildsRequest, cb.ListBuildsResponse),
                "CancelBuild": unary(self._cancel, cb.CancelBuildRequest, cb.Build),
                **self.triggers.methods(),
            },
        )
