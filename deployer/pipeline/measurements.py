"""What the candidate and the stable revision answered, as Cloud Monitoring counts it: the
values crossing the `Metrics` port and kept in the record for the thread and the chart.

Cloud Run reports `run.googleapis.com/request_count` (labels `response_code`,
`response_code_class`) and `run.googleapis.com/request_latencies` (a distribution, in ms)
per revision (cloud.google.com/monitoring/api/metrics_gcp, "run"). Latency percentiles
are estimated from the distribution's buckets, as Monitoring's own ALIGN_PERCENTILE_*
and REDUCE_PERCENTILE_* do, so the figures of several revisions can be merged first.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from deployer.config import ServiceConfig


@dataclass(frozen=True)
class Latencies:
    """A latency histogram in ms: `counts[i]` requests below `bounds[i]` and at or above
    `bounds[i-1]`; `counts[-1]` at or above `bounds[-1]` (Distribution's underflow,
    finite and overflow buckets, google/api/distribution.proto)."""

    bounds: tuple[float, ...] = ()
    counts: tuple[int, ...] = (0,)

    @property
    def total(self) -> int:
        return sum(self.counts)

    def merged(self, other: Latencies) -> Latencies:
        if not other.total:
            return self
        if not self.total:
            return other
        if self.bounds != other.bounds:
            raise ValueError("latency histograms with different buckets cannot be merged")
        return Latencies(
            self.bounds, tuple(a + b for a, b in zip(self.counts, other.counts, strict=True))
        )

    def percentile(self, share: float) -> float | None:
        """The latency under which `share` (0..1) of requests fell, interpolated linearly
        inside its bucket; None without requests."""
        total = self.total
        if not total:
            return None
        rank = share * total
        seen = 0
        for index, count in enumerate(self.counts):
            if count and seen + count >= rank:
                low = self.bounds[index - 1] if index > 0 else 0.0
                high = self.bounds[index] if index < len(self.bounds) else low
                return low + (high - low) * max(0.0, rank - seen) / count
            seen += count
        return self.bounds[-1] if self.bounds else None

    @classmethod
    def of(cls, bounds: Iterable[float], samples_ms: Iterable[float]) -> Latencies:
        """A histogram of `samples_ms` over `bounds` (what the deployer measured itself)."""
        edges = tuple(bounds)
        counts = [0] * (len(edges) + 1)
        for sample in samples_ms:
            counts[bisect.bisect_right(edges, sample)] += 1
        return cls(edges, tuple(counts))


@dataclass(frozen=True)
class RevisionRequests:
    """What one revision answered over a window."""

    requests: int
    errors: int  # answered 5xx
    latencies: Latencies = field(default_factory=Latencies)


@dataclass(frozen=True)
class Figures:
    """The figures a threshold is judged on: requests, 5xx and p95 latency."""

    requests: int
    errors: int
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    def describe(self) -> str:
        """ "120 requests, 2.5% 5xx, p95 38 ms"."""
        if not self.requests:
            return "no requests"
        parts = [f"{self.requests} request{'s' if self.requests != 1 else ''}"]
        parts.append(f"{percent(self.error_rate or 0.0)} 5xx")
        if self.p95_ms is not None:
            parts.append(f"p95 {self.p95_ms:.0f} ms")
        return ", ".join(parts)

    @classmethod
    def of(cls, by_revision: Mapping[str, RevisionRequests], revisions: Iterable[str]) -> Figures:
        """The figures of `revisions` together (absent ones answered nothing)."""
        requests = errors = 0
        latencies = Latencies()
        for revision in revisions:
            answered = by_revision.get(revision)
            if answered is None:
                continue
            requests += answered.requests
            errors += answered.errors
            latencies = latencies.merged(answered.latencies)
        return cls(requests, errors, latencies.percentile(0.95))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Figures:
        return cls(int(data["requests"]), int(data["errors"]), data.get("p95_ms"))


def percent(share: float) -> str:
    """0.125 -> "12.5%", 0.0 -> "0%"."""
    return f"{share * 100:.1f}".rstrip("0").rstrip(".") + "%"


class MetricsUnavailable(Exception):
    """Cloud Monitoring could not be read (denied, unavailable, refused); the message says
    why. Analysis fails closed on it: a step that cannot be measured does not pass."""


class Metrics(Protocol):
    """Cloud Run's request metrics, as Cloud Monitoring has ingested them."""

    # The shortest analysis interval worth reading (seconds): Monitoring's 60 s grain.
    min_interval: float

    def requests(
        self, service: ServiceConfig, start: float, end: float, timeout: float
    ) -> Mapping[str, RevisionRequests]:
        """What each revision of `service` answered in the window (start, end] (epoch
        seconds), as far as Monitoring has the data yet; revisions that answered nothing
        are absent. MetricsUnavailable when Monitoring cannot be read."""
        ...


@dataclass(frozen=True)
class Measurement:
    """One judged window: a traffic step, or a look during the watch after verify."""

    phase: str  # "step" or "watch"
    percent: int  # the candidate's share of the service's traffic meanwhile
    start: float  # epoch seconds
    end: float
    candidate: Figures
    # What the candidate is compared with: the stable revision in the same window, or
    # what it answered before the rollout began (`stable_source` says which); None when
    # neither had enough requests.
    stable: Figures | None
    stable_source: str  # "same window", "before the rollout", or why there is none
    synthetic: Figures  # the deployer's own requests to the candidate's tag URL
    passed: bool
    reasons: tuple[str, ...] = ()  # each threshold broken, or why nothing could be judged

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        stable = data.get("stable")
        return cls(
            phase=data["phase"],
            percent=int(data["percent"]),
            start=float(data["start"]),
            end=float(data["end"]),
            candidate=Figures.from_dict(data["candidate"]),
            stable=Figures.from_dict(stable) if stable else None,
            stable_source=data.get("stable_source", ""),
            synthetic=Figures.from_dict(data["synthetic"]),
            passed=bool(data["passed"]),
            reasons=tuple(data.get("reasons") or ()),
        )
