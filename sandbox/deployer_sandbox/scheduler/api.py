"""Cloud Scheduler v1 in the sandbox: jobs recorded, and run only when asked.

`google.cloud.scheduler.v1.CloudScheduler`: CreateJob, GetJob, ListJobs, UpdateJob,
DeleteJob, PauseJob, ResumeJob and RunJob, as `scheduler_v1.CloudSchedulerClient`
calls them. Names are in `scheduler.names`, what a job must hold in
`scheduler.validation`, what an attempt does in `scheduler.targets`.

Nothing runs by the clock. A job runs when RunJob "forces a job to run now"
(CloudScheduler.RunJob), or when the sandbox's owner calls `run_due(now)`, which runs
every enabled job whose schedule is due in the minute of `now` (in the job's time zone)
once per minute, and never while its previous attempt is outstanding ("Cloud Scheduler
will never allow two simultaneously outstanding executions", Job.schedule).

    call          what the sandbox does                               source
    CreateJob     ALREADY_EXISTS for a name taken; a job without a    CreateJobRequest.job
                  name gets one; state ENABLED, `user_update_time`,
                  `schedule_time` (the next due minute, in UTC)
    UpdateJob     NOT_FOUND for a missing job; `update_mask` paths    UpdateJobRequest
                  (snake or camel case) merge those fields only,
                  none replaces every field a caller may set; output-
                  only fields are ignored ("Any value specified for an
                  output only field will be ignored"); the result is
                  checked as a new job is
    PauseJob      FAILED_PRECONDITION unless ENABLED                  "A job must be in
                                                                      Job.State.ENABLED to be paused"
    ResumeJob     FAILED_PRECONDITION unless PAUSED                   "A job must be in
                                                                      Job.State.PAUSED to be resumed"
    RunJob        answers the job with `last_attempt_time` set, and   "When this method is called,
                  makes the attempt on a thread of its own, even if   Cloud Scheduler will dispatch
                  one is outstanding; a paused job is                 the job, even if the job is
                  FAILED_PRECONDITION                                 already running"
    ListJobs      by name, pages of at most 500 (0: 500)              ListJobsRequest.page_size

Each attempt sets `last_attempt_time` ("The time the last job attempt started") when
it starts and `status` ("The response from the target for the last attempted
execution") when it ends; `attempts(name)` lists them all, with the Cloud Run
execution each started.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud import scheduler_v1
from google.protobuf import empty_pb2, field_mask_pb2
from google.rpc import code_pb2, status_pb2

from deployer_sandbox.common import rpc
from deployer_sandbox.common.paging import page
from deployer_sandbox.common.protos import clone, now
from deployer_sandbox.common.rpc import failed_precondition, invalid, unary
from deployer_sandbox.metadata.id_tokens import IdTokenKey
from deployer_sandbox.scheduler.names import (
    check_parent,
    job_exists,
    job_not_found,
    parse_job,
    project_of,
)
from deployer_sandbox.scheduler.targets import Dispatcher, Outcome, RunCloudRunJob
from deployer_sandbox.scheduler.validation import check_and_fill, schedule_of, zone

SERVICE = "google.cloud.scheduler.v1.CloudScheduler"
# A proto-plus enum, typed loosely: mypy reads its members as plain ints.
State: Any = scheduler_v1.Job.State
_MAX_PAGE = 500
# What a caller may set (job.proto: every other field is output only, and `name` is fixed).
_SETTABLE = (
    "description",
    "pubsub_target",
    "app_engine_http_target",
    "http_target",
    "schedule",
    "time_zone",
    "retry_config",
    "attempt_deadline",
)
_OUTPUT_ONLY = ("name", "user_update_time", "state", "status", "schedule_time", "last_attempt_time")


@dataclass(frozen=True)
class Attempt:
    """One attempt of a job: when it started, what it was for, how it ended."""

    job: str
    started: datetime
    schedule_time: datetime | None  # None for RunJob
    code: int  # google.rpc.Code
    message: str
    execution: str | None  # the Cloud Run execution it started, if any


@dataclass
class _Stored:
    job: scheduler_v1.Job
    outstanding: int = 0
    last_scheduled: datetime | None = None
    attempts: list[Attempt] = field(default_factory=list)


class CloudScheduler:
    """In-memory Cloud Scheduler served over gRPC. Thread-safe."""

    def __init__(
        self,
        run_cloud_run_job: RunCloudRunJob | None = None,
        id_tokens: IdTokenKey | None = None,
    ) -> None:
        """`run_cloud_run_job`: RunJob in the sandbox's Cloud Run, for targets that are its
        `jobs/J:run` URL; `id_tokens`: the key that signs an `oidc_token`'s ID tokens."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, _Stored] = {}
        self._dispatcher = Dispatcher(run_cloud_run_job, id_tokens)

    def handler(self) -> grpc.GenericRpcHandler:
        """The gRPC handler for `google.cloud.scheduler.v1.CloudScheduler`."""
        s, job = scheduler_v1, scheduler_v1.Job
        table: list[tuple[str, Any, Any, Any]] = [
            ("CreateJob", self._create_job, s.CreateJobRequest, job),
            ("GetJob", self._get_job, s.GetJobRequest, job),
            ("ListJobs", self._list_jobs, s.ListJobsRequest, s.ListJobsResponse),
            ("UpdateJob", self._update_job, s.UpdateJobRequest, job),
            ("DeleteJob", self._delete_job, s.DeleteJobRequest, empty_pb2.Empty),
            ("PauseJob", self._pause_job, s.PauseJobRequest, job),
            ("ResumeJob", self._resume_job, s.ResumeJobRequest, job),
            ("RunJob", self._run_job, s.RunJobRequest, job),
        ]
        methods = {name: unary(handler, req, resp) for name, handler, req, resp in table}
        return rpc.service(SERVICE, methods)

    # --- the control the tests and the harness call ------------------------------------

    def run_due(self, at: datetime | None = None, project: str | None = None) -> list[str]:
        """Run every enabled job (of `project`, if given) due in the minute of `at` (default:
        now), as the schedule would; wait for those attempts to end; their jobs' names."""
        at = (at or datetime.now(UTC)).astimezone(UTC)
        started: list[tuple[str, threading.Thread]] = []
        with self._lock:
            for name, stored in sorted(self._jobs.items()):
                if project is not None and project_of(name) != project:
                    continue
                if stored.job.state != State.ENABLED or stored.outstanding:
                    continue
                local = at.astimezone(zone(stored.job.time_zone)).replace(second=0, microsecond=0)
                if not schedule_of(stored.job).matches(local) or stored.last_scheduled == local:
                    continue
                stored.last_scheduled = local
                started.append((name, self._start_attempt(stored, local)))
                _set_next_schedule_time(stored.job, local)
        for _, thread in started:
            thread.join()
        return [name for name, _ in started]

    def attempts(self, name: str) -> list[Attempt]:
        """Every attempt of the job `name` that has ended, oldest first."""
        with self._lock:
            stored = self._jobs.get(name)
            return list(stored.attempts) if stored else []

    def wait_for_attempts(self, name: str, count: int, timeout: float = 10.0) -> list[Attempt]:
        """The job's ended attempts once there are `count` of them (or `timeout` passed)."""
        with self._changed:
            self._changed.wait_for(
                lambda: name in self._jobs and len(self._jobs[name].attempts) >= count, timeout
            )
            stored = self._jobs.get(name)
            return list(stored.attempts) if stored else []

    # --- jobs ----------------------------------------------------------------------------

    def _create_job(self, request: scheduler_v1.CreateJobRequest) -> scheduler_v1.Job:
        project, _ = check_parent(request.parent)
        job = clone(request.job)
        if job.name:
            parent, _ = parse_job(job.name)
            if parent != request.parent:
                raise invalid(f"Job name [{job.name}] is not under the parent [{request.parent}].")
        else:
            # "If a name is not specified then the system will generate a random unique name"
            job.name = f"{request.parent}/jobs/{uuid.uuid4().hex}"
        for output_only in _OUTPUT_ONLY[1:]:
            scheduler_v1.Job.pb(job).ClearField(output_only)
        check_and_fill(job, project)
        job.state = State.ENABLED
        job.user_update_time = now()
        _set_next_schedule_time(job, None)
        with self._lock:
            if job.name in self._jobs:
                raise job_exists(job.name)
            self._jobs[job.name] = _Stored(job)
            return clone(job)

    def _get_job(self, request: scheduler_v1.GetJobRequest) -> scheduler_v1.Job:
        with self._lock:
            return clone(self._stored(request.name).job)

    def _list_jobs(self, request: scheduler_v1.ListJobsRequest) -> scheduler_v1.ListJobsResponse:
        check_parent(request.parent)
        prefix = f"{request.parent}/jobs/"
        with self._lock:
            jobs = [clone(s.job) for n, s in sorted(self._jobs.items()) if n.startswith(prefix)]
        # "The maximum page size is 500": a larger one gets 500 ("Fewer jobs than requested
        # might be returned").
        size = min(request.page_size, _MAX_PAGE)
        found, token = page(jobs, size, request.page_token, default_size=_MAX_PAGE)
        return scheduler_v1.ListJobsResponse(jobs=found, next_page_token=token)

    def _update_job(self, request: scheduler_v1.UpdateJobRequest) -> scheduler_v1.Job:
        name = request.job.name
        parent, _ = parse_job(name)
        paths = _mask_paths(request)
        with self._lock:
            stored = self._stored(name)
            updated = clone(stored.job)
            source = scheduler_v1.Job.pb(request.job)
            target = scheduler_v1.Job.pb(updated)
            if paths is None:
                # No mask: the request's job replaces every field a caller may set.
                for settable in _SETTABLE:
                    target.ClearField(settable)
                paths = list(_SETTABLE)
            field_mask_pb2.FieldMask(paths=paths).MergeMessage(
                source, target, replace_message_field=True, replace_repeated_field=True
            )
            check_and_fill(updated, project_of(parent))
            updated.user_update_time = now()
            _set_next_schedule_time(updated, None)
            stored.job = updated
            return clone(updated)

    def _delete_job(self, request: scheduler_v1.DeleteJobRequest) -> empty_pb2.Empty:
        with self._lock:
            self._stored(request.name)
            del self._jobs[request.name]
        return empty_pb2.Empty()

    def _pause_job(self, request: scheduler_v1.PauseJobRequest) -> scheduler_v1.Job:
        return self._transition(request.name, State.ENABLED, State.PAUSED, "paused")

    def _resume_job(self, request: scheduler_v1.ResumeJobRequest) -> scheduler_v1.Job:
        return self._transition(request.name, State.PAUSED, State.ENABLED, "resumed")

    def _transition(self, name: str, before: Any, after: Any, verb: str) -> scheduler_v1.Job:
        with self._lock:
            stored = self._stored(name)
            if stored.job.state != before:
                state = State(stored.job.state).name
                raise failed_precondition(
                    f"Job {name} is {state}: a job must be {before.name} to be {verb}."
                )
            stored.job.state = after
            if after == State.ENABLED:
                _set_next_schedule_time(stored.job, None)
            return clone(stored.job)

    def _run_job(self, request: scheduler_v1.RunJobRequest) -> scheduler_v1.Job:
        with self._lock:
            stored = self._stored(request.name)
            if stored.job.state != State.ENABLED:
                state = State(stored.job.state).name
                raise failed_precondition(f"Job {request.name} is {state}: it cannot run.")
            self._start_attempt(stored, None)
            return clone(stored.job)

    # --- attempts ------------------------------------------------------------------------

    def _start_attempt(self, stored: _Stored, schedule_time: datetime | None) -> threading.Thread:
        """Mark an attempt started and make it on its own thread (lock held)."""
        stored.outstanding += 1
        started = datetime.now(UTC)
        scheduler_v1.Job.pb(stored.job).last_attempt_time.FromDatetime(started)
        snapshot = clone(stored.job)

        def attempt() -> None:
            try:
                outcome = self._dispatcher.attempt(snapshot, schedule_time)
            except Exception as error:  # a bug here must still end the attempt
                outcome = Outcome(status_pb2.Status(code=code_pb2.INTERNAL, message=str(error)))
            self._record(snapshot.name, stored, started, schedule_time, outcome)

        thread = threading.Thread(target=attempt, name="scheduler-attempt", daemon=True)
        thread.start()
        return thread

    def _record(
        self,
        name: str,
        stored: _Stored,
        started: datetime,
        schedule_time: datetime | None,
        outcome: Outcome,
    ) -> None:
        with self._changed:
            stored.outstanding -= 1
            if self._jobs.get(name) is stored:
                stored.job.status = outcome.status
            stored.attempts.append(
                Attempt(
                    job=name,
                    started=started,
                    schedule_time=schedule_time,
                    code=outcome.status.code,
                    message=outcome.status.message,
                    execution=outcome.execution,
                )
            )
            self._changed.notify_all()

    def _stored(self, name: str) -> _Stored:
        parse_job(name)
        stored = self._jobs.get(name)
        if stored is None:
            raise job_not_found(name)
        return stored


def _mask_paths(request: scheduler_v1.UpdateJobRequest) -> list[str] | None:
    """The mask's paths in snake case, output-only ones dropped; None without a mask."""
    if "update_mask" not in request or not request.update_mask.paths:
        return None
    paths = []
    for path in request.update_mask.paths:
        snake = re.sub(r"(?<!^)(?=[A-Z])", "_", path).lower()
        top = snake.split(".", 1)[0]
        if top in _OUTPUT_ONLY:
            continue
        if top not in _SETTABLE:
            raise invalid(f"update_mask path [{path}] is not a field of Job that can be updated.")
        paths.append(snake)
    return paths


def _set_next_schedule_time(job: scheduler_v1.Job, after: datetime | None) -> None:
    """`schedule_time`: the next due minute after `after` (default: now), in UTC."""
    tz = zone(job.time_zone)
    start = (after or datetime.now(UTC)).astimezone(tz)
    following = schedule_of(job).next_after(start.replace(tzinfo=None))
    if following is None:
        scheduler_v1.Job.pb(job).ClearField("schedule_time")
        return
    scheduler_v1.Job.pb(job).schedule_time.FromDatetime(following.replace(tzinfo=tz))


__all__ = ["Attempt", "CloudScheduler"]
