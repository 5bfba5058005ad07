"""Cloud Run Admin v2 jobs and executions: an execution runs its tasks as local processes.

    Jobs.RunJob -> Execution JOB-xxxxx (operation metadata and result)
        └── tasks 0..task_count-1, `parallelism` at a time, each retried up to
            `max_retries` times and killed after `timeout`; stdout and stderr of
            every task go to one log file, `log_uri`.

A task runs the template's first container. When its image is in the
sandbox's registry it runs like a revision (the image's CMD in its context); an
image that was never pushed runs `command` + `args` as a local command with the
sandbox's PATH, which is how the deployer's own `deployer worker` job runs here.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.cloud import run_v2
from google.longrunning.operations_pb2 import Operation as _Operation
from google.protobuf import duration_pb2, timestamp_pb2

from deployer.sandbox.images import ImageStore
from deployer.sandbox.operations import Operations
from deployer.sandbox.revision_processes import (
    exit_line,
    minimal_environment,
    resolve_command,
    spawn,
    terminate,
)
from deployer.sandbox.rpc import (
    RpcError,
    aborted,
    already_exists,
    failed_precondition,
    invalid,
    not_found,
    service,
    unary,
)
from deployer.sandbox.secret_manager import SecretManager

log = logging.getLogger(__name__)

M = TypeVar("M")
Condition = run_v2.Condition
State = run_v2.Condition.State

_PARENT_RE = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")
_JOB_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+)/jobs/([^/]+)$")
_EXECUTION_RE = re.compile(r"^(projects/[^/]+/locations/[^/]+/jobs/[^/]+)/executions/([^/]+)$")
_JOB_ID_RE = re.compile(r"^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")
_SUFFIX = "abcdefghijklmnopqrstuvwxyz0123456789"
_DEFAULT_RETRIES = 3
_DEFAULT_TIMEOUT = duration_pb2.Duration(seconds=600)
_CLOSE_WAIT = 5.0


def _copy(message: M) -> M:
    kind: Any = type(message)
    copied: M = kind.deserialize(kind.serialize(message))
    return copied


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(datetime.now(UTC))
    return stamp


def _etag() -> str:
    return f'"{uuid.uuid4().hex}"'


def _missing(name: str, kind: str) -> RpcError:
    """NOT_FOUND worded as Cloud Run v2 words it."""
    location = name.split("/")
    return not_found(
        f"Resource '{location[-1]}' of kind '{kind}' in region '{location[3]}' "
        f"in project '{location[1]}' does not exist."
    )


def _condition(kind: str, state: Any, message: str = "", **extra: Any) -> run_v2.Condition:
    return Condition(type_=kind, state=state, message=message, last_transition_time=_now(), **extra)


@dataclass
class _Execution:
    """One execution's record, its cancel signal and the task processes it runs."""

    message: run_v2.Execution
    operation: str
    argv: list[str]
    cwd: str
    env: dict[str, str]
    max_retries: int
    timeout: float
    log_path: Path
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    processes: set[subprocess.Popen[bytes]] = field(default_factory=set)
    failure: str = ""
    started: float = field(default_factory=time.monotonic)


