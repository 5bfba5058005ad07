"""Cloud Logging v2: the last lines a Cloud Run revision's containers wrote.

Cloud Run's failure message for a revision that never listened says only that
("... Logs for this revision might contain more information. Logs URL: ..."); the
container's own words (a traceback, pydantic's "mongodb_url Field required") are
in Cloud Logging under resource type `cloud_run_revision`. `RevisionLogs.tail`
reads them so the deploy thread can quote them.

Reading logs is a courtesy to the reader of a failure: any API error gives no
lines (the error is logged), never an exception. Lines are returned as the
container wrote them; this module logs none of them.
"""

from __future__ import annotations

import datetime
import logging
import time
from typing import Any

from google.api_core import exceptions, retry
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.types import ListLogEntriesRequest, LogEntry

from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig

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


class RevisionLogs:
    """Reads a revision's recent log lines through `LoggingServiceV2Client`."""

    def __init__(self, client: LoggingServiceV2Client | None = None) -> None:
        self._client = client or google_client(LoggingServiceV2Client)

    def tail(
        self,
        service: ServiceConfig,
        revision: str,
        lines: int,
        timeout: float,
        since: datetime.datetime | None = None,
    ) -> list[str]:
        """The revision's last `lines` log lines, newest last; [] when they cannot be read.

        `since` (the revision's creation time) bounds the search, which keeps the
        query cheap on a project with a long log history.
        """
        if lines <= 0:
            return []
        query = revision_filter(service, revision)
        if since is not None:
            query += f' AND timestamp>="{_rfc3339(since)}"'
        request = ListLogEntriesRequest(
            resource_names=[f"projects/{service.project}"],
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
                "reading the logs of revision %s failed: %s: %s",
                revision,
                type(error).__name__,
                error.message,
            )
            return []
        except Exception as error:  # a courtesy read must never fail a deploy report
            log.warning("reading the logs of revision %s failed: %r", revision, error)
            return []
        texts = [_text(entry) for entry in reversed(page)]
        return [text for text in texts if text]


def _text(entry: LogEntry) -> str:
    """An entry's text: its text payload, or a structured entry's `message`."""
    text: str = entry.text_payload
    if not text and "json_payload" in entry:
        payload: Any = entry.json_payload
        message = payload.get("message") if hasattr(payload, "get") else None
        text = message if isinstance(message, str) else ""
    text = text.rstrip("\n")
    if len(text) > _MAX_LINE_CHARS:
        text = text[: _MAX_LINE_CHARS - 1] + "…"
    return text


def _rfc3339(moment: datetime.datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
