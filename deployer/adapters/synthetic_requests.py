"""Synthetic requests to a candidate's tag URL: what fills a traffic step when real
traffic is too thin for analysis, and the early signal the thread shows before Cloud
Monitoring's figures arrive.

The requests go a few at once (`PARALLEL`), the configured paths in turn, each with the
prober's headers (an ID token when the service is private). A request without an answer
counts as an error, as a user would count it; its latency is the time it was given.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

PARALLEL = 8  # at once: a few more than a browser opens to one host
REQUEST_TIMEOUT = 10.0

Get = Callable[[str, dict[str, str], float], tuple[int | None, bytes, str, str]]


def send(
    get: Get, urls: Sequence[str], count: int, headers: dict[str, str], timeout: float
) -> list[tuple[int | None, float]]:
    """`count` GETs over `urls` in turn, within `timeout` seconds in all: each answer's
    status (None: no answer) and latency in ms. Requests not started in time are not sent."""
    give_up = time.monotonic() + timeout
    targets = list(itertools.islice(itertools.cycle(urls), count)) if urls else []

    def one(url: str) -> tuple[int | None, float] | None:
        left = give_up - time.monotonic()
        if left <= 0:
            return None
        started = time.monotonic()
        status, _body, _error, _final = get(url, headers, min(REQUEST_TIMEOUT, left))
        return status, (time.monotonic() - started) * 1000

    with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="synthetic") as pool:
        answers = list(pool.map(one, targets))
    return [answer for answer in answers if answer is not None]
