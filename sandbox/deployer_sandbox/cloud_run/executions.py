"""One execution of a Cloud Run job run as local processes (its record, made from the job
and its overrides: `execution_record`).

    Execution JOB-xxxxx
        └── tasks 0..task_count-1, `parallelism` at a time, each retried up to
            `max_retries` times and killed after `timeout`; stdout and stderr of
            every task go to one log file, `log_uri`, and line by line to
            Cloud Logging (`Execution.lines`, served by `cloud_logging` under
            resource type `cloud_run_job`), with Cloud Run's own lines: "Container
            called exit(N).", "Terminating task because it has reached the
            maximum timeout."
    conditions: ResourcesAvailable (secrets read) -> Started -> Completed

A task runs the template's first container, in a network namespace of its own
(`common.netns`) where the sandbox's endpoints (gRPC, Slack, metadata, git, the
router's URLs, and any loopback address in its environment) are relayed in. When its
image is in the sandbox's registry it runs like a revision (a built image inside its
tree, a host image in its folder), `command` and `args` overriding ENTRYPOINT and CMD
as on Cloud Run; an image that was never pushed runs `command` + `args` as a local
command with the sandbox's PATH, which is how the deployer's own `deployer worker`
job runs here.
Beside the container's env, a task finds the platform's: CLOUD_RUN_JOB,
CLOUD_RUN_EXECUTION, CLOUD_RUN_TASK_INDEX/_ATTEMPT/_COUNT, and GCE_METADATA_HOST
and GCE_METADATA_IP naming the sandbox's metadata server,
where google-auth finds its credentials and ID tokens as on Cloud Run.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import grpc
from google.cloud import run_v2

from deployer_sandbox.cloud_run.containers import launch_command
from deployer_sandbox.cloud_run.execution_record import (
    LINE_NUMBERS,
    Execution,
    TaskLogLine,
)
from deployer_sandbox.cloud_run.resources import condition
from deployer_sandbox.common.child_processes import (
    exit_line,
    resolve_command,
    terminate,
)
from deployer_sandbox.common.netns import ContainerNetwork
from deployer_sandbox.common.operations import Operations
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import RpcError
from deployer_sandbox.secret_manager.api import SecretManager

log = logging.getLogger(__name__)

State = run_v2.Condition.State
CompletionStatus = run_v2.ExecutionReference.CompletionStatus
# Called, with the lock held, with an execution that ended and how it ended.
OnComplete = Callable[[run_v2.Execution, CompletionStatus], None]


_READER_WAIT = 2.0  # seconds an ended task's last lines may take to be read


def _pump(stream: IO[bytes] | None, record: Callable[[str], None]) -> None:
    """Record each line of `stream` (a task's stdout and stderr, merged) until it closes."""
    if stream is None:
        return
    try:
        for raw in iter(stream.readline, b""):
            record(raw.decode("utf-8", "replace").rstrip("\r\n"))
    except (OSError, ValueError):
        pass  # the stream went with its process
    finally:
        stream.close()


class ExecutionRunner:
    """Runs executions on their own threads; execution state is guarded by the servicer's lock."""

    def __init__(
        self,
        lock: threading.Lock,
        operations: Operations,
        secrets: SecretManager,
        on_complete: OnComplete,
        network: ContainerNetwork | None = None,
        layers: Path | None = None,
    ) -> None:
        """`network`: how tasks are networked; `layers`: where each attempt of a built
        image gets its writable layer (removed when it ends)."""
        self._lock = lock
        self._operations = operations
        self._secrets = secrets
        self._on_complete = on_complete
        self._network = network or ContainerNetwork()
        self._layers = layers or Path(tempfile.gettempdir()) / "sandbox-task-layers"
        self._attempts = itertools.count(1)

    def start(self, execution: Execution) -> None:
        """Run `execution` on a thread of its own; its operation ends when it does."""
        job_id = execution.message.job
        threading.Thread(
            target=self._execute, args=(execution,), name=f"job-{job_id}", daemon=True
        ).start()

    def _resolve_env(self, execution: Execution, project: str) -> dict[str, str]:
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
        env.update(execution.platform)
        return env

    def _execute(self, execution: Execution) -> None:
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
        started = now()
        with self._lock:
            execution.message.start_time = started
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

    def _run_task(self, execution: Execution, index: int, env: dict[str, str]) -> None:
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

    def _attempt(self, execution: Execution, env: dict[str, str]) -> str | None:
        """Run one task attempt; None on success, else why it failed."""
        layer = self._layers / f"{execution.message.name.rsplit('/', 1)[1]}-{next(self._attempts)}"
        index, attempt = int(env["CLOUD_RUN_TASK_INDEX"]), int(env["CLOUD_RUN_TASK_ATTEMPT"])
        with execution.log_path.open("ab") as sink:

            def record(text: str, system: bool = False) -> None:
                line = TaskLogLine(
                    datetime.now(UTC), text, next(LINE_NUMBERS), index, attempt, system
                )
                with self._lock:
                    execution.lines.append(line)
                sink.write(f"{text}\n".encode())
                sink.flush()

            try:
                cwd: Path | None
                if execution.image is None:
                    argv, cwd = resolve_command(execution.argv), Path(execution.cwd)
                else:
                    argv, cwd = launch_command(execution.image, execution.argv, layer)
                if execution.image is not None and execution.image.root:
                    layer.mkdir(parents=True)
                container = self._network.start(argv, cwd=cwd, env=env, listen_port=None)
            except (OSError, RuntimeError) as error:
                record(f"Application failed to start: {error}", system=True)
                return "The container exited with an error."
            process = container.process
            # Read line by line, so that each reaches Cloud Logging with its own time.
            reader = threading.Thread(
                target=_pump, args=(process.stdout, record), name="task-logs", daemon=True
            )
            reader.start()
            with self._lock:
                execution.processes.add(process)
            deadline = time.monotonic() + execution.timeout
            try:
                while process.poll() is None:
                    if execution.cancel.is_set() or time.monotonic() >= deadline:
                        terminate([process])
                        reader.join(_READER_WAIT)
                        if execution.cancel.is_set():
                            return "The execution was cancelled."
                        record(
                            "Terminating task because it has reached the maximum timeout.",
                            system=True,
                        )
                        return "The configured timeout was reached."
                    time.sleep(0.05)
            finally:
                with self._lock:
                    execution.processes.discard(process)
                container.release()
                shutil.rmtree(layer, ignore_errors=True)
            reader.join(_READER_WAIT)
            record(exit_line(process.returncode), system=True)
            return None if process.returncode == 0 else "The container exited with an error."

    def _set_condition(
        self, execution: Execution, kind: str, state: Any, message: str = "", **extra: Any
    ) -> None:
        with self._lock:
            conditions = [c for c in execution.message.conditions if c.type_ != kind]
            conditions.append(condition(kind, state, message, failure_severity=None, **extra))
            order = ("ResourcesAvailable", "Started", "Completed")
            execution.message.conditions = sorted(conditions, key=lambda c: order.index(c.type_))
            execution.message.update_time = now()

    def _complete(self, execution: Execution) -> None:
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
            message.completion_time = now()
            message.reconciling = False
            message.running_count = 0
            snapshot = clone(message)
            self._on_complete(message, outcome)
        execution.done.set()
        if error is None:
            self._operations.succeed(execution.operation, snapshot, metadata=snapshot)
        else:
            self._operations.fail(execution.operation, error, metadata=snapshot)
