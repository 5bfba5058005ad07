"""Per-key FIFO work queues: each service's changes are reconciled one at a time, in order.

Handlers only enqueue and answer; one worker thread per busy key drains its
queue and exits when the queue is empty, so idle services cost no threads.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)

Job = Callable[[], None]


class SerialQueues:
    """Thread-safe: `submit(key, job)` runs jobs of one key in order, keys in parallel."""

    def __init__(self, thread_prefix: str) -> None:
        self._lock = threading.Lock()
        self._queues: dict[str, deque[Job]] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._prefix = thread_prefix
        self._closed = False

    def submit(self, key: str, job: Job) -> None:
        """Queue `job` after every job already queued under `key`."""
        with self._lock:
            if self._closed:
                return
            queue = self._queues.setdefault(key, deque())
            queue.append(job)
            if key not in self._threads:
                thread = threading.Thread(
                    target=self._drain, args=(key,), name=f"{self._prefix}:{key}", daemon=True
                )
                self._threads[key] = thread
                thread.start()

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues.get(key)
                if not queue or self._closed:
                    self._queues.pop(key, None)
                    self._threads.pop(key, None)
                    return
                job = queue.popleft()
            try:
                job()
            except Exception:
                # A failed job must not stall the jobs queued behind it.
                log.exception("sandbox job for %s failed", key)

    def close(self, timeout: float = 5.0) -> None:
        """Drop queued jobs and wait up to `timeout` seconds for running ones."""
        with self._lock:
            self._closed = True
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(timeout)
