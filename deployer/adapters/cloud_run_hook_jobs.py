"""Deploy hooks as Cloud Run job executions (`HookJobs` over `run_v2.JobsClient`).

    run(service, spec, timeout)
      1. earlier?   ListExecutions of the job, newest first: one labelled with this deploy
                    (a lost run's) that ended is the outcome, reused; one still running is
                    waited for. A resumed deploy never runs a hook twice.
      2. job        GetService for what the revision reaches (VPC access, volumes such
                    as a Cloud SQL socket, encryption key), copied to the task; GetJob;
                    CreateJob when missing, UpdateJob (with its etag) when the template
                    differs; left alone when it is the same
      3. run        RunJob; its operation's metadata names the execution
      4. wait       GetExecution until `completion_time` is set, polled from 0.2 s to 2 s;
                    at `timeout`, CancelExecution and say "timed out"
      5. log        the execution's last lines from Cloud Logging (`ExecutionLogs`)

The job is `SERVICE-HOOK` (`run_names.hook_job_name`), in the service's project and
region. Its template is the candidate's: the image by digest, the hook's command as
`command` ("Entrypoint array. Not executed within a shell. The docker image's
ENTRYPOINT is used if this is not provided"; with no `args` the image's CMD is dropped,
as in Kubernetes), the environment's env and secrets (`secret_key_ref`, pinned
versions), its service account, cpu and memory; `task_count` 1, `max_retries` 0 (a
migration must not run again by itself: "Number of retries allowed per Task, before
marking this Task failed. Defaults to 3") and the task `timeout` the hook's ("Max
allowed time duration the Task may be active before the system will actively try to
mark it failed and kill associated containers"), all quoted from run_v2's
task_template.py and k8s_min.py. The execution template's labels carry the deploy's id:
Cloud Run copies them onto each execution (execution.py, `labels`: output only),
which is how step 1 finds a lost run's execution.

An execution has ended when `completion_time` is set ("Represents time when the
execution was completed"); it succeeded when its tasks did (`succeeded_count`,
`failed_count`). A failed one's `Completed` condition carries the reason
(`execution_reason` NON_ZERO_EXIT_CODE: "A task reached its retry limit and the last
attempt failed due to the user container exiting with a non-zero exit code"); the exit
code itself is Cloud Run's own log line, "Container called exit(1).".

Google is sometimes slow or away: every call has a timeout, and transient refusals
(UNAVAILABLE, DEADLINE_EXCEEDED, ...) are tried again a bounded number of times. A
RunJob that failed that way may still have started the execution: before trying again,
step 1 looks for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.cloud_logging import ExecutionLogs
from deployer.adapters.cloud_run_job_template import job_for, same_template
from deployer.adapters.job_executions import (
    EXIT,
    SIGNAL,
    created,
    elapsed,
    ended,
    ending,
    short_name,
)
from deployer.adapters.polling import operation_result
from deployer.config import ServiceConfig
from deployer.pipeline.hook_port import (
    HOOK_LOG_LINES,
    HookOutcome,
    HookRefused,
    HookSpec,
    Started,
)
from deployer.pipeline.ports import DEPLOY_LABEL
from deployer.run_names import hook_job_name

log = logging.getLogger(__name__)

T = TypeVar("T")

# Refusals worth trying again: the API was there, or may be, and may answer next time.
_TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.TooManyRequests,
    exceptions.Aborted,
)
ATTEMPTS = 4  # calls of one kind before a transient refusal is final
CALL_TIMEOUT = 30.0  # seconds one call may take
POLL_FIRST, POLL_MAX = 0.2, 2.0
# After the execution ended: how long its last lines may take to reach Cloud Logging.
LOG_WAIT = 5.0
CANCEL_WAIT = 10.0
RECENT = 50  # executions of a job looked through for the deploy's own


class CloudRunHookJobs:
    """Runs deploy hooks as executions of a per-service Cloud Run job."""

    def __init__(
        self,
        jobs: run_v2.JobsClient,
        executions: run_v2.ExecutionsClient,
        logs: ExecutionLogs,
        services: run_v2.ServicesClient | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`services`: where the service's network and volumes are read (None: not copied)."""
        self._jobs = jobs
        self._executions = executions
        self._logs = logs
        self._services = services
        self._sleep = sleep

    def run(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        timeout: float,
        started: Started | None = None,
    ) -> HookOutcome:
        end = time.monotonic() + timeout
        job_id = hook_job_name(service.service, spec.hook)
        parent = f"projects/{service.project}/locations/{service.region}"
        name = f"{parent}/jobs/{job_id}"
        deploy = spec.labels.get(DEPLOY_LABEL, "")
        found = self._earlier(name, deploy, end) if deploy else None
        if found is not None:
            if ended(found):
                return self._outcome(service, spec, job_id, found, end, earlier=True)
            if started is not None:
                started(short_name(found.name), found.log_uri)
            return self._wait(service, spec, job_id, found, end, earlier=True)
        reach = self._reach(f"{parent}/services/{service.service}", end)
        self._put_job(parent, job_id, spec, reach, end)
        execution = self._start(name, deploy, end)
        if started is not None:
            started(short_name(execution.name), execution.log_uri)
        return self._wait(service, spec, job_id, execution, end, earlier=False)

    # --- the job -----------------------------------------------------------------------

    def _reach(self, service: str, end: float) -> run_v2.RevisionTemplate | None:
        """The service's template (its candidate's), for what the hook must reach as it
        does; None when it cannot be read (the hook then runs without)."""
        services = self._services
        if services is None:
            return None
        try:
            found = self._call(lambda t: services.get_service(name=service, timeout=t), end)
        except exceptions.GoogleAPICallError as error:
            log.warning("reading service %s for its hooks failed: %s", short_name(service), error)
            return None
        template: run_v2.RevisionTemplate = found.template
        return template

    def _put_job(
        self,
        parent: str,
        job_id: str,
        spec: HookSpec,
        reach: run_v2.RevisionTemplate | None,
        end: float,
    ) -> None:
        """Create the job, or update it when its template is not `spec`'s."""
        name = f"{parent}/jobs/{job_id}"
        wanted = job_for(spec, reach)
        try:
            current = self._call(lambda t: self._jobs.get_job(name=name, timeout=t), end)
        except exceptions.NotFound:
            current = None
        except exceptions.GoogleAPICallError as error:
            raise HookRefused(f"cannot read job {job_id}: {_said(error)}") from None
        try:
            if current is None:
                operation = self._call(
                    lambda t: self._jobs.create_job(
                        parent=parent, job=wanted, job_id=job_id, timeout=t
                    ),
                    end,
                )
            elif same_template(current, wanted):
                return
            else:
                wanted.name, wanted.etag = name, current.etag
                operation = self._call(lambda t: self._jobs.update_job(job=wanted, timeout=t), end)
            operation_result(operation, _call_timeout(end))
        except exceptions.AlreadyExists:
            # Another deploy of the service created it meanwhile: update it instead.
            self._put_job(parent, job_id, spec, reach, end)
        except exceptions.GoogleAPICallError as error:
            raise HookRefused(f"Cloud Run refused job {job_id}: {_said(error)}") from None
        except TimeoutError:
            raise HookRefused(f"Cloud Run did not finish writing job {job_id} in time") from None

    # --- running -----------------------------------------------------------------------

    def _start(self, name: str, deploy: str, end: float) -> run_v2.Execution:
        """RunJob; the execution it started (found by its deploy label when the answer was
        lost to a transient error)."""
        for attempt in range(ATTEMPTS):
            try:
                operation: Any = self._jobs.run_job(name=name, timeout=_call_timeout(end))
            except _TRANSIENT as error:
                found = self._earlier(name, deploy, end) if deploy else None
                if found is not None:
                    return found
                if attempt + 1 == ATTEMPTS or _left(end) <= 0:
                    raise HookRefused(
                        f"Cloud Run did not run {short_name(name)}: {_said(error)}"
                    ) from None
                self._sleep(min(2.0**attempt * 0.5, _left(end)))
                continue
            except exceptions.GoogleAPICallError as error:
                raise HookRefused(
                    f"Cloud Run refused to run {short_name(name)}: {_said(error)}"
                ) from None
            metadata = operation.metadata
            execution = getattr(metadata, "name", "") if metadata else ""
            if not execution:
                raise HookRefused(f"Cloud Run named no execution of {short_name(name)}")
            return self._get(execution, end)
        raise AssertionError("unreachable")

    def _earlier(self, name: str, deploy: str, end: float) -> run_v2.Execution | None:
        """The newest execution of job `name` labelled with `deploy`, if any."""
        try:
            pages = self._call(
                lambda t: self._executions.list_executions(
                    request=run_v2.ListExecutionsRequest(parent=name, page_size=RECENT),
                    timeout=t,
                ),
                end,
            )
            # Newest first: a deploy's own execution is among the latest few, and a job
            # with a long history is not read to its end.
            for seen, execution in enumerate(pages, start=1):
                if execution.labels.get(DEPLOY_LABEL) == deploy:
                    return execution
                if seen >= RECENT:
                    break
        except exceptions.NotFound:
            return None  # no job yet: nothing ran
        except exceptions.GoogleAPICallError as error:
            raise HookRefused(
                f"cannot list executions of {short_name(name)}: {_said(error)}"
            ) from None
        return None

    def _wait(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        job_id: str,
        execution: run_v2.Execution,
        end: float,
        earlier: bool,
    ) -> HookOutcome:
        """Poll the execution until it ended, or cancel it at `end`."""
        delay = POLL_FIRST
        while not ended(execution):
            if _left(end) <= 0:
                return self._cancel(service, spec, job_id, execution, end, earlier)
            self._sleep(min(delay, _left(end)))
            delay = min(delay * 1.5, POLL_MAX)
            try:
                execution = self._get(execution.name, end)
            except HookRefused:
                if _left(end) <= 0:
                    return self._cancel(service, spec, job_id, execution, end, earlier)
                raise
        return self._outcome(service, spec, job_id, execution, end, earlier)

    def _cancel(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        job_id: str,
        execution: run_v2.Execution,
        end: float,
        earlier: bool,
    ) -> HookOutcome:
        """Stop an execution that ran out of time; how long it ran, and its last lines."""
        short = short_name(execution.name)
        try:
            # "Cancels an Execution" (ExecutionsClient.cancel_execution); not waited for long.
            operation = self._executions.cancel_execution(name=execution.name, timeout=CANCEL_WAIT)
            operation_result(operation, CANCEL_WAIT)
        except (exceptions.GoogleAPICallError, TimeoutError) as error:
            log.warning("cancelling execution %s failed: %s", short, error)
        ran = elapsed(execution)
        lines = self._tail(service, spec, job_id, execution, time.monotonic() + LOG_WAIT)
        return HookOutcome(
            ok=False,
            execution=short,
            summary=f"timed out after {ran:.0f} s; execution {short} cancelled",
            log_lines=lines,
            log_url=execution.log_uri,
            timed_out=True,
            earlier=earlier,
        )

    def _outcome(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        job_id: str,
        execution: run_v2.Execution,
        end: float,
        earlier: bool,
    ) -> HookOutcome:
        short = short_name(execution.name)
        ran = elapsed(execution)
        ok = execution.succeeded_count >= max(1, execution.task_count) and not (
            execution.failed_count or execution.cancelled_count
        )
        lines = self._tail(
            service, spec, job_id, execution, time.monotonic() + min(LOG_WAIT, _left(end, 1.0))
        )
        completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
        message = completed.message if completed is not None else ""
        timed_out = not ok and ("timeout" in message.lower() or ran >= spec.timeout)
        if ok:
            summary = f"succeeded in {ran:.0f} s"
        elif timed_out:
            summary = f"timed out after {ran:.0f} s"
        elif execution.cancelled_count:
            summary = f"cancelled after {ran:.0f} s"
        else:
            summary = f"{ending(lines, message)} after {ran:.0f} s"
        return HookOutcome(
            ok=ok,
            execution=short,
            summary=summary,
            log_lines=lines,
            log_url=execution.log_uri,
            timed_out=timed_out,
            earlier=earlier,
        )

    def _tail(
        self,
        service: ServiceConfig,
        spec: HookSpec,
        job_id: str,
        execution: run_v2.Execution,
        until: float,
    ) -> tuple[str, ...]:
        """The execution's last lines; Cloud Logging receives them a little after the task
        ended, so an empty or unfinished read is tried again until `until`."""
        since = created(execution)
        while True:
            lines = self._logs.tail(
                service,
                job_id,
                short_name(execution.name),
                HOOK_LOG_LINES,
                max(0.5, until - time.monotonic()),
                since=since,
                known=spec.env.values(),
            )
            finished = any(EXIT.search(line) or SIGNAL.search(line) for line in lines)
            if finished or time.monotonic() >= until:
                return tuple(lines)
            self._sleep(0.2)

    # --- calls -------------------------------------------------------------------------

    def _get(self, name: str, end: float) -> run_v2.Execution:
        try:
            return self._call(lambda t: self._executions.get_execution(name=name, timeout=t), end)
        except exceptions.GoogleAPICallError as error:
            raise HookRefused(f"cannot read execution {short_name(name)}: {_said(error)}") from None

    def _call(self, call: Callable[[float], T], end: float) -> T:
        """`call(timeout)`, tried again on a transient refusal while attempts and time last."""
        for attempt in range(ATTEMPTS):
            try:
                return call(_call_timeout(end))
            except _TRANSIENT:
                if attempt + 1 == ATTEMPTS or _left(end) <= 0:
                    raise
                self._sleep(min(2.0**attempt * 0.5, _left(end)))
        raise AssertionError("unreachable")


def _said(error: exceptions.GoogleAPICallError) -> str:
    return f"{type(error).__name__}: {error.message}"


def _call_timeout(end: float) -> float:
    """One call's timeout: what is left, within CALL_TIMEOUT, never less than a second (a
    call made as time runs out still gets an answer, or fails, promptly)."""
    return max(1.0, _left(end, CALL_TIMEOUT))


def _left(end: float, cap: float | None = None) -> float:
    left = max(0.0, end - time.monotonic())
    return min(left, cap) if cap is not None else left
