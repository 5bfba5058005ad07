"""Cloud Run Admin v2 `Jobs` and `Executions` services: the jobs, and the executions they ran.

Jobs.RunJob starts an execution, JOB-xxxxx (the operation's metadata and result),
whose tasks run as local processes; Executions serves Get, List (newest first),
Cancel and Delete.

Names and their errors are in `cloud_run.job_names`. Create, update and delete
finish at once; their operations are already done when answered. An armed
`run_job_unavailable` fault answers the next RunJob calls UNAVAILABLE before
anything is looked at. Jobs also serve GetIamPolicy, SetIamPolicy and
TestIamPermissions (`cloud_run.job_iam`); a job's policy goes with the job.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from google.cloud import run_v2
from google.longrunning.operations_pb2 import Operation as _Operation
from google.protobuf import duration_pb2

from deployer_sandbox.cloud_run.execution_record import Execution, TaskLogLine, new_execution
from deployer_sandbox.cloud_run.executions import CompletionStatus, ExecutionRunner, State
from deployer_sandbox.cloud_run.job_iam import JobIam
from deployer_sandbox.cloud_run.job_names import (
    check_execution_name,
    check_job_id,
    check_parent,
    is_job_name,
    location_of,
    missing,
    parse_job,
)
from deployer_sandbox.cloud_run.names import INVALID_PAGE_TOKEN
from deployer_sandbox.cloud_run.resources import condition
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.images import ImageStore
from deployer_sandbox.common.netns import ContainerNetwork
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, new_etag, now
from deployer_sandbox.common.rpc import (
    RpcError,
    already_exists,
    etag_mismatch,
    failed_precondition,
    invalid,
    service,
    unary,
)
from deployer_sandbox.secret_manager.api import SecretManager

_DEFAULT_RETRIES = 3
_DEFAULT_TIMEOUT = duration_pb2.Duration(seconds=600)
_CLOSE_WAIT = 5.0


class RunJobs:
    """`google.cloud.run.v2.Jobs` and `.Executions`, backed by local processes. Thread-safe."""

    def __init__(
        self,
        operations: Operations,
        images: ImageStore,
        secrets: SecretManager,
        workdir: Path,
        faults: Faults,
        platform_env: Mapping[str, str] | None = None,
        network: ContainerNetwork | None = None,
    ) -> None:
        """`platform_env`: what every task finds in its environment from the platform, over
        anything its container declares (the metadata server's address); `network`: how
        tasks are networked (default: a namespace each, where that works)."""
        self._operations = operations
        # Kept, not copied: the sandbox fills in its addresses once its ports are bound.
        self._platform_env: Mapping[str, str] = platform_env if platform_env is not None else {}
        self._images = images
        self._faults = faults
        self._logs = workdir / "executions"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, run_v2.Job] = {}
        self._executions: dict[str, Execution] = {}
        self._closed = False
        self._runner = ExecutionRunner(
            self._lock,
            operations,
            secrets,
            self._record_outcome,
            network=network,
            layers=workdir / "layers",
        )
        self._iam = JobIam(self._lock, self._job, faults)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        """The gRPC services for jobs and executions."""
        r = run_v2
        return [
            service(
                "google.cloud.run.v2.Jobs",
                {
                    "CreateJob": unary(self._create_job, r.CreateJobRequest, _Operation),
                    "GetJob": unary(self._get_job, r.GetJobRequest, r.Job),
                    "ListJobs": unary(self._list_jobs, r.ListJobsRequest, r.ListJobsResponse),
                    "UpdateJob": unary(self._update_job, r.UpdateJobRequest, _Operation),
                    "DeleteJob": unary(self._delete_job, r.DeleteJobRequest, _Operation),
                    "RunJob": unary(self._run_job, r.RunJobRequest, _Operation),
                    **self._iam.methods(),
                },
            ),
            service(
                "google.cloud.run.v2.Executions",
                {
                    "GetExecution": unary(self._get_execution, r.GetExecutionRequest, r.Execution),
                    "ListExecutions": unary(
                        self._list_executions, r.ListExecutionsRequest, r.ListExecutionsResponse
                    ),
                    "CancelExecution": unary(
                        self._cancel_execution, r.CancelExecutionRequest, _Operation
                    ),
                    "DeleteExecution": unary(
                        self._delete_execution, r.DeleteExecutionRequest, _Operation
                    ),
                },
            ),
        ]

    def close(self) -> None:
        """Cancel every running execution and kill its processes. Idempotent."""
        with self._lock:
            self._closed = True
            running = [e for e in self._executions.values() if not e.done.is_set()]
        for execution in running:
            execution.cancel.set()
        for execution in running:
            execution.done.wait(_CLOSE_WAIT)

    def project_logs(self, project: str) -> list[tuple[str, str, list[TaskLogLine]]]:
        """(job's full name, execution id, its lines) of every execution in `project`
        (what the sandbox's Cloud Logging serves as `cloud_run_job` entries)."""
        prefix = f"projects/{project}/locations/"
        with self._lock:
            return [
                (name.rsplit("/executions/", 1)[0], name.rsplit("/", 1)[1], list(e.lines))
                for name, e in self._executions.items()
                if name.startswith(prefix)
            ]

    # --- jobs ------------------------------------------------------------------------

    def _create_job(self, request: run_v2.CreateJobRequest) -> Any:
        check_parent(request.parent)
        check_job_id(request.job_id)
        name = f"{request.parent}/jobs/{request.job_id}"
        job = self._new_job(name, request.job)
        with self._lock:
            if name in self._jobs:
                raise already_exists(f"Resource '{request.job_id}' already exists.")
            if not request.validate_only:
                self._jobs[name] = job
        return self._finished(request.parent, job)

    def _get_job(self, request: run_v2.GetJobRequest) -> run_v2.Job:
        with self._lock:
            return clone(self._job(request.name))

    def _list_jobs(self, request: run_v2.ListJobsRequest) -> run_v2.ListJobsResponse:
        check_parent(request.parent)
        with self._lock:
            jobs = [clone(j) for n, j in sorted(self._jobs.items()) if is_job_name(n)]
        jobs = [j for j in jobs if j.name.startswith(request.parent + "/jobs/")]
        found, token = page(
            jobs,
            request.page_size,
            request.page_token,
            default_size=None,  # every one left
            invalid_token=INVALID_PAGE_TOKEN,
        )
        return run_v2.ListJobsResponse(jobs=found, next_page_token=token)

    def _update_job(self, request: run_v2.UpdateJobRequest) -> Any:
        parent, job_id = parse_job(request.job.name)
        with self._lock:
            current = self._jobs.get(request.job.name)
            if current is None:
                if not request.allow_missing:
                    raise missing(request.job.name, "JOB")
                check_job_id(job_id)
                job = self._new_job(request.job.name, request.job)
            else:
                if request.job.etag and request.job.etag != current.etag:
                    raise etag_mismatch(request.job.name)
                job = self._new_job(request.job.name, request.job)
                for kept in ("uid", "create_time", "execution_count", "latest_created_execution"):
                    setattr(job, kept, getattr(current, kept))
                job.generation = job.observed_generation = current.generation + 1
            if not request.validate_only:
                self._jobs[request.job.name] = job
        return self._finished(parent, job)

    def _delete_job(self, request: run_v2.DeleteJobRequest) -> Any:
        parent, _ = parse_job(request.name)
        with self._lock:
            job = self._job(request.name)
            if request.etag and request.etag != job.etag:
                raise etag_mismatch(request.name)
            if request.validate_only:
                return self._finished(parent, clone(job))
            del self._jobs[request.name]
            self._iam.forget(request.name)
            executions = [
                e for n, e in self._executions.items() if n.startswith(request.name + "/")
            ]
            for execution in executions:
                del self._executions[execution.message.name]
                execution.cancel.set()
        job.delete_time = now()
        return self._finished(parent, job)

    def _new_job(self, name: str, source: run_v2.Job) -> run_v2.Job:
        job = clone(source)
        if not job.template.template.containers:
            raise invalid("Job template must contain at least one container (template.containers).")
        job.name = name
        job.uid = str(uuid.uuid4())
        job.generation = job.observed_generation = 1
        job.create_time = job.update_time = now()
        job.etag = new_etag()
        job.reconciling = False
        job.terminal_condition = condition("Ready", State.CONDITION_SUCCEEDED)
        job.launch_stage = job.launch_stage or 4  # GA
        # The API fills the documented defaults into what it returns.
        job.template.task_count = job.template.task_count or 1
        tasks = run_v2.TaskTemplate.pb(job.template.template)
        if not tasks.HasField("max_retries"):
            job.template.template.max_retries = _DEFAULT_RETRIES
        if not tasks.HasField("timeout"):
            job.template.template.timeout = _DEFAULT_TIMEOUT
        return job

    def _job(self, name: str) -> run_v2.Job:
        parse_job(name)
        job = self._jobs.get(name)
        if job is None:
            raise missing(name, "JOB")
        return job

    def _finished(self, parent: str, result: Any) -> Any:
        name = self._operations.start(parent, result)
        self._operations.succeed(name, result)
        return self._operations.get(name)

    # --- running ---------------------------------------------------------------------

    def _run_job(self, request: run_v2.RunJobRequest) -> Any:
        if self._faults.take("run_job_unavailable") is not None:
            # google/rpc/code.proto, UNAVAILABLE: "The service is currently
            # unavailable. This is most likely a transient condition, which can be
            # corrected by retrying with a backoff." Nothing is started.
            raise RpcError(grpc.StatusCode.UNAVAILABLE, "The service is currently unavailable.")
        parent, _ = parse_job(request.name)
        with self._lock:
            if self._closed:
                raise failed_precondition("The sandbox is shutting down.")
            job = self._job(request.name)
            if request.etag and request.etag != job.etag:
                raise etag_mismatch(request.name)
            execution = new_execution(
                job, request.overrides, self._images, self._logs, self._platform_env
            )
            if request.validate_only:
                return self._finished(parent, execution.message)
            self._executions[execution.message.name] = execution
            job.execution_count += 1
            job.latest_created_execution = run_v2.ExecutionReference(
                name=execution.message.name,
                create_time=execution.message.create_time,
                completion_status=run_v2.ExecutionReference.CompletionStatus.EXECUTION_RUNNING,
            )
            snapshot = clone(execution.message)
        execution.operation = self._operations.start(
            parent, snapshot, on_cancel=execution.cancel.set
        )
        self._runner.start(execution)
        return self._operations.get(execution.operation)

    def run(self, request: run_v2.RunJobRequest) -> str:
        """RunJob for callers inside the sandbox (Cloud Scheduler's `jobs/J:run` targets):
        the name of the execution started; RpcError as RunJob would answer."""
        operation = self._run_job(request)
        return str(run_v2.Execution.deserialize(operation.metadata.value).name)

    def _record_outcome(self, execution: run_v2.Execution, outcome: CompletionStatus) -> None:
        """Show how an execution ended on its job, if it is still its latest (lock held)."""
        job = self._jobs.get(execution.name.rsplit("/executions/", 1)[0])
        latest = job.latest_created_execution if job is not None else None
        if latest is not None and latest.name == execution.name:
            latest.completion_time = execution.completion_time
            latest.completion_status = outcome

    # --- executions ------------------------------------------------------------------

    def _execution(self, name: str) -> Execution:
        check_execution_name(name)
        execution = self._executions.get(name)
        if execution is None:
            raise missing(name, "EXECUTION")
        return execution

    def _get_execution(self, request: run_v2.GetExecutionRequest) -> run_v2.Execution:
        with self._lock:
            return clone(self._execution(request.name).message)

    def _list_executions(self, request: run_v2.ListExecutionsRequest) -> Any:
        with self._lock:
            if not request.parent.endswith("/jobs/-"):
                self._job(request.parent)
            prefix = request.parent.removesuffix("-")
            # Newest first, as the API lists them.
            found = [
                clone(e.message)
                for n, e in reversed(self._executions.items())
                if n.startswith(prefix)
                and (prefix.endswith("/jobs/") or n.startswith(prefix + "/"))
            ]
        listed, token = page(
            found,
            request.page_size,
            request.page_token,
            default_size=None,  # every one left
            invalid_token=INVALID_PAGE_TOKEN,
        )
        return run_v2.ListExecutionsResponse(executions=listed, next_page_token=token)

    def _cancel_execution(self, request: run_v2.CancelExecutionRequest) -> Any:
        with self._lock:
            execution = self._execution(request.name)
            if execution.done.is_set():
                raise failed_precondition(
                    f"Execution '{request.name.rsplit('/', 1)[1]}' has already completed."
                )
            snapshot = clone(execution.message)
        parent = location_of(request.name)
        if request.validate_only:
            return self._finished(parent, snapshot)
        operation = self._operations.start(parent, snapshot)
        execution.cancel.set()
        self._after(execution, lambda done: self._operations.succeed(operation, done, done))
        return self._operations.get(operation)

    def _delete_execution(self, request: run_v2.DeleteExecutionRequest) -> Any:
        with self._lock:
            execution = self._execution(request.name)
            if request.validate_only:
                return self._finished(location_of(request.name), clone(execution.message))
            del self._executions[request.name]
            execution.cancel.set()
            snapshot = clone(execution.message)
        snapshot.delete_time = now()
        return self._finished(location_of(request.name), snapshot)

    def _after(self, execution: Execution, then: Callable[[run_v2.Execution], None]) -> None:
        """Call `then` with the final execution once it ended (bounded wait, own thread)."""

        def wait() -> None:
            execution.done.wait(_CLOSE_WAIT)
            with self._lock:
                snapshot = clone(execution.message)
            then(snapshot)

        threading.Thread(target=wait, daemon=True).start()
