"""Cloud Logging v2 in the sandbox: Cloud Run revisions' and Cloud Build builds' logs, read-only.

    google.logging.v2.LoggingServiceV2/ListLogEntries
        resource_names ["projects/P", ...]  -> the revisions RunState holds and the builds
                                               CloudBuild ran in those projects
        filter (a conjunction, below)       -> their lines, from RevisionProcesses.logs()
                                               and CloudBuild.project_logs()
        order_by "timestamp asc" | "timestamp desc", page_size (default 50, at most 1000),
        page_token (opaque, bound to the request that made it)

What an entry looks like, as Cloud Run writes it (resource type `cloud_run_revision`,
labels project_id, location, service_name, revision_name, configuration_name):

- a line the container wrote: `textPayload`, no severity (DEFAULT), log
  `projects/P/logs/run.googleapis.com%2Fstderr`. A sandbox revision's stdout and
  stderr are one pipe, so every container line is filed under stderr, where Python
  writes tracebacks, pydantic errors and uvicorn's log (Cloud Run files stdout
  lines under `run.googleapis.com%2Fstdout`);
- the platform's own line ("Container called exit(1)."): severity WARNING, log
  `projects/P/logs/run.googleapis.com%2Fvarlog%2Fsystem`.

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
build_id}`, `labels.KEY` (the entry's own labels: build_step), `logName` (= and !=),
`severity` (=, !=, <, <=, >, >=, by name or number), `timestamp` (<, <=, >, >=, = with
RFC 3339 values) and `textPayload` (= exact, `:` contains, `=~` regular expression). A
label the entry lacks equals nothing (so `!=` holds). Anything else the Logging query
language has (OR, NOT, parentheses, other fields) is INVALID_ARGUMENT saying so, never
silently ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from google.api import monitored_resource_pb2
from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
from google.logging.type import log_severity_pb2

from deployer.sandbox.build_runner import BuildLogLine
from deployer.sandbox.cloud_build import CloudBuild
from deployer.sandbox.revision_processes import LogLine, RevisionProcesses
from deployer.sandbox.rpc import invalid, service, unary
from deployer.sandbox.run_names import ServiceName
from deployer.sandbox.run_state import RunState

SERVICE = "google.logging.v2.LoggingServiceV2"
RESOURCE_TYPE = "cloud_run_revision"
BUILD_RESOURCE_TYPE = "build"
BUILD_LOG = "cloudbuild"
CONTAINER_LOG = "run.googleapis.com%2Fstderr"
SYSTEM_LOG = "run.googleapis.com%2Fvarlog%2Fsystem"
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_RESOURCE_NAMES = 100
MAX_FILTER_CHARS = 20_000

Severity = log_severity_pb2.LogSeverity
_SEVERITIES: dict[str, int] = dict(Severity.items())
_LABELS = (
    "project_id",
    "location",
    "service_name",
    "revision_name",
    "configuration_name",
    "build_id",
)
_SUPPORTED = (
    "resource.type, resource.labels.{"
    + ",".join(_LABELS)
    + "}, labels.KEY, logName, severity, timestamp and textPayload, joined by AND"
)
_PROJECT = re.compile(r"projects/([^/]+)")
_COMPARISON = re.compile(
    r"(?P<field>[A-Za-z_][\w.]*)\s*(?P<op>>=|<=|!=|=~|!~|=|>|<|:)\s*"
    r'(?P<value>"(?:[^"\\]|\\.)*"|[^\s()"]+)'
)
_UNSUPPORTED_WORDS = {"OR", "NOT"}


@dataclass(frozen=True)
class _Row:
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
    def key(self) -> tuple[datetime, str]:
        return self.timestamp, self.insert_id

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


@dataclass(frozen=True)
class _Clause:
    field: str
    op: str
    value: str
    test: Callable[[_Row], bool]


class CloudLogging:
    """`google.logging.v2.LoggingServiceV2` over revisions' and builds' logs. Thread-safe."""

    def __init__(self, processes: RevisionProcesses, state: RunState, builds: CloudBuild) -> None:
        self._processes = processes
        self._state = state
        self._builds = builds

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
        page_size = request.page_size or DEFAULT_PAGE_SIZE
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise invalid(
                f"page_size must be between 0 and {MAX_PAGE_SIZE}; got {request.page_size}."
            )
        fingerprint = _fingerprint(request)
        rows = [row for row in self._rows(projects, clauses) if all(c.test(row) for c in clauses)]
        rows.sort(key=lambda row: row.key, reverse=descending)
        if request.page_token:
            after = _read_token(request.page_token, fingerprint)
            rows = [row for row in rows if (row.key < after if descending else row.key > after)]
        page, more = rows[:page_size], len(rows) > page_size
        return ListLogEntriesResponse(
            entries=[row.entry() for row in page],
            next_page_token=_token(page[-1].key, fingerprint) if more else "",
        )

    def _rows(self, projects: list[str], clauses: list[_Clause]) -> list[_Row]:
        # Narrow by the type and label equalities first: only those resources' lines are built.
        wanted = {
            c.field: c.value
            for c in clauses
            if c.op == "=" and (c.field in _LABEL_FIELDS or c.field == "resource.type")
        }
        kind = wanted.pop("resource.type", None)

        def skipped(labels: dict[str, str]) -> bool:
            return any(labels.get(_LABEL_FIELDS[f]) != v for f, v in wanted.items())

        rows: list[_Row] = []
        for project in projects:
            if kind in (None, RESOURCE_TYPE):
                for name, revision_id in self._state.revisions_in_project(project):
                    labels = _labels(name, revision_id)
                    if not skipped(labels):
                        lines = self._processes.logs(revision_id)
                        rows.extend(_row(name, labels, line) for line in lines)
            if kind in (None, BUILD_RESOURCE_TYPE):
                for build_id, build_lines in self._builds.project_logs(project):
                    labels = {"project_id": project, "build_id": build_id}
                    if not skipped(labels):
                        rows.extend(_build_row(labels, line) for line in build_lines)
        return rows


_LABEL_FIELDS = {f"resource.labels.{label}": label for label in _LABELS}


def _labels(name: ServiceName, revision_id: str) -> dict[str, str]:
    return {
        "project_id": name.project,
        "location": name.location,
        "service_name": name.service,
        "revision_name": revision_id,
        # Cloud Run names a service's configuration after the service.
        "configuration_name": name.service,
    }


def _row(name: ServiceName, labels: dict[str, str], line: LogLine) -> _Row:
    log_id = SYSTEM_LOG if line.system else CONTAINER_LOG
    return _Row(
        timestamp=line.timestamp,
        insert_id=f"{line.number:012d}",
        log_name=f"projects/{name.project}/logs/{log_id}",
        severity=Severity.WARNING if line.system else Severity.DEFAULT,
        text=line.text,
        labels=labels,
    )


def _build_row(labels: dict[str, str], line: BuildLogLine) -> _Row:
    return _Row(
        timestamp=line.timestamp,
        insert_id=f"{labels['build_id']}-{line.number:08d}",
        log_name=f"projects/{labels['project_id']}/logs/{BUILD_LOG}",
        severity=Severity.INFO,
        text=line.text,
        labels=labels,
        resource_type=BUILD_RESOURCE_TYPE,
        entry_labels={"build_step": line.step},
    )


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


def _fingerprint(request: ListLogEntriesRequest) -> str:
    """Ties a page token to the request that made it (the API wants the same parameters)."""
    identity = json.dumps([list(request.resource_names), request.filter, request.order_by])
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def _token(after: tuple[datetime, str], fingerprint: str) -> str:
    payload = json.dumps({"after": [after[0].isoformat(), after[1]], "q": fingerprint})
    return base64.urlsafe_b64encode(payload.encode()).decode()


def _read_token(token: str, fingerprint: str) -> tuple[datetime, str]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token.encode()))
        stamp, insert_id = payload["after"]
        after = (datetime.fromisoformat(stamp), str(insert_id))
        same = payload["q"] == fingerprint
    except (binascii.Error, ValueError, TypeError, KeyError):
        raise invalid(f"page_token: '{token}' is not a page token of this API.") from None
    if not same:
        raise invalid(
            "page_token: the token was issued for a request with another filter, order_by or "
            "resource_names; repeat the parameters of the request that returned it."
        )
    return after


# --- filters ---------------------------------------------------------------------------


def parse_filter(text: str) -> list[_Clause]:
    """The comparisons of a conjunctive Logging filter; INVALID_ARGUMENT for the rest."""
    if len(text) > MAX_FILTER_CHARS:
        raise invalid(f"filter: longer than {MAX_FILTER_CHARS} characters.")
    clauses: list[_Clause] = []
    position = 0
    expect_comparison = True
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            break
        word = re.match(r"[A-Za-z]+\b", text[position:])
        if word and word.group(0) == "AND":
            if expect_comparison:
                raise invalid(f"filter: misplaced AND at character {position} in: {text}")
            position += 3
            expect_comparison = True
            continue
        if (word and word.group(0) in _UNSUPPORTED_WORDS) or text[position] in "()-":
            shown = word.group(0) if word else text[position]
            raise invalid(
                f"filter: '{shown}' is not supported by the sandbox's Cloud Logging, which "
                f"understands only comparisons of {_SUPPORTED}. Filter: {text}"
            )
        match = _COMPARISON.match(text, position)
        if match is None:
            raise invalid(
                f"filter: cannot read a comparison at character {position} "
                f"('{text[position : position + 30]}'); the sandbox's Cloud Logging understands "
                f"comparisons of {_SUPPORTED}. Filter: {text}"
            )
        clauses.append(_clause(match.group("field"), match.group("op"), _unquote(match["value"])))
        position = match.end()
        expect_comparison = False
    if clauses and expect_comparison:
        raise invalid(f"filter: ends with AND: {text}")
    return clauses


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _unsupported(field: str, op: str, allowed: str) -> Any:
    return invalid(
        f"filter: the sandbox's Cloud Logging supports {field} only with {allowed}, not '{op}'."
    )


def _clause(field: str, op: str, value: str) -> _Clause:
    labels = field in _LABEL_FIELDS or _ENTRY_LABEL.fullmatch(field) is not None
    if field == "resource.type" or labels or field == "logName":
        if op not in ("=", "!="):
            raise _unsupported(field, op, "= and !=")
        get = _getter(field)

        def equal(got: str | None, wanted: str) -> bool:
            if got is None:  # a label the entry lacks
                return False
            return unquote(got) == unquote(wanted) if field == "logName" else got == wanted

        if op == "=":
            return _Clause(field, op, value, lambda row: equal(get(row), value))
        return _Clause(field, op, value, lambda row: not equal(get(row), value))
    if field == "severity":
        level = _severity(value)
        return _Clause(field, op, value, _ordered(op, lambda row: row.severity, level, field))
    if field == "timestamp":
        try:
            stamp = datetime.fromisoformat(value)
        except ValueError:
            raise invalid(
                f"filter: timestamp value '{value}' is not an RFC 3339 time "
                '(for example "2024-05-01T12:00:00Z").'
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        return _Clause(field, op, value, _ordered(op, lambda row: row.timestamp, stamp, field))
    if field == "textPayload":
        if op == "=":
            return _Clause(field, op, value, lambda row: row.text == value)
        if op == ":":
            needle = value.lower()
            return _Clause(field, op, value, lambda row: needle in row.text.lower())
        if op == "=~":
            try:
                pattern = re.compile(value)
            except re.error as error:
                raise invalid(f"filter: invalid regular expression '{value}': {error}") from None
            return _Clause(field, op, value, lambda row: pattern.search(row.text) is not None)
        raise _unsupported(field, op, "=, : and =~")
    raise invalid(
        f"filter: the field '{field}' is not supported by the sandbox's Cloud Logging; "
        f"it understands comparisons of {_SUPPORTED}."
    )


_ENTRY_LABEL = re.compile(r"labels\.(\w+)")


def _getter(field: str) -> Callable[[_Row], str | None]:
    if field == "resource.type":
        return lambda row: row.resource_type
    if field == "logName":
        return lambda row: row.log_name
    entry_label = _ENTRY_LABEL.fullmatch(field)
    if entry_label is not None:
        key = entry_label.group(1)
        return lambda row: row.entry_labels.get(key)
    label = _LABEL_FIELDS[field]
    return lambda row: row.labels.get(label)


def _severity(value: str) -> int:
    if value.isdigit():
        return int(value)
    level = _SEVERITIES.get(value.upper())
    if level is None:
        raise invalid(f"filter: unknown severity '{value}'; use one of {', '.join(_SEVERITIES)}.")
    return level


def _ordered(op: str, get: Callable[[_Row], Any], bound: Any, field: str) -> Callable[[_Row], bool]:
    tests: dict[str, Callable[[Any], bool]] = {
        "=": lambda got: bool(got == bound),
        "!=": lambda got: bool(got != bound),
        "<": lambda got: bool(got < bound),
        "<=": lambda got: bool(got <= bound),
        ">": lambda got: bool(got > bound),
        ">=": lambda got: bool(got >= bound),
    }
    test = tests.get(op)
    if test is None:
        raise _unsupported(field, op, "=, !=, <, <=, > and >=")
    return lambda row: test(get(row))
