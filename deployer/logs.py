"""Logs: one JSON object per line on Cloud Run and Cloud Functions, plain text elsewhere.

Cloud Logging turns each JSON line a container writes into a structured entry:
`severity` sets the level, `message` the text, `time` the timestamp, and every
other field lands in `jsonPayload` (here `logger`, `deploy_id`, `environment`,
`stage` ...), so a deploy's lines can be found by its id.

Which format: `DEPLOYER_LOG_FORMAT` (`json` or `text`) wins; without it, JSON
when running on Cloud Run or Cloud Functions (`K_SERVICE` or `CLOUD_RUN_JOB`
set), text otherwise. `DEPLOYER_LOG_LEVEL` overrides the level (INFO for JSON,
WARNING for text: the terminal already shows the stages).

Both formats pass every line through `redact`: the value of any environment
variable whose name looks secret never reaches a log, whatever logged it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from deployer.pipeline.events import (
    AwaitingApproval,
    DeployFinished,
    Event,
    Noted,
    StageFinished,
    StageProgressed,
    StageStarted,
)
from deployer.pipeline.record import Outcome, State

FORMAT_ENV = "DEPLOYER_LOG_FORMAT"
LEVEL_ENV = "DEPLOYER_LOG_LEVEL"
REDACTED = "[redacted]"

_SECRET_NAME = re.compile(
    r"(KEY|SECRET|TOKEN|PASSWORD|PASSWD|PASSPHRASE|CREDENTIALS?|PRIVATE|SIGNING|AUTH)$",
    re.IGNORECASE,
)
_DEPLOYER_SECRET = re.compile(r"SECRET|KEY|TOKEN|SIGNING|PASSWORD", re.IGNORECASE)
# Shorter values are too common ("true", "8080") to hide without hiding everything else too.
_MIN_SECRET_LENGTH = 6
# `scheme://user:password@host`: the password part of a URL.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)", re.IGNORECASE)

# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}

pipeline_log = logging.getLogger("deployer.pipeline")


def looks_secret(name: str) -> bool:
    """Whether an environment variable's name says it holds a secret (…KEY, …TOKEN, DEPLOYER_…SECRET)."""
    if _SECRET_NAME.search(name):
        return True
    # The deployer's own settings: anything signing- or secret-like anywhere in the name.
    return name.upper().startswith("DEPLOYER_") and _DEPLOYER_SECRET.search(name) is not None


def redact(text: str, environ: Mapping[str, str] | None = None) -> str:
    """`text` with secret-looking env var values and URL passwords replaced by [redacted]."""
    environ = os.environ if environ is None else environ
    values = {
        value
        for name, value in environ.items()
        if looks_secret(name) and len(value) >= _MIN_SECRET_LENGTH
    }
    # Longest first, so a secret containing another one is hidden whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields Cloud Logging reads."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            # Error Reporting finds a stack trace at the end of `message`.
            message += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            message += "\n" + self.formatStack(record.stack_info)
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, record.levelname),
            "message": redact(message),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
        }
        for key, value in _extras(record).items():
            if key not in entry and value not in ("", None):
                entry[key] = redact(value) if isinstance(value, str) else value
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`LEVEL logger: message [key=value ...]`, redacted like the JSON form."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        return redact(f"{text} [{extras}]" if extras else text)


def wants_json(environ: Mapping[str, str] | None = None) -> bool:
    """JSON when asked (`DEPLOYER_LOG_FORMAT=json`) or when running on Cloud Run / Functions."""
    environ = os.environ if environ is None else environ
    chosen = environ.get(FORMAT_ENV, "").strip().lower()
    if chosen in ("json", "text"):
        return chosen == "json"
    return bool(environ.get("K_SERVICE") or environ.get("CLOUD_RUN_JOB"))


def configure(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> None:
    """Set up the root logger once, replacing any handlers it had."""
    environ = os.environ if environ is None else environ
    json_lines = wants_json(environ)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = environ.get(LEVEL_ENV, "").strip().upper()
    default = logging.INFO if json_lines else logging.WARNING
    root.setLevel(level if level in logging.getLevelNamesMapping() else default)


def log_events(event: Event) -> None:
    """A pipeline listener writing stage starts and ends to the `deployer.pipeline` log."""
    record = event.record
    fields: dict[str, Any] = {
        "deploy_id": record.id,
        "environment": record.environment,
        "service": record.service,
        "kind": record.kind,
    }
    if isinstance(event, StageStarted):
        pipeline_log.info(
            "%s %s: %s started",
            record.kind,
            record.id,
            event.stage,
            extra={**fields, "stage": str(event.stage)},
        )
    elif isinstance(event, StageProgressed):
        pipeline_log.debug(
            "%s %s: %s: %s",
            record.kind,
            record.id,
            event.stage,
            event.message,
            extra={**fields, "stage": str(event.stage), "link": event.link},
        )
    elif isinstance(event, StageFinished):
        result = event.result
        ok = result.outcome == Outcome.SUCCEEDED
        pipeline_log.log(
            logging.INFO if ok else logging.ERROR,
            "%s %s: %s %s in %.1fs: %s",
            record.kind,
            record.id,
            result.stage,
            result.outcome,
            result.duration,
            result.summary,
            extra={
                **fields,
                "stage": str(result.stage),
                "outcome": str(result.outcome),
                "duration_s": round(result.duration, 3),
                "link": result.link,
            },
        )
    elif isinstance(event, Noted):
        pipeline_log.warning(
            "%s %s: %s", record.kind, record.id, event.text, extra={**fields, "note": event.text}
        )
    elif isinstance(event, AwaitingApproval):
        pipeline_log.info(
            "%s %s: awaiting %d approval(s) until %s",
            record.kind,
            record.id,
            record.approval_required,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.approval_due_at or 0)),
            extra={**fields, "state": str(record.state)},
        )
    elif isinstance(event, DeployFinished):
        ok = record.state == State.SUCCEEDED
        # A dry run keeps its state (succeeded: preflight passed) for scripts; its message
        # says that nothing was changed instead.
        how = "passed preflight" if ok and event.dry_run else str(record.state)
        pipeline_log.log(
            logging.INFO if ok else logging.ERROR,
            "%s %s of %s ended: %s%s%s",
            record.kind,
            record.id,
            record.environment,
            how,
            f" ({record.error})" if record.error and not ok else "",
            "; dry run: nothing was changed" if event.dry_run else "",
            extra={
                **fields,
                "state": str(record.state),
                "commit": record.commit or "",
                **({"dry_run": True} if event.dry_run else {}),
            },
        )
