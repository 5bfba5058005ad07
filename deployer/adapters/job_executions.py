"""What a Cloud Run job execution says about itself: whether it ended, how long it ran,
and how its task ended, read from Cloud Run's own last log line ("Container called
exit(1).", "Container terminated on signal 9."), which the Tasks API would otherwise give.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from google.cloud import run_v2

EXIT = re.compile(r"Container called exit\((\d+)\)\.")
SIGNAL = re.compile(r"Container terminated on signal (\d+)\.")


def ended(execution: run_v2.Execution) -> bool:
    """Whether Cloud Run reports the execution completed (`completion_time` set)."""
    return bool(run_v2.Execution.pb(execution).HasField("completion_time"))


def created(execution: run_v2.Execution) -> datetime.datetime | None:
    moment: Any = execution.create_time
    return moment if isinstance(moment, datetime.datetime) and moment.year > 1970 else None


def elapsed(execution: run_v2.Execution) -> float:
    """Seconds the execution ran: start (else creation) to completion (else now)."""
    pb: Any = run_v2.Execution.pb(execution)
    start = pb.start_time if pb.HasField("start_time") else pb.create_time
    finish: datetime.datetime
    if pb.HasField("completion_time"):
        finish = pb.completion_time.ToDatetime(datetime.UTC)
    else:
        finish = datetime.datetime.now(datetime.UTC)
    began: datetime.datetime = start.ToDatetime(datetime.UTC)
    return max(0.0, (finish - began).total_seconds())


def ending(lines: tuple[str, ...], message: str) -> str:
    """How the task ended: "exited 1" from Cloud Run's own log line, else its message."""
    for line in reversed(lines):
        if found := EXIT.search(line):
            return f"exited {found.group(1)}"
        if found := SIGNAL.search(line):
            return f"was killed by signal {found.group(1)}"
    return f"failed ({message})" if message else "failed"


def short_name(name: str) -> str:
    return name.rsplit("/", 1)[-1]
