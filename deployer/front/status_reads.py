"""`/deploy status` inside Slack's 3 seconds, and noticing deploys whose worker was lost.

Each environment's status is read in parallel (Cloud Run, the health check, the store);
whatever is not back within `STATUS_WAIT` is shown as "no answer in time" rather than
holding the answer past Slack's deadline. Reading it is also when a deploy whose lease
ran out (its worker died) is noticed and resumed, as a cancel click does.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from deployer.engine import EnvironmentStatus, bare_status
from deployer.errors import DeployerError
from deployer.front.context import FrontContext
from deployer.front.intake import revive
from deployer.pipeline.record import DeployRecord

STATUS_WAIT = 2.4  # seconds: what is left of Slack's 3 s after the round trips


def notice_lost(context: FrontContext, record: DeployRecord) -> bool:
    """Resume `record` now when its worker was lost (its lease ran out); whether it is."""
    now = time.time()
    for lock in context.store.locks(record.environment):
        if lock.holder == record.id and lock.kind == "deploy" and lock.expired(now):
            return revive(context, record, lock)
    return False


class StatusReads:
    """Bounded status reads over one front context, on a small pool of threads."""

    def __init__(self, context: FrontContext) -> None:
        self.context = context
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="status")

    def read(self, environment: str | None) -> list[EnvironmentStatus]:
        """Each environment's status (or just `environment`'s); what is not back in time
        says so. A deploy whose worker was lost is noticed here too, and resumed."""
        engine = self.context.engine
        names = [environment] if environment else sorted(self.context.config.environments)
        for name in names:
            for record in self.context.store.history(name, 3):
                if not record.state.finished:
                    notice_lost(self.context, record)
        futures: list[Future[list[EnvironmentStatus]]] = [
            self._pool.submit(engine.status, name) for name in names
        ]
        deadline = time.monotonic() + STATUS_WAIT
        statuses: list[EnvironmentStatus] = []
        for name, future in zip(names, futures, strict=True):
            try:
                statuses += future.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                statuses.append(bare_status(engine.config, name, "no answer in time"))
            except DeployerError as error:
                statuses.append(bare_status(engine.config, name, str(error)))
        return statuses
