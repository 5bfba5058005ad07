"""Handing a saved deploy to whatever runs it (`DEPLOYER_DISPATCH`).

    inline                                   a bounded pool of threads in this process
                                             (`deployer serve`, local runs)
    projects/P/locations/R/jobs/J            a Cloud Run job execution per deploy, running
                                             `deployer worker DEPLOY_ID` (production)

The front answers Slack within 3 s, and after a Cloud Function has answered its
CPU is throttled to nearly nothing: the deploy must run elsewhere. `dispatch`
returns as soon as the work is handed over. When it cannot be handed over, the
record is marked failed with the reason and its Slack thread says so, so nothing
is left "running" that never started.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from deployer.adapters.cloud_run_jobs import CloudRunJobs, JobRefused
from deployer.config import Config
from deployer.front.outbox import Outbox
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.record import State
from deployer.store.protocol import Store

log = logging.getLogger(__name__)

DISPATCH_ENV = "DEPLOYER_DISPATCH"
INLINE = "inline"
INLINE_WORKERS = 4
RUN_JOB_TIMEOUT = 10.0  # seconds for the RunJob call itself, not the execution
MAX_HANDOVERS = 3  # failed hand-overs of one deploy before it is given up
_JOB_NAME = re.compile(r"^projects/[^/]+/locations/[^/]+/jobs/[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$")


class Dispatcher(Protocol):
    def dispatch(self, deploy_id: str) -> None:
        """Start running the saved record `deploy_id`; return in well under a second.

        Never raises: a deploy that cannot be started is marked failed, with the
        reason, and its Slack thread says so.
        """
        ...


class Failures:
    """A record that could not be handed over: tried again later, or ended and its
    environment freed. Its thread is told through the outbox (no Slack call here: this
    runs inside requests)."""

    def __init__(
        self, store: Store | None = None, outbox: Outbox | None = None, config: Config | None = None
    ) -> None:
        # Built on first use: most processes never fail to dispatch.
        self._store = store
        self._outbox = outbox
        self._config = config

    def record(self, deploy_id: str, reason: str, transient: bool = False) -> None:
        """Count a failed hand-over of `deploy_id`; never raises.

        A `transient` failure (the jobs API unavailable, a timeout) leaves a deploy that
        never started pending: its intake lease runs out and the sweep dispatches it
        again, up to `MAX_HANDOVERS` times. Any other failure, or the last one, ends it
        failed and frees its environment. A deploy that did start (a revived one) is
        left as it is: its lease runs out again, and the next sweep tries once more.
        """
        try:
            if self._store is None:
                from deployer.store import open_store

                self._store = open_store()
            record = self._store.get(deploy_id)
            if record is None or record.state != State.PENDING or record.attempt:
                return
            record.handovers_failed += 1
            retry = transient and record.handovers_failed < MAX_HANDOVERS
            if retry:
                record.note(f"could not start a worker ({reason}); the sweep tries again")
            else:
                record.state = State.FAILED
                record.error = reason
                record.note(f"never started: {reason}")
            self._store.save(record)
            if not retry:
                self._store.release_lock(record.environment, DEPLOY, record.id, "")
        except Exception:
            log.exception("could not record the failed hand-over of %s", deploy_id)
            return
        if record.slack_channel is None or self._outbox is None:
            return
        try:
            from deployer.front.messages import deploy_parent, note_reply

            self._outbox.reply(record.id, note_reply(record.notes[-1].text))
            self._outbox.parent(
                record.id, deploy_parent(record, time.time()), final=record.state.finished
            )
        except Exception:
            log.exception("could not tell the Slack thread of %s", deploy_id)


class InlineDispatcher:
    """Runs deploys on a bounded pool of threads in this process; one failing never stops it."""

    def __init__(
        self,
        run: Callable[[str], Any],
        workers: int = INLINE_WORKERS,
        failures: Failures | None = None,
    ) -> None:
        self._run = run
        self._failures = failures or Failures()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
        self._lock = threading.Lock()
        self._closed = False

    def dispatch(self, deploy_id: str) -> None:
        with self._lock:
            if self._closed:
                self._failures.record(deploy_id, "the deployer was shutting down", transient=True)
                return
            self._pool.submit(self._guarded, deploy_id)

    def _guarded(self, deploy_id: str) -> None:
        try:
            self._run(deploy_id)
        except Exception:
            # As a job task that exits non-zero: the deploy's lease runs out, and the
            # sweep resumes it (or gives it up safely). The pool keeps serving others.
            log.exception("deploy %s crashed", deploy_id, extra={"deploy_id": deploy_id})

    def close(self, wait: bool = True) -> None:
        """Refuse new deploys; with `wait`, let the running ones finish."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


class JobDispatcher:
    """Starts one Cloud Run job execution per deploy, `args=["worker", DEPLOY_ID]`."""

    def __init__(
        self,
        job: str,
        host: str | None = None,
        failures: Failures | None = None,
        timeout: float = RUN_JOB_TIMEOUT,
    ) -> None:
        if not _JOB_NAME.match(job):
            raise ValueError(
                f"{DISPATCH_ENV}={job!r} is neither `inline` nor a Cloud Run job name "
                "(projects/PROJECT/locations/REGION/jobs/JOB)"
            )
        self.job = job
        self._jobs = CloudRunJobs(host)
        self._failures = failures or Failures()
        self._timeout = timeout

    def dispatch(self, deploy_id: str) -> None:
        try:
            execution = self._jobs.run(self.job, ["worker", deploy_id], self._timeout)
        except Exception as error:
            reason = f"could not start the Cloud Run job {self.job.rsplit('/', 1)[-1]}: {error}"
            log.error("deploy %s: %s", deploy_id, reason, extra={"deploy_id": deploy_id})
            self._failures.record(
                deploy_id, reason, isinstance(error, JobRefused) and error.transient
            )
            return
        log.info(
            "deploy %s dispatched to %s",
            deploy_id,
            execution or self.job,
            extra={"deploy_id": deploy_id, "execution": execution},
        )


def dispatcher_from_environment(
    run_inline: Callable[[str], Any],
    store: Store | None = None,
    outbox: Outbox | None = None,
    value: str | None = None,
    config: Config | None = None,
    host: str | None = None,
) -> Dispatcher:
    """The dispatcher `DEPLOYER_DISPATCH` (or `value`) names: `inline` (default) or a job.

    `host`: the sandbox serving the Cloud Run jobs API (default: as google_client finds it).
    """
    chosen = (value if value is not None else os.environ.get(DISPATCH_ENV, "")).strip() or INLINE
    failures = Failures(store, outbox, config)
    if chosen == INLINE:
        return InlineDispatcher(run_inline, failures=failures)
    return JobDispatcher(chosen, host=host, failures=failures)
