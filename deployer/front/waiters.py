"""Starting the deploy that waits first for a free environment, and telling the waits that ended.

Called by whoever frees an environment (a worker at its end, an unlock) and by
the sweep, which catches a release that did not (the pipeline's lock queue keeps the line).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from deployer.config import Config
from deployer.front.dispatch import Dispatcher
from deployer.front.messages import deploy_parent
from deployer.front.outbox import Outbox
from deployer.pipeline import lock_queue
from deployer.pipeline.record import DeployRecord
from deployer.store.protocol import Store

TELL_BUDGET = 2.0  # seconds to get a changed parent shown; the rest is the outbox's


@dataclass
class Waiters:
    config: Config
    store: Store
    outbox: Outbox
    dispatcher: Dispatcher
    # Whether to call Slack here (a worker, the sweep); never inside a request.
    send: bool = False

    def start_next(self, environment: str) -> DeployRecord | None:
        """Start the first deploy waiting for `environment` if it is free; the one started."""
        step = lock_queue.start_next(self.config, self.store, environment)
        for record in step.expired:
            self.tell(record)
        if step.started is None:
            return None
        self.tell(step.started)
        self.dispatcher.dispatch(step.started.id)
        return step.started

    def tell(self, record: DeployRecord) -> None:
        """Redraw `record`'s parent (its state changed); outside requests, send it too."""
        if not record.slack_channel:
            return
        self.outbox.parent(
            record.id, deploy_parent(record, time.time()), final=record.state.finished
        )
        if not self.send:
            return  # a worker or the sweep sends it
        try:
            self.outbox.drain(record.id, TELL_BUDGET)
        except Exception:  # the next drain sends it
            return
