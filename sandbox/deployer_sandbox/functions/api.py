"""`google.cloud.functions.v2.FunctionService`: 2nd-gen functions that run for real.

    GenerateUploadUrl   an upload URL (`functions.uploads`) and the storage_source to name
    CreateFunction      check (a named build account must exist in IAM: NOT_FOUND)
                        -> DEPLOYING, an operation; then, on the function's queue:
    UpdateFunction        build  the uploaded zip unpacked, pushed as an image (`functions.build`)
                          deploy UpdateService (allow_missing) of the Cloud Run service of the
                                 same id (`functions.spec`), whose revision is a
                                 functions-framework process behind the router's URL
                          -> ACTIVE, service_config.uri = url = the service's URL
                          -> FAILED, the operation's error and the function's state message
                             saying why, with the process's last lines when it did not start
    GetFunction, ListFunctions   the stored functions
    DeleteFunction      DELETING, then the Cloud Run service deleted and the function gone

Who may invoke a function is its Cloud Run service's IAM policy (`roles/run.invoker`
for `allUsers` makes it public), set through Cloud Run's SetIamPolicy, as on Google:
"run.routes.invoke. This is usually through the Cloud Run Invoker role. This permission
must be assigned on the Cloud Run service resource."
(https://cloud.google.com/functions/docs/securing/authenticating).

Operations end with INVALID_ARGUMENT (code 3) for a failed build or deploy, as gcloud
prints a failed deploy ("OperationError: code=3, message=Could not create or update Cloud
Run service ..."; the sandbox's reading of reports, no Google page states it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.cloud import functions_v2, run_v2
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2

from deployer_sandbox.cloud_run.api import CloudRun
from deployer_sandbox.cloud_run.serial import SerialQueues
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import (
    RpcError,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    service,
    unary,
)
from deployer_sandbox.functions.build import BuildFailed, build
from deployer_sandbox.functions.names import (
    FunctionName,
    check_function_id,
    list_prefix,
    parse_function,
    parse_location,
)
from deployer_sandbox.functions.requests import (
    check_function,
    merged_update,
    operation_metadata,
    run_failure,
)
from deployer_sandbox.functions.spec import service_of, with_defaults
from deployer_sandbox.functions.uploads import SourceUploads
from deployer_sandbox.resource_manager.projects import number_of

log = logging.getLogger(__name__)

# proto-plus enums: mypy reads their members as plain ints.
State: Any = functions_v2.Function.State
OperationType: Any = functions_v2.OperationType
# A deploy waits this long for Cloud Run's operation (its start-up timeout is 30 s).
_DEPLOY_TIMEOUT_S = 120.0
_OUTPUT_LINES = 20


@dataclass
class _Record:
    function: functions_v2.Function
    version: int = 0  # one per deploy: the image tag version_N, the source folder vN


def _in_progress(name: FunctionName) -> RpcError:
    # Cloud Functions' answer to a write while a deploy or delete runs.
    return failed_precondition(
        f"An operation on function {name.function} in region {name.location} in project "
        f"{name.project} is already in progress. Please try again later."
    )


def _not_found(name: FunctionName) -> RpcError:
    return not_found(
        f"Function {name.function} in region {name.location} in project {name.project} "
        "does not exist"
    )


class CloudFunctions:
    """Serves FunctionService over the sandbox's Cloud Run; `close()` stops deploys and uploads."""

    def __init__(
        self,
        operations: Operations,
        run: CloudRun,
        images: ImageStore,
        workdir: Path,
        host: str = "127.0.0.1",
        account_exists: Callable[[str], bool] | None = None,
    ) -> None:
        """`account_exists`: whether a service account email exists (IAM), for the build
        account a function names; None checks nothing."""
        workdir.mkdir(parents=True, exist_ok=True)
        self._account_exists = account_exists
        self._operations = operations
        self._run = run
        self._images = images
        self._workdir = workdir
        self.uploads = SourceUploads(host)
        self._lock = threading.Lock()
        self._functions: dict[str, _Record] = {}
        self._queues = SerialQueues("function-deploy")

    def start(self) -> None:
        self.uploads.start()

    def close(self) -> None:
        """Stop deploying and serving uploads; the functions' processes are Cloud Run's."""
        self._queues.close()
        self.uploads.close()

    def handler(self) -> grpc.GenericRpcHandler:
        op = operations_pb2.Operation
        f = functions_v2
        return service(
            "google.cloud.functions.v2.FunctionService",
            {
                "GenerateUploadUrl": unary(
                    self._upload_url, f.GenerateUploadUrlRequest, f.GenerateUploadUrlResponse
                ),
                "CreateFunction": unary(self._create, f.CreateFunctionRequest, op),
                "UpdateFunction": unary(self._update, f.UpdateFunctionRequest, op),
                "DeleteFunction": unary(self._delete, f.DeleteFunctionRequest, op),
                "GetFunction": unary(self._get, f.GetFunctionRequest, f.Function),
                "ListFunctions": unary(self._list, f.ListFunctionsRequest, f.ListFunctionsResponse),
            },
        )

    # --- reads ---------------------------------------------------------------------------

    def _upload_url(
        self, request: functions_v2.GenerateUploadUrlRequest
    ) -> functions_v2.GenerateUploadUrlResponse:
        location = parse_location(request.parent)
        ticket = self.uploads.ticket(number_of(location.project), location.location)
        return functions_v2.GenerateUploadUrlResponse(
            upload_url=ticket.url,
            storage_source=functions_v2.StorageSource(bucket=ticket.bucket, object_=ticket.object),
        )

    def _get(self, request: functions_v2.GetFunctionRequest) -> functions_v2.Function:
        name = parse_function(request.name)
        with self._lock:
            record = self._functions.get(name.name)
            if record is None:
                raise _not_found(name)
            return clone(record.function)

    def _list(
        self, request: functions_v2.ListFunctionsRequest
    ) -> functions_v2.ListFunctionsResponse:
        if request.filter:
            raise invalid("The sandbox does not serve ListFunctions filters.")
        prefix = list_prefix(request.parent)
        with self._lock:
            found = [
                clone(r.function)
                for n, r in sorted(self._functions.items())
                if n.startswith(prefix)
            ]
        # "The largest allowed page_size is 1,000" (`ListFunctionsRequest.page_size`).
        shown, token = page(
            found, request.page_size, request.page_token, default_size=1000, max_size=1000
        )
        return functions_v2.ListFunctionsResponse(functions=shown, next_page_token=token)

    # --- writes --------------------------------------------------------------------------

    def _create(self, request: functions_v2.CreateFunctionRequest) -> operations_pb2.Operation:
        location = parse_location(request.parent)
        function_id = request.function_id or request.function.name.rsplit("/", 1)[-1]
        check_function_id(function_id)
        name = FunctionName(location.project, location.location, function_id)
        number = number_of(name.project)
        function = with_defaults(request.function, name, number)
        check_function(function, self.uploads.read, self._account_exists)
        stamp = now()
        function.state = State.DEPLOYING
        function.create_time = stamp
        function.update_time = stamp
        function.service_config.service = name.service
        with self._lock:
            if name.name in self._functions:
                raise already_exists(
                    f"Function {name.function} in region {name.location} in project "
                    f"{name.project} already exists"
                )
            record = _Record(function)
            self._functions[name.name] = record
            return self._start_deploy(name, record, OperationType.CREATE_FUNCTION)

    def _idle(self, name: FunctionName) -> _Record:
        """The function's record, when no deploy or delete is running (caller holds the
        lock); NOT_FOUND, or the in-progress refusal."""
        record = self._functions.get(name.name)
        if record is None:
            raise _not_found(name)
        if record.function.state in (State.DEPLOYING, State.DELETING):
            raise _in_progress(name)
        return record

    def _update(self, request: functions_v2.UpdateFunctionRequest) -> operations_pb2.Operation:
        name = parse_function(request.function.name, "function.name")
        number = number_of(name.project)
        with self._lock:
            record = self._idle(name)
            current = record.function
        merged = merged_update(current, request.function, list(request.update_mask.paths))
        function = with_defaults(merged, name, number)
        check_function(function, self.uploads.read, self._account_exists)
        function.state = State.DEPLOYING
        function.update_time = now()
        with self._lock:
            if self._functions.get(name.name) is not record or record.function is not current:
                raise _in_progress(name)
            record.function = function
            return self._start_deploy(name, record, OperationType.UPDATE_FUNCTION)

    def _delete(self, request: functions_v2.DeleteFunctionRequest) -> operations_pb2.Operation:
        name = parse_function(request.name)
        with self._lock:
            record = self._idle(name)
            record.function.state = State.DELETING
            operation = self._operations.start(
                name.parent, operation_metadata(name, OperationType.DELETE_FUNCTION)
            )
        self._queues.submit(name.name, lambda: self._tear_down(name, record, operation))
        return self._operations.get(operation)

    def _start_deploy(
        self, name: FunctionName, record: _Record, kind: OperationType
    ) -> operations_pb2.Operation:
        """Open the operation and queue the deploy (caller holds the lock)."""
        record.version += 1
        version = record.version
        operation = self._operations.start(name.parent, operation_metadata(name, kind))
        self._queues.submit(name.name, lambda: self._deploy(name, record, version, operation))
        return self._operations.get(operation)

    # --- the deploy, on the function's queue ---------------------------------------------

    def _deploy(self, name: FunctionName, record: _Record, version: int, operation: str) -> None:
        try:
            self._build_and_run(name, record, version, operation)
        except Exception:
            log.exception("deploying function %s failed", name.name)
            self._finish_failed(name, record, operation, "Internal error encountered.")

    def _build_and_run(
        self, name: FunctionName, record: _Record, version: int, operation: str
    ) -> None:
        with self._lock:
            function = clone(record.function)
        storage = function.build_config.source.storage_source
        archive = self.uploads.read(storage.bucket, storage.object_) or b""
        repository = f"{name.location}-docker.pkg.dev/{name.project}/gcf-artifacts/{name.function}"
        folder = self._workdir / name.project / name.location / name.function / f"v{version}"
        try:
            image = build(
                archive,
                folder,
                repository,
                function.build_config.entry_point,
                dict(function.build_config.environment_variables),
            )
        except BuildFailed as error:
            return self._finish_failed(
                name,
                record,
                operation,
                f"Build failed with status: FAILURE and message: {error}.",
            )
        self._images.push(image, [f"version_{version}", "latest"])
        number = number_of(name.project)
        request = run_v2.UpdateServiceRequest(
            service=service_of(function, name, image.uri, number), allow_missing=True
        )
        try:
            run_operation = self._run.services.deploy(request)
        except RpcError as error:
            return self._finish_failed(name, record, operation, run_failure(name, error.message))
        done = self._operations.wait(run_operation.name, _DEPLOY_TIMEOUT_S)
        with self._run.state.lock:
            ran = clone(self._run.state.record(name.service).service)
        if not done.done or done.HasField("error"):
            message = done.error.message if done.done else "Deployment timed out."
            output = self._output(ran.latest_created_revision)
            if output:
                message = f"{message}\n\nContainer output (last lines):\n{output}"
            return self._finish_failed(name, record, operation, run_failure(name, message))
        with self._lock:
            stored = record.function
            stored.state = State.ACTIVE
            del stored.state_messages[:]
            stored.url = ran.uri
            stored.service_config.uri = ran.uri
            stored.service_config.service = name.service
            stored.service_config.revision = ran.latest_ready_revision.rsplit("/", 1)[-1]
            stored.build_config.build = (
                f"projects/{number}/locations/{name.location}/builds/{image.digest[7:43]}"
            )
            stored.update_time = now()
            result = clone(stored)
        self._operations.succeed(
            operation, result, metadata=operation_metadata(name, None, done=True)
        )

    def _output(self, revision: str) -> str:
        """The last lines the revision's process wrote (what Cloud Logging holds)."""
        if not revision:
            return ""
        lines = self._run.processes.logs(revision.rsplit("/", 1)[-1])
        return "\n".join(line.text for line in lines[-_OUTPUT_LINES:])

    def _finish_failed(
        self, name: FunctionName, record: _Record, operation: str, message: str
    ) -> None:
        with self._lock:
            stored = record.function
            stored.state = State.FAILED
            del stored.state_messages[:]
            stored.state_messages.append(
                functions_v2.StateMessage(
                    severity=functions_v2.StateMessage.Severity.ERROR,
                    type_="DeploymentFailed",
                    message=message,
                )
            )
            stored.update_time = now()
        self._operations.fail(
            operation,
            RpcError(grpc.StatusCode.INVALID_ARGUMENT, message),
            metadata=operation_metadata(name, None, done=True),
        )

    def _tear_down(self, name: FunctionName, record: _Record, operation: str) -> None:
        try:
            run_operation = self._run.services.remove(
                run_v2.DeleteServiceRequest(name=name.service)
            )
            self._operations.wait(run_operation.name, _DEPLOY_TIMEOUT_S)
        except RpcError as error:
            if error.code != grpc.StatusCode.NOT_FOUND:
                log.warning("deleting the service of %s: %s", name.name, error.message)
        with self._lock:
            if self._functions.get(name.name) is record:
                del self._functions[name.name]
        self._operations.succeed(
            operation, empty_pb2.Empty(), metadata=operation_metadata(name, None, done=True)
        )
