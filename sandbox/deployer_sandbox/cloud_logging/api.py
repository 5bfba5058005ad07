"""Cloud Logging v2 in the sandbox: Cloud Run revisions', job executions' and Cloud Build
builds' logs, read-only.

    google.logging.v2.LoggingServiceV2/ListLogEntries
        resource_names ["projects/P", ...]  -> the revisions RunState holds, the job
                                               executions RunJobs ran and the builds
                                               CloudBuild ran in those projects
        filter (a conjunction, below)       -> their lines, from RevisionProcesses.logs()
                                               and CloudBuild.project_logs()
        order_by "timestamp asc" | "timestamp desc", page_size (default 50, at most 1000),
        page_token (opaque, bound to the request that made it, resuming after the last
        entry returned)

What an entry looks like, as Cloud Run writes it (resource type `cloud_run_revision`,
labels project_id, location, service_name, revision_name, configuration_name):

- a line the container wrote: `textPayload`, no severity (DEFAULT), log
  `projects/P/logs/run.googleapis.com%2Fstderr`. A sandbox revision's stdout and
  stderr are one pipe, so every container line is filed under stderr, where Python
  writes tracebacks, pydantic errors and uvicorn's log (Cloud Run files stdout
  lines under `run.googleapis.com%2Fstdout`);
- the platform's own line ("Container called exit(1)."): severity WARNING, log
  `projects/P/logs/run.googleapis.com%2Fvarlog%2Fsystem`.

A job execution's lines (a task's output and Cloud Run's own "Container called
exit(1).") are filed the same way under resource type `cloud_run_job`, labels
project_id, location and job_name, each entry labelled `run.googleapis.com/execution_name`,
`run.googleapis.com/task_index` and `run.googleapis.com/task_attempt`; the filter the
console's logs link for an execution writes selects them:
`resource.type="cloud_run_job" resource.labels.job_name="J"
labels."run.googleapis.com/execution_name"="J-abcde"`.

And as Cloud Build writes a build's log with `options.logging: CLOUD_LOGGING_ONLY`
(or CLOUD_LOGGING / the default): resource type `build`, labels project_id and
build_id (build_trigger_id, set on builds a trigger started, is not modelled: the
sandbox has no triggers), log `projects/P/logs/cloudbuild`, severity INFO, the line
in `textPayload` with its step's prefix (`Step #1 - "build": npm ERR! ...`), and the
entry label `build_step`: `Step #1 - "build"` (`Step #1` for a step without id), or
`MAIN` for the build's own lines (fetching the source, pushing, `DONE`, `ERROR: ...`).

Timestamps are when the sandbox read (or the build runner wrote) the line. Entries
live as long as the sandbox (Cloud Logging keeps them 30 days); a revision's go with
its service when it is deleted.

Filters: comparisons joined by `AND` or by white space, over `resource.type`,
`resource.labels.{project_id,location,service_name,revision_name,configuration_name,
build_id,job_name}`, `labels.KEY` or `labels."KEY"` (the entry's own labels: build_step,
run.googleapis.com/execution_name), `logName` (= and !=),
`severity` (=, !=, <, <=, >, >=, by name or number), `timestamp` (<, <=, >, >=, = with
RFC 3339 values) and `textPayload` (= exact, `:` contains, `=~` regular expression). A
label the entry lacks equals nothing (so `!=` holds). Anything else the Logging query
language has (OR, NOT, parentheses, other fields) is INVALID_ARGUMENT saying so, never
silently ignored.

The entries are built in `cloud_logging.sources` and the filters read in
`cloud_logging.filters`.
"""

from __future__ import annotations

import re
from typing import Any

from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse

from deployer_sandbox.cloud_build.api import CloudBuild
from deployer_sandbox.cloud_logging.filters import LABEL_FIELDS, Clause, parse_filter
from deployer_sandbox.cloud_logging.sources import (
    BUILD_RESOURCE_TYPE,
    JOB_RESOURCE_TYPE,
    RESOURCE_TYPE,
    LogRow,
    build_row,
    job_labels,
    job_row,
    revision_labels,
    revision_row,
)
from deployer_sandbox.cloud_run.jobs import RunJobs
from deployer_sandbox.cloud_run.processes import RevisionProcesses
from deployer_sandbox.cloud_run.state import RunState
from deployer_sandbox.common.paging import Query, page
from deployer_sandbox.common.rpc import invalid, service, unary

SERVICE = "google.logging.v2.LoggingServiceV2"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_RESOURCE_NAMES = 100

