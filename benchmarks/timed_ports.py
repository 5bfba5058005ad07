"""Where one deploy's time went: timing proxies over the pipeline's ports (benchmarks only).

    timed_platform(platform, timings)   each port of `Platform` (sources, builds,
                                        secrets, services, health, images) behind a
                                        proxy that times every method call
    timed_store(store, timings)         the store, the same way
    timings.listener                    follows the stages, so each call is counted
                                        against the stage it was made in ("between":
                                        lock, saves and read-backs outside any stage)

Only calls made on the thread that ran `timings.reset()` are counted (the deploy's
own: the lease's heartbeat renews on a thread of its own, off the deploy's path), and
only the outermost of nested ones. `health.redacting(...)` answers a prober that is
timed too, so the candidate's probes are counted like the others.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

from deployer.pipeline.events import Event, StageFinished, StageStarted
from deployer.pipeline.ports import Platform

BETWEEN = "between"  # outside every stage: taking the lock, saving, reading back


@dataclass(frozen=True)
class Call:
    port: str  # "services", "health", ..., "store"
    method: str
    stage: str
    seconds: float


class Timings:
    """The calls of one deploy, and its stages' wall time, as they happened."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.stage_wall: dict[str, float] = defaultdict(float)
        self.stage = BETWEEN
        self._stage_started = 0.0
        self._local = threading.local()
        self._thread = threading.get_ident()

    def reset(self) -> None:
        """Forget everything; count the calls of the thread calling this from now on."""
        self.calls, self.stage_wall, self.stage = [], defaultdict(float), BETWEEN
        self._thread = threading.get_ident()

    @contextmanager
    def measure(self, port: str, method: str) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        self._local.depth = depth + 1
        started = time.perf_counter()
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0 and threading.get_ident() == self._thread:
                self.calls.append(Call(port, method, self.stage, time.perf_counter() - started))

    @contextmanager
    def within(self, stage: str) -> Iterator[None]:
        """Count the calls made meanwhile against `stage` (a part of a stage)."""
        outer, started = self.stage, time.perf_counter()
        self.stage = stage
        try:
            yield
        finally:
            self.stage = outer
            self.stage_wall[stage] += time.perf_counter() - started

    def listener(self, event: Event) -> None:
        """Follow the stages (the pipeline tells them on the deploy's thread)."""
        if isinstance(event, StageStarted):
            self.stage, self._stage_started = str(event.stage), time.perf_counter()
        elif isinstance(event, StageFinished):
            self.stage_wall[self.stage] += time.perf_counter() - self._stage_started
            self.stage = BETWEEN

    def seconds(self, port: str | None = None, stage: str | None = None) -> float:
        """Seconds inside calls to `port` (None: any port but the store) during `stage`."""
        return sum(
            call.seconds
            for call in self.calls
            if (call.port == port if port else call.port != "store")
            and (stage is None or call.stage == stage)
        )

    def by_method(self) -> dict[str, tuple[int, float]]:
        """`port.method` -> (calls, seconds), the store's included."""
        found: dict[str, tuple[int, float]] = {}
        for call in self.calls:
            key = f"{call.port}.{call.method}"
            count, total = found.get(key, (0, 0.0))
            found[key] = (count + 1, total + call.seconds)
        return found


class Timed:
    """`target`, every method call timed as `port.method`."""

    def __init__(self, target: Any, port: str, timings: Timings) -> None:
        self._target, self._port, self._timings = target, port, timings

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._target, name)
        if not callable(found):
            return found

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self._timings.measure(self._port, name):
                answer = found(*args, **kwargs)
            if self._port == "health" and name == "redacting":
                return Timed(answer, self._port, self._timings)
            return answer

        return timed


def timed_platform(platform: Platform, timings: Timings) -> Platform:
    """`platform` with each port behind a timing proxy."""
    proxies: dict[str, Any] = {
        port.name: Timed(getattr(platform, port.name), port.name, timings)
        for port in fields(platform)
    }
    return replace(platform, **proxies)


def timed_store(store: Any, timings: Timings) -> Any:
    """`store` behind a timing proxy (port "store")."""
    return Timed(store, "store", timings)


def timed_function(function: Callable[..., Any], stage: str, timings: Timings) -> Any:
    """`function`, its calls counted as the part `stage` of the stage that calls it."""

    def timed(*args: Any, **kwargs: Any) -> Any:
        with timings.within(stage):
            return function(*args, **kwargs)

    return timed
