"""Every request the Cloud Run router answered, kept for the sandbox's Cloud Monitoring.

One record per request, written when the response ends:

  project, location, service, revision   which revision answered (the router's split)
  at                                      epoch seconds when the response ended
  status                                  the status the client saw; 502/503/504 when the
                                          router answered itself, 500 from `error_rate`
  latency_ms                              router-measured, from the request's headers read
                                          to the answer's last byte written

Reading (`between`) models Monitoring's ingestion delay: a point becomes visible only once
`at + delay <= now`. Google gives each metric's delay in its metric list, in statements like
"Sampled every 60 seconds. After sampling, data is not visible for up to 240 seconds", the
figures varying per metric (cloud.google.com/monitoring/api/v3/latency-n-retention). The
delay is 0 unless set, so tests see their requests at once; `set_delay` makes the lag
observable.

The log is bounded: beyond `capacity` records the oldest are dropped, as a long-running
sandbox under loopback traffic must not grow without limit.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_CAPACITY = 200_000


@dataclass(frozen=True)
class RequestRecord:
    project: str  # project id
    location: str  # region
    service: str  # Cloud Run service id
    revision: str  # short revision name
    at: float  # epoch seconds when the response ended
    status: int  # HTTP status answered (the router's view)
    latency_ms: float  # router-measured, request start to response end


class RequestLog:
    """Thread-safe, bounded record of answered requests, oldest first."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=capacity)
        self._delay = 0.0
        self._clock = clock

    def record(self, item: RequestRecord) -> None:
        with self._lock:
            self._records.append(item)

    def between(self, start: float, end: float, project: str | None = None) -> list[RequestRecord]:
        """Records with start <= at < end that Monitoring would already have ingested."""
        with self._lock:
            visible_until = self._clock() - self._delay
            return [
                item
                for item in self._records
                if start <= item.at < end
                and item.at <= visible_until
                and (project is None or item.project == project)
            ]

    def set_delay(self, seconds: float) -> None:
        """Monitoring's ingestion delay: how long a record stays invisible to `between`."""
        if seconds < 0:
            raise ValueError("an ingestion delay cannot be negative")
        with self._lock:
            self._delay = float(seconds)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
