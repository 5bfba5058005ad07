"""The sandbox's log entries: revisions' and job executions' container and platform lines,
and builds' lines."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from google.api import monitored_resource_pb2
from google.cloud.logging_v2.types import LogEntry
from google.logging.type import log_severity_pb2

from deployer_sandbox.cloud_build.runner import BuildLogLine
from deployer_sandbox.cloud_run.execution_record import TaskLogLine
from deployer_sandbox.cloud_run.names import ServiceName
from deployer_sandbox.cloud_run.processes import LogLine

RESOURCE_TYPE = "cloud_run_revision"
JOB_RESOURCE_TYPE = "cloud_run_job"
# The entry labels Cloud Run puts on a job's lines: which execution, task and attempt.
EXECUTION_LABEL = "run.googleapis.com/execution_name"
TASK_INDEX_LABEL = "run.googleapis.com/task_index"
TASK_ATTEMPT_LABEL = "run.googleapis.com/task_attempt"
BUILD_RESOURCE_TYPE = "build"
BUILD_LOG = "cloudbuild"
CONTAINER_LOG = "run.googleapis.com%2Fstderr"
SYSTEM_LOG = "run.googleapis.com%2Fvarlog%2Fsystem"

Severity = log_severity_pb2.LogSeverity


@dataclass(frozen=True)
class LogRow:
    """One entry before it becomes a LogEntry (filtering and paging use only these)."""

    timestamp: datetime
    insert_id: str
    log_name: str
    severity: int
    text: str
    labels: dict[str, str]  # the resource's
    resource_type: str = RESOURCE_TYPE
    entry_labels: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Where the entry sorts: by time, then insert id (the time is fixed-width); page
        tokens hold it."""
        return f"{self.timestamp.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%f} {self.insert_id}"

    def entry(self) -> LogEntry:
        return LogEntry(
            log_name=self.log_name,
            resource=monitored_resource_pb2.MonitoredResource(
                type=self.resource_type, labels=self.labels
            ),
            text_payload=self.text,
            timestamp=self.timestamp,
            receive_timestamp=self.timestamp,
            severity=self.severity,
            insert_id=self.insert_id,
            labels=self.entry_labels,
        )


def revision_labels(name: ServiceName, revision_id: str) -> dict[str, str]:
    """The `cloud_run_revision` resource labels of one of the service's revisions."""
    return {
        "project_id": name.project,
        "location": name.location,
        "service_name": name.service,
        "revision_name": revision_id,
        # Cloud Run names a service's configuration after the service.
        "configuration_name": name.service,
    }


def revision_row(name: ServiceName, labels: dict[str, str], line: LogLine) -> LogRow:
    """A revision's line: the container's under stderr, the platform's under varlog/system."""
    log_id = SYSTEM_LOG if line.system else CONTAINER_LOG
    return LogRow(
        timestamp=line.timestamp,
        insert_id=f"{line.number:012d}",
        log_name=f"projects/{name.project}/logs/{log_id}",
        severity=Severity.WARNING if line.system else Severity.DEFAULT,
        text=line.text,
        labels=labels,
    )


def build_row(labels: dict[str, str], line: BuildLogLine) -> LogRow:
    """A build's line, labelled with its step as Cloud Build labels it."""
    return LogRow(
        timestamp=line.timestamp,
        insert_id=f"{labels['build_id']}-{line.number:08d}",
        log_name=f"projects/{labels['project_id']}/logs/{BUILD_LOG}",
        severity=Severity.INFO,
        text=line.text,
        labels=labels,
        resource_type=BUILD_RESOURCE_TYPE,
        entry_labels={"build_step": line.step},
    )


def job_labels(job: str) -> dict[str, str]:
    """The `cloud_run_job` resource labels of a job (`projects/P/locations/L/jobs/J`)."""
    parts = job.split("/")
    return {"project_id": parts[1], "location": parts[3], "job_name": parts[5]}


def job_row(labels: dict[str, str], execution: str, line: TaskLogLine) -> LogRow:
    """A job execution's line, labelled with its execution, task and attempt."""
    log_id = SYSTEM_LOG if line.system else CONTAINER_LOG
    return LogRow(
        timestamp=line.timestamp,
        insert_id=f"{execution}-{line.number:012d}",
        log_name=f"projects/{labels['project_id']}/logs/{log_id}",
        severity=Severity.WARNING if line.system else Severity.DEFAULT,
        text=line.text,
        labels=labels,
        resource_type=JOB_RESOURCE_TYPE,
        entry_labels={
            EXECUTION_LABEL: execution,
            TASK_INDEX_LABEL: str(line.task_index),
            TASK_ATTEMPT_LABEL: str(line.task_attempt),
        },
    )
