"""Cloud Logging v2: the last lines a Cloud Run revision's containers, or a build's step, wrote.

Cloud Run's failure message for a revision that never listened says only that
("... Logs for this revision might contain more information. Logs URL: ..."); the
container's own words (a traceback, pydantic's "mongodb_url Field required") are
in Cloud Logging under resource type `cloud_run_revision`. `RevisionLogs.tail`
reads them so the deploy thread can quote them.

Cloud Build's failure detail says only which step exited non-zero; the step's own
words ("npm ERR! missing script: build", a Dockerfile error) are in its log, which
Cloud Build writes to Cloud Logging (`options.logging` CLOUD_LOGGING_ONLY or the
default; not GCS_ONLY or NONE) under resource type `build`, log `cloudbuild`, one
entry per line with the entry label `build_step` (`Step #1 - "build"`).
`BuildLogs.tail` reads them.

A Cloud Run job's tasks (a deploy hook's command) write to Cloud Logging under
resource type `cloud_run_job`, each entry labelled `run.googleapis.com/execution_name`;
`ExecutionLogs.tail` reads one execution's.

Reading logs is a courtesy to the reader of a failure: any API error gives no
lines (the error is logged), never an exception. Lines are returned redacted
(`deployer.redaction`: the known values a caller names, pydantic's input dumps,
credential shapes) before they are clipped, so a clipped line cannot keep part of a
secret; this module logs none of them.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable
from typing import Any

from google.api_core import exceptions, retry
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.types import ListLogEntriesRequest, LogEntry

from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig
from deployer.redaction import CLIPPED, redact

log = logging.getLogger(__name__)

_MAX_LINE_CHARS = 500  # one line of a chat message, not a whole minified payload
_MAX_LINES = 1000  # the API's page size limit


def revision_filter(service: ServiceConfig, revision: str) -> str:
    """The Logging filter for one revision's entries, as Cloud Run's Logs URL writes it."""
    return (
        'resource.type="cloud_run_revision"'
        f' AND resource.labels.service_name="{service.service}"'
        f' AND resource.labels.revision_name="{revision}"'
    )


def build_filter(service: ServiceConfig, build_id: str, step: str | None = None) -> str:
    """The Logging filter for one build's log lines, or one step's (its `build_step` label)."""
    query = (
        f'logName="projects/{service.project}/logs/cloudbuild"'
        ' AND resource.type="build"'
        f' AND resource.labels.build_id="{build_id}"'
    )
    if step is not None:
        query += f" AND labels.build_step={_quoted(step)}"
    return query


# Cloud Run files a job's lines under resource type `cloud_run_job` (labels project_id,
# location, job_name), each entry labelled with the execution, task and attempt that
# wrote it; this is the filter the console's logs link for an execution writes.
EXECUTION_LABEL = "run.googleapis.com/execution_name"


def execution_filter(service: ServiceConfig, job: str, execution: str) -> str:
    """The Logging filter for one job execution's entries."""
    return (
        'resource.type="cloud_run_job"'
        f' AND resource.labels.job_name="{job}"'
        f' AND resource.labels.location="{service.region}"'
        f" AND labels.{_quoted(EXECUTION_LABEL)}={_quoted(execution)}"
    )


