"""Cloud Run jobs behind the front's dispatch: start one execution, never wait for it."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from google.api_core import exceptions
from google.cloud import run_v2

from deployer.adapters.google_clients import google_client

# Refusals worth trying again: the API was there, or may be, and may answer next time.
_TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.TooManyRequests,
    exceptions.Aborted,
)


class JobRefused(Exception):
    """Cloud Run did not start the execution; the message says why.

    `transient`: the jobs API was unavailable, overloaded or slow, so the same call may
    succeed later (a missing job or a denied permission will not).
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class CloudRunJobs:
    """Starts executions of a Cloud Run job with overridden container args."""

    def __init__(self, host: str | None = None) -> None:
        self._host = host
        self._client: run_v2.JobsClient | None = None
        self._lock = threading.Lock()

    def _jobs(self) -> run_v2.JobsClient:
        # Built on first use: a front that dispatches inline never needs the client.
        with self._lock:
            if self._client is None:
                self._client = google_client(run_v2.JobsClient, self._host)
            return self._client

    def run(self, job: str, args: Sequence[str], timeout: float) -> str:
        """Start an execution of `job` with `args`; its name ("" if not reported yet)."""
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[run_v2.RunJobRequest.Overrides.ContainerOverride(args=list(args))]
        )
        try:
            # run_job answers with an operation at once; the execution is not waited for.
            operation: Any = self._jobs().run_job(
                request=run_v2.RunJobRequest(name=job, overrides=overrides), timeout=timeout
            )
        except exceptions.GoogleAPICallError as error:
            message = f"{type(error).__name__}: {error.message}"
            raise JobRefused(message, isinstance(error, _TRANSIENT)) from None
        metadata = operation.metadata
        return str(getattr(metadata, "name", "") or "") if metadata else ""
