"""Whether a deploy record may start now, under its environment's deploy windows.

Every way a deploy starts asks here first, before anything is locked or built: the
terminal (`Engine.deploy`), chat (`/deploy`, Retry, Queue), GitHub releases, and the
queue when it hands the environment to its next waiter. Rollbacks always may.
A record carrying a break-glass passes, and keeps the rule it broke.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime

from deployer import deploy_windows
from deployer.config import Config
from deployer.deploy_windows import Closed
from deployer.errors import DeployerError
from deployer.pipeline.record import BreakGlass, DeployRecord


class WindowClosedError(DeployerError):
    """A deploy was asked for while its environment's deploy window is closed."""


def refusal(config: Config, record: DeployRecord, at: datetime | None = None) -> Closed | None:
    """What keeps `record` from starting at `at` (default: `deploy_windows.now()`), or None.

    A break-glass record is let through; the rule it breaks is written into it.
    """
    if record.kind != "deploy":
        return None  # rollbacks are never blocked: they are how a bad deploy is undone
    settings = config.environment(record.environment).windows
    if settings is None:
        return None
    closed = deploy_windows.check(settings.rules(), at or deploy_windows.now())
    if closed is None:
        return None
    if record.break_glass is not None:
        if not record.break_glass.window:
            record.break_glass = dataclasses.replace(record.break_glass, window=closed.rule)
        return None
    return closed


def break_glass(record: DeployRecord, by: str, reason: str) -> None:
    """Mark `record` as breaking glass, asked by `by` for `reason`."""
    record.break_glass = BreakGlass(by=by, reason=reason, at=time.time())


def closed_text(config: Config, record: DeployRecord) -> str | None:
    """`refusal` as the sentence people read (`deploy_windows.describe`), or None."""
    at = deploy_windows.now()
    closed = refusal(config, record, at)
    return None if closed is None else deploy_windows.describe(record.environment, closed, at)