class _LogReader:
    """The newest lines a Logging filter selects, read through `LoggingServiceV2Client`."""

    def __init__(self, client: LoggingServiceV2Client | None = None) -> None:
        self._client = client or google_client(LoggingServiceV2Client)

    def _newest(
        self,
        project: str,
        query: str,
        lines: int,
        timeout: float,
        since: datetime.datetime | None,
        what: str,
        known: Iterable[str],
    ) -> list[str]:
        """The texts of the newest `lines` entries, newest last, redacted of `known` values
        and credential shapes; [] (logged) on any error.

        `since` (when the revision or build was created) bounds the search, which keeps
        the query cheap on a project with a long log history.
        """
        if lines <= 0:
            return []
        if since is not None:
            query += f' AND timestamp>="{_rfc3339(since)}"'
        request = ListLogEntriesRequest(
            resource_names=[f"projects/{project}"],
            filter=query,
            order_by="timestamp desc",
            page_size=min(lines, _MAX_LINES),
        )
        timeout = max(0.5, timeout)
        # The client's default retries a transient error for 60 s; this read gets `timeout`.
        bounded = retry.Retry(
            predicate=retry.if_transient_error,
            initial=0.1,
            maximum=1.0,
            multiplier=1.3,
            timeout=timeout,
        )
        started = time.monotonic()
        try:
            response = self._client.list_log_entries(
                request=request, retry=bounded, timeout=timeout
            )
            page: list[LogEntry] = []
            # Stop at `lines`: iterating further would fetch older pages.
            for entry in response:
                page.append(entry)
                if len(page) >= lines or time.monotonic() - started > timeout:
                    break
        except exceptions.GoogleAPICallError as error:
            log.warning(
                "reading the logs of %s failed: %s: %s",
                what,
                type(error).__name__,
                error.message,
            )
            return []
        except Exception as error:  # a courtesy read must never fail a deploy report
            log.warning("reading the logs of %s failed: %r", what, error)
            return []
        texts = [text for text in (_text(entry) for entry in reversed(page)) if text]
        if not texts:
            return []
        # Redacted as one text: a private key block spans many entries.
        redacted = redact("\n".join(texts), known)
        return [_clipped(text) for text in redacted.split("\n")]


class RevisionLogs(_LogReader):
    """Reads a revision's recent log lines through `LoggingServiceV2Client`."""

    def tail(
        self,
        service: ServiceConfig,
        revision: str,
        lines: int,
        timeout: float,
        since: datetime.datetime | None = None,
        known: Iterable[str] = (),
    ) -> list[str]:
        """The revision's last `lines` log lines, newest last, redacted (`known`: values
        such as the revision's environment); [] when they cannot be read.

        `since` is the revision's creation time.
        """
        query = revision_filter(service, revision)
        what = f"revision {revision}"
        return self._newest(service.project, query, lines, timeout, since, what, known)


class BuildLogs(_LogReader):
    """Reads the last lines of a build's log, or of one of its steps.

    A build's log holds whatever its steps printed, secrets included when a step
    echoes one (`set -x`, a verbose tool); Cloud Build shows it as it is to anyone
    allowed to read the project's logs, but the lines quoted from it reach the deploy
    thread, the terminal and the store too, so they are redacted as a revision's are.
    """

    def tail(
        self,
        service: ServiceConfig,
        build_id: str,
        lines: int,
        timeout: float,
        step: str | None = None,
        since: datetime.datetime | None = None,
        known: Iterable[str] = (),
    ) -> list[str]:
        """The build's last `lines` log lines, newest last, redacted (`known`: values to
        hide besides credential shapes); [] when they cannot be read.

        With `step` (a `build_step` label, `Step #1 - "build"`), only that step's lines,
        without the `Step #1 - "build": ` prefix Cloud Build puts before each one.
        `since` is the build's creation time.
        """
        query = build_filter(service, build_id, step)
        what = f"build {build_id}"
        texts = self._newest(service.project, query, lines, timeout, since, what, known)
        if step is None:
            return texts
        prefix = f"{step}: "
        return [text.removeprefix(prefix) for text in texts]


class ExecutionLogs(_LogReader):
    """Reads the last lines a Cloud Run job execution's tasks wrote (a hook's output)."""

    def tail(
        self,
        service: ServiceConfig,
        job: str,
        execution: str,
        lines: int,
        timeout: float,
        since: datetime.datetime | None = None,
        known: Iterable[str] = (),
    ) -> list[str]:
        """The execution's last `lines` log lines, newest last, redacted (`known`: the
        values the hook was given); [] when they cannot be read. `since`: its creation."""
        query = execution_filter(service, job, execution)
        what = f"execution {execution}"
        return self._newest(service.project, query, lines, timeout, since, what, known)


def _quoted(value: str) -> str:
    """`value` as a quoted string of the Logging query language."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(entry: LogEntry) -> str:
    """An entry's text: its text payload, or a structured entry's `message`."""
    text: str = entry.text_payload
    if not text and "json_payload" in entry:
        payload: Any = entry.json_payload
        message = payload.get("message") if hasattr(payload, "get") else None
        text = message if isinstance(message, str) else ""
    return text.rstrip("\n")


def _clipped(text: str) -> str:
    if len(text) > _MAX_LINE_CHARS:
        text = text[: _MAX_LINE_CHARS - 1] + CLIPPED
    return text


def _rfc3339(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