_PROJECT = re.compile(r"projects/([^/]+)")


class CloudLogging:
    """`google.logging.v2.LoggingServiceV2` over revisions' and builds' logs. Thread-safe."""

    def __init__(
        self,
        processes: RevisionProcesses,
        state: RunState,
        builds: CloudBuild,
        jobs: RunJobs | None = None,
    ) -> None:
        self._processes = processes
        self._state = state
        self._builds = builds
        self._jobs = jobs

    def handler(self) -> Any:
        return service(
            SERVICE,
            {
                "ListLogEntries": unary(self._list, ListLogEntriesRequest, ListLogEntriesResponse),
            },
        )

    def _list(self, request: ListLogEntriesRequest) -> ListLogEntriesResponse:
        projects = _projects(list(request.resource_names))
        clauses = parse_filter(request.filter)
        descending = _descending(request.order_by)
        rows = [row for row in self._rows(projects, clauses) if all(c.test(row) for c in clauses)]
        rows.sort(key=lambda row: row.key, reverse=descending)
        found, following = page(
            rows,
            request.page_size,
            request.page_token,
            default_size=DEFAULT_PAGE_SIZE,
            max_size=MAX_PAGE_SIZE,
            invalid_token="page_token: '{token}' is not a page token of this API.",
            # The API wants the parameters of the request that returned the token.
            query=Query(
                [list(request.resource_names), request.filter, request.order_by],
                mismatch=(
                    "page_token: the token was issued for a request with another filter, "
                    "order_by or resource_names; repeat the parameters of the request that "
                    "returned it."
                ),
            ),
            # Entries arrive while a reader pages: a token resumes after the last one read.
            position=lambda row: row.key,
            descending=descending,
        )
        return ListLogEntriesResponse(
            entries=[row.entry() for row in found], next_page_token=following
        )

    def _rows(self, projects: list[str], clauses: list[Clause]) -> list[LogRow]:
        # Narrow by the type and label equalities first: only those resources' lines are built.
        wanted = {
            c.field: c.value
            for c in clauses
            if c.op == "=" and (c.field in LABEL_FIELDS or c.field == "resource.type")
        }
        kind = wanted.pop("resource.type", None)

        def skipped(labels: dict[str, str]) -> bool:
            return any(labels.get(LABEL_FIELDS[f]) != v for f, v in wanted.items())

        rows: list[LogRow] = []
        for project in projects:
            if kind in (None, RESOURCE_TYPE):
                for name, revision_id in self._state.revisions_in_project(project):
                    labels = revision_labels(name, revision_id)
                    if not skipped(labels):
                        lines = self._processes.logs(revision_id)
                        rows.extend(revision_row(name, labels, line) for line in lines)
            if kind in (None, JOB_RESOURCE_TYPE) and self._jobs is not None:
                for job, execution, task_lines in self._jobs.project_logs(project):
                    labels = job_labels(job)
                    if not skipped(labels):
                        rows.extend(job_row(labels, execution, line) for line in task_lines)
            if kind in (None, BUILD_RESOURCE_TYPE):
                for build_id, build_lines in self._builds.project_logs(project):
                    labels = {"project_id": project, "build_id": build_id}
                    if not skipped(labels):
                        rows.extend(build_row(labels, line) for line in build_lines)
        return rows


# --- request fields --------------------------------------------------------------------


def _projects(resource_names: list[str]) -> list[str]:
    if not resource_names:
        raise invalid("resource_names: at least one parent resource is required.")
    if len(resource_names) > MAX_RESOURCE_NAMES:
        raise invalid(f"resource_names: at most {MAX_RESOURCE_NAMES} resources may be listed.")
    projects: list[str] = []
    for name in resource_names:
        match = _PROJECT.fullmatch(name)
        if match is None:
            raise invalid(
                f"resource_names: '{name}' is not supported by the sandbox's Cloud Logging; "
                "use projects/[PROJECT_ID] (organizations, folders, billing accounts and log "
                "views are not modelled)."
            )
        if match.group(1) not in projects:
            projects.append(match.group(1))
    return projects


def _descending(order_by: str) -> bool:
    normalized = " ".join(order_by.lower().split())
    if normalized in ("", "timestamp asc", "timestamp"):
        return False
    if normalized == "timestamp desc":
        return True
    raise invalid(
        f'order_by: \'{order_by}\' is not supported; use "timestamp asc" or "timestamp desc".'
    )