class RunJobs:
    """`google.cloud.run.v2.Jobs` and `.Executions`, backed by local processes. Thread-safe."""

    def __init__(
        self, operations: Operations, images: ImageStore, secrets: SecretManager, workdir: Path
    ) -> None:
        self._operations = operations
        self._images = images
        self._secrets = secrets
        self._logs = workdir / "executions"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._jobs: dict[str, run_v2.Job] = {}
        self._executions: dict[str, _Execution] = {}
        self._closed = False

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

    # --- jobs ------------------------------------------------------------------------

    def _create_job(self, request: run_v2.CreateJobRequest) -> Any:
        parent = _PARENT_RE.match(request.parent)
        if parent is None:
            raise invalid(f"Invalid parent '{request.parent}': expected projects/*/locations/*.")
        _check_job_id(request.job_id)
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
            return _copy(self._job(request.name))

    def _list_jobs(self, request: run_v2.ListJobsRequest) -> run_v2.ListJobsResponse:
        if _PARENT_RE.match(request.parent) is None:
            raise invalid(f"Invalid parent '{request.parent}': expected projects/*/locations/*.")
        with self._lock:
            jobs = [_copy(j) for n, j in sorted(self._jobs.items()) if _JOB_RE.match(n)]
        jobs = [j for j in jobs if j.name.startswith(request.parent + "/jobs/")]
        page, token = _page(jobs, request.page_size, request.page_token)
        return run_v2.ListJobsResponse(jobs=page, next_page_token=token)

    def _update_job(self, request: run_v2.UpdateJobRequest) -> Any:
        match = _JOB_RE.match(request.job.name)
        if match is None:
            raise invalid(f"Invalid job name '{request.job.name}'.")
        with self._lock:
            current = self._jobs.get(request.job.name)
            if current is None:
                if not request.allow_missing:
                    raise _missing(request.job.name, "JOB")
                _check_job_id(match.group(2))
                job = self._new_job(request.job.name, request.job)
            else:
                if request.job.etag and request.job.etag != current.etag:
                    raise aborted(f"Etag mismatch for job '{match.group(2)}': it was modified.")
                job = self._new_job(request.job.name, request.job)
                for kept in ("uid", "create_time", "execution_count", "latest_created_execution"):
                    setattr(job, kept, getattr(current, kept))
                job.generation = job.observed_generation = current.generation + 1
            if not request.validate_only:
                self._jobs[request.job.name] = job
        return self._finished(match.group(1), job)

    def _delete_job(self, request: run_v2.DeleteJobRequest) -> Any:
        match = _JOB_RE.match(request.name)
        if match is None:
            raise invalid(f"Invalid job name '{request.name}'.")
        with self._lock:
            job = self._job(request.name)
            if request.etag and request.etag != job.etag:
                raise aborted(f"Etag mismatch for job '{match.group(2)}': it was modified.")
            if request.validate_only:
                return self._finished(match.group(1), _copy(job))
            del self._jobs[request.name]
            executions = [
                e for n, e in self._executions.items() if n.startswith(request.name + "/")
            ]
            for execution in executions:
                del self._executions[execution.message.name]
                execution.cancel.set()
        job.delete_time = _now()
        return self._finished(match.group(1), job)

    def _new_job(self, name: str, source: run_v2.Job) -> run_v2.Job:
        job = _copy(source)
        if not job.template.template.containers:
            raise invalid("Job template must contain at least one container (template.containers).")
        job.name = name
        job.uid = str(uuid.uuid4())
        job.generation = job.observed_generation = 1
        job.create_time = job.update_time = _now()
        job.etag = _etag()
        job.reconciling = False
        job.terminal_condition = _condition("Ready", State.CONDITION_SUCCEEDED)
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
        if _JOB_RE.match(name) is None:
            raise invalid(f"Invalid job name '{name}'.")
        job = self._jobs.get(name)
        if job is None:
            raise _missing(name, "JOB")
        return job

    def _finished(self, parent: str, result: Any) -> Any:
        name = self._operations.start(parent, result)
        self._operations.succeed(name, result)
        return self._operations.get(name)

    # --- running ---------------------------------------------------------------------

    def _run_job(self, request: run_v2.RunJobRequest) -> Any:
        match = _JOB_RE.match(request.name)
        if match is None:
            raise invalid(f"Invalid job name '{request.name}'.")
        parent, job_id = match.groups()
        with self._lock:
            if self._closed:
                raise failed_precondition("The sandbox is shutting down.")
            job = self._job(request.name)
            if request.etag and request.etag != job.etag:
                raise aborted(f"Etag mismatch for job '{job_id}': it was modified.")
            execution = self._new_execution(job, request.overrides)
            if request.validate_only:
                return self._finished(parent, execution.message)
            self._executions[execution.message.name] = execution
            job.execution_count += 1
            job.latest_created_execution = run_v2.ExecutionReference(
                name=execution.message.name,
                create_time=execution.message.create_time,
                completion_status=run_v2.ExecutionReference.CompletionStatus.EXECUTION_RUNNING,
            )
            snapshot = _copy(execution.message)
        execution.operation = self._operations.start(
            parent, snapshot, on_cancel=execution.cancel.set
        )
        threading.Thread(
            target=self._execute, args=(execution,), name=f"job-{job_id}", daemon=True
        ).start()
        return self._operations.get(execution.operation)

    def _new_execution(self, job: run_v2.Job, overrides: Any) -> _Execution:
        template = _copy(job.template)
        container = template.template.containers[0]
        for override in overrides.container_overrides:
            if override.name and override.name != container.name:
                raise invalid(f"Container override names unknown container '{override.name}'.")
            if override.clear_args:
                del container.args[:]
            elif override.args:
                container.args = list(override.args)
            merged = {env.name: env for env in container.env}
            merged.update({env.name: env for env in override.env})
            container.env = list(merged.values())
        if overrides.task_count:
            template.task_count = overrides.task_count
        if run_v2.RunJobRequest.Overrides.pb(overrides).HasField("timeout"):
            template.template.timeout = overrides.timeout
        job_id = job.name.rsplit("/", 1)[1]
        name = f"{job.name}/executions/{job_id}-{_suffix()}"
        log_path = self._logs / f"{name.rsplit('/', 1)[1]}.log"
        message = run_v2.Execution(
            name=name,
            uid=str(uuid.uuid4()),
            generation=1,
            observed_generation=1,
            create_time=_now(),
            update_time=_now(),
            launch_stage=job.launch_stage,
            job=job_id,
            parallelism=template.parallelism,
            task_count=template.task_count,
            template=template.template,
            reconciling=True,
            log_uri=log_path.as_uri(),
            etag=_etag(),
            labels=dict(template.labels),
            annotations=dict(template.annotations),
            conditions=[
                _condition("ResourcesAvailable", State.CONDITION_PENDING),
                _condition("Started", State.CONDITION_PENDING),
                _condition("Completed", State.CONDITION_PENDING),
            ],
        )
        argv, cwd, env = self._command(container)
        env.update(
            CLOUD_RUN_JOB=job_id,
            CLOUD_RUN_EXECUTION=name.rsplit("/", 1)[1],
            CLOUD_RUN_TASK_COUNT=str(template.task_count),
        )
        timeout = run_v2.TaskTemplate.pb(template.template).timeout.ToTimedelta().total_seconds()
        return _Execution(
            message, "", argv, cwd, env, template.template.max_retries, timeout, log_path
        )

    def _command(self, container: run_v2.Container) -> tuple[list[str], str, dict[str, str]]:
        """(argv, cwd, environment without secrets resolved yet) of a task's container."""
        image = self._images.resolve(container.image)
        env = minimal_environment()
        if image is not None:
            env.update(image.env)
            if container.command:
                argv = [*container.command, *container.args]
            else:
                # As in Docker without ENTRYPOINT: args replace the image's CMD.
                argv = list(container.args) or list(image.cmd)
            return resolve_command(argv), str(image.context), env
        if not container.command:
            raise failed_precondition(f"Image '{container.image}' not found.")
        return resolve_command([*container.command, *container.args]), os.getcwd(), env

    def _resolve_env(self, execution: _Execution, project: str) -> dict[str, str]:
        """The container's env over the base; secret references read now, as at task start."""
        env = dict(execution.env)
        for var in execution.message.template.containers[0].env:
            ref = var.value_source.secret_key_ref
            if not ref.secret:
                env[var.name] = var.value
                continue
            secret = ref.secret if "/" in ref.secret else f"projects/{project}/secrets/{ref.secret}"
            _, payload = self._secrets.access(f"{secret}/versions/{ref.version or 'latest'}")
            env[var.name] = payload.decode("utf-8", "replace")
        # The platform's variables win over anything the container declares.
        env.update({k: v for k, v in execution.env.items() if k.startswith("CLOUD_RUN_")})
        return env

    def _execute(self, execution: _Execution) -> None:
        project = execution.message.name.split("/")[1]
        try:
            env = self._resolve_env(execution, project)
        except Exception as error:
            detail = error.message if isinstance(error, RpcError) else str(error)
            self._set_condition(execution, "ResourcesAvailable", State.CONDITION_FAILED, detail)
            execution.failure = f"Failed to access secrets for the container: {detail}"
            with self._lock:
                execution.message.failed_count = execution.message.task_count
            self._complete(execution)
            return
        now = _now()
        with self._lock:
            execution.message.start_time = now
        self._set_condition(execution, "ResourcesAvailable", State.CONDITION_SUCCEEDED)
        self._set_condition(execution, "Started", State.CONDITION_SUCCEEDED)
        pending = list(range(execution.message.task_count))
        workers = min(execution.message.parallelism or len(pending), len(pending))

        def work() -> None:
            while not execution.cancel.is_set():
                with self._lock:
                    if not pending:
                        return
                    index = pending.pop(0)
                try:
                    self._run_task(execution, index, env)
                except Exception:
                    log.exception("task %d of %s failed to run", index, execution.message.name)
                    with self._lock:
                        execution.message.failed_count += 1
                        execution.failure = execution.failure or "Internal error running a task."

        threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self._complete(execution)

    def _run_task(self, execution: _Execution, index: int, env: dict[str, str]) -> None:
        name = f"{execution.message.name.rsplit('/', 1)[1]}-task{index}"
        for attempt in range(execution.max_retries + 1):
            if execution.cancel.is_set():
                return
            with self._lock:
                execution.message.running_count += 1
                if attempt:
                    execution.message.retried_count += 1
            outcome = self._attempt(
                execution,
                {**env, "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_ATTEMPT": str(attempt)},
            )
            with self._lock:
                execution.message.running_count -= 1
                if outcome is None:
                    execution.message.succeeded_count += 1
                    return
                if execution.cancel.is_set():
                    return
                if attempt == execution.max_retries:
                    execution.message.failed_count += 1
                    execution.failure = execution.failure or (
                        f"Task {name} failed with message: {outcome}"
                    )

    def _attempt(self, execution: _Execution, env: dict[str, str]) -> str | None:
        """Run one task attempt; None on success, else why it failed."""
        with execution.log_path.open("ab") as sink:
            try:
                process = spawn(execution.argv, cwd=execution.cwd, env=env, stdout=sink)
            except OSError as error:
                sink.write(f"Application failed to start: {error}\n".encode())
                return "The container exited with an error."
            with self._lock:
                execution.processes.add(process)
            deadline = time.monotonic() + execution.timeout
            try:
                while process.poll() is None:
                    if execution.cancel.is_set() or time.monotonic() >= deadline:
                        terminate([process])
                        if execution.cancel.is_set():
                            return "The execution was cancelled."
                        sink.write(
                            b"Terminating task because it has reached the maximum timeout.\n"
                        )
                        return "The configured timeout was reached."
                    time.sleep(0.05)
            finally:
                with self._lock:
                    execution.processes.discard(process)
            sink.write(f"{exit_line(process.returncode)}\n".encode())
            return None if process.returncode == 0 else "The container exited with an error."

    def _set_condition(
        self, execution: _Execution, kind: str, state: Any, message: str = "", **extra: Any
    ) -> None:
        with self._lock:
            conditions = [c for c in execution.message.conditions if c.type_ != kind]
            conditions.append(_condition(kind, state, message, **extra))
            order = ("ResourcesAvailable", "Started", "Completed")
            execution.message.conditions = sorted(conditions, key=lambda c: order.index(c.type_))
            execution.message.update_time = _now()

    def _complete(self, execution: _Execution) -> None:
        message = execution.message
        status: Any = run_v2.ExecutionReference.CompletionStatus
        reason: Any = run_v2.Condition.ExecutionReason
        with self._lock:
            finished = message.succeeded_count + message.failed_count
            message.cancelled_count = max(0, message.task_count - finished)
            elapsed = time.monotonic() - execution.started
        error: RpcError | None = None
        if execution.cancel.is_set() and message.cancelled_count:
            outcome = status.EXECUTION_CANCELLED
            error = RpcError(grpc.StatusCode.CANCELLED, "The execution was cancelled.")
            extra = {"execution_reason": reason.CANCELLED}
        elif message.failed_count:
            outcome = status.EXECUTION_FAILED
            text = execution.failure or "The execution failed."
            error = RpcError(grpc.StatusCode.FAILED_PRECONDITION, text)
            extra = {"execution_reason": reason.NON_ZERO_EXIT_CODE}
        else:
            outcome, extra = status.EXECUTION_SUCCEEDED, {}
        if error is None:
            text = f"Execution completed successfully in {elapsed:.2f}s."
            self._set_condition(execution, "Completed", State.CONDITION_SUCCEEDED, text)
        else:
            self._set_condition(
                execution, "Completed", State.CONDITION_FAILED, error.message, **extra
            )
        with self._lock:
            message.completion_time = _now()
            message.reconciling = False
            message.running_count = 0
            snapshot = _copy(message)
            job = self._jobs.get(message.name.rsplit("/executions/", 1)[0])
            latest = job.latest_created_execution if job is not None else None
            if latest is not None and latest.name == message.name:
                latest.completion_time = message.completion_time
                latest.completion_status = outcome
        execution.done.set()
        if error is None:
            self._operations.succeed(execution.operation, snapshot, metadata=snapshot)
        else:
            self._operations.fail(execution.operation, error, metadata=snapshot)

    # --- executions ------------------------------------------------------------------

    def _execution(self, name: str) -> _Execution:
        if _EXECUTION_RE.match(name) is None:
            raise invalid(f"Invalid execution name '{name}'.")
        execution = self._executions.get(name)
        if execution is None:
            raise _missing(name, "EXECUTION")
        return execution

    def _get_execution(self, request: run_v2.GetExecutionRequest) -> run_v2.Execution:
        with self._lock:
            return _copy(self._execution(request.name).message)

    def _list_executions(self, request: run_v2.ListExecutionsRequest) -> Any:
        with self._lock:
            if not request.parent.endswith("/jobs/-"):
                self._job(request.parent)
            prefix = request.parent.removesuffix("-")
            # Newest first, as the API lists them.
            found = [
                _copy(e.message)
                for n, e in reversed(self._executions.items())
                if n.startswith(prefix)
                and (prefix.endswith("/jobs/") or n.startswith(prefix + "/"))
            ]

        page, token = _page(found, request.page_size, request.page_token)
        return run_v2.ListExecutionsResponse(executions=page, next_page_token=token)

    def _cancel_execution(self, request: run_v2.CancelExecutionRequest) -> Any:
        with self._lock:
            execution = self._execution(request.name)
            if execution.done.is_set():
                raise failed_precondition(
                    f"Execution '{request.name.rsplit('/', 1)[1]}' has already completed."
                )
            snapshot = _copy(execution.message)
        parent = "/".join(request.name.split("/")[:4])
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
                return self._finished(
                    "/".join(request.name.split("/")[:4]), _copy(execution.message)
                )
            del self._executions[request.name]
            execution.cancel.set()
            snapshot = _copy(execution.message)
        snapshot.delete_time = _now()
        return self._finished("/".join(request.name.split("/")[:4]), snapshot)

    def _after(self, execution: _Execution, then: Callable[[run_v2.Execution], None]) -> None:
        """Call `then` with the final execution once it ended (bounded wait, own thread)."""

        def wait() -> None:
            execution.done.wait(_CLOSE_WAIT)
            with self._lock:
                snapshot = _copy(execution.message)
            then(snapshot)

        threading.Thread(target=wait, daemon=True).start()


def _check_job_id(job_id: str) -> None:
    if not _JOB_ID_RE.match(job_id):
        raise invalid(
            f"Invalid value specified for job_id: '{job_id}'. Job names must use only lowercase "
            "alphanumeric characters and dashes, begin with a letter, cannot end with a dash, "
            "and cannot be longer than 63 characters."
        )


def _suffix() -> str:
    return "".join(_SUFFIX[b % len(_SUFFIX)] for b in os.urandom(5))


def _page(items: list[M], size: int, token: str) -> tuple[Iterable[M], str]:
    start = int(token) if token.isdigit() else 0
    if size <= 0:
        return items[start:], ""
    end = start + size
    return items[start:end], str(end) if end < len(items) else ""
