"""Who drains a thread's box: the name a drain claims it under, and claims that hold nothing.

outside a job     a random name: a claim holds until it runs out (`outbox.CLAIM`)
in a job task     `job:EXECUTION/TASK#ATTEMPT/random`: Cloud Run retries a task only
                  once its attempt's container has exited, so a claim of an earlier
                  attempt of the same task is void, and the retry drains at once
                  instead of waiting out a dead worker's claim
"""

from __future__ import annotations

import os
import secrets


def drainer_name() -> str:
    """A name of its own for one drain: in a Cloud Run job task, `job:EXECUTION/TASK#ATTEMPT/`
    before the random part, so that a retry of the task knows its dead attempt's claims.

    CLOUD_RUN_TASK_ATTEMPT is "the number of times this task has been retried", 0 first
    (cloud.google.com/run/docs/container-contract#jobs-env-vars).
    """
    token = secrets.token_hex(6)
    execution = os.environ.get("CLOUD_RUN_EXECUTION")
    if not execution:
        return token
    task = os.environ.get("CLOUD_RUN_TASK_INDEX", "0")
    return f"job:{execution}/{task}#{os.environ.get('CLOUD_RUN_TASK_ATTEMPT', '0')}/{token}"


def _task_attempt(drainer: str) -> tuple[str, int] | None:
    """(task, attempt) of a drainer named in a job task; None elsewhere."""
    if not drainer.startswith("job:"):
        return None
    task, _, attempt = drainer.rpartition("/")[0].rpartition("#")
    return (task, int(attempt)) if task and attempt.isdigit() else None


def dead_claim(drainer: str, me: str) -> bool:
    """Whether `drainer` was an earlier attempt of the job task `me` runs in: that attempt's
    container has exited (Cloud Run retries a task only then), so its claim holds nothing."""
    theirs, mine = _task_attempt(drainer), _task_attempt(me)
    return theirs is not None and mine is not None and theirs[0] == mine[0] and theirs[1] < mine[1]
