"""Cloud Run's request metrics read from Cloud Monitoring (`monitoring_v3.MetricServiceClient`).

Two ListTimeSeries reads a window, both over the service's `cloud_run_revision` series
(cloud.google.com/monitoring/api/metrics_gcp, "run"):

    run.googleapis.com/request_count       ALIGN_DELTA, REDUCE_SUM grouped by revision_name
                                           and response_code_class: requests and 5xx
    run.googleapis.com/request_latencies   ALIGN_DELTA, REDUCE_SUM grouped by revision_name:
                                           one merged distribution (ms) per revision

The read interval is the window; its alignment period covers the whole window, and is
at least 60 s, as Monitoring wants (google/monitoring/v3/common.proto,
Aggregation.alignment_period). Cloud Run samples its metrics every 60 s, so against Google
a window takes in the samples it overlaps (an analysis interval is 60 s or more there);
the sandbox's Monitoring counts exactly the requests inside it, so a test's window of a
few seconds (`Metrics.min_interval`) is judged on that window alone. Every point answered
is summed, so a window split across two periods never drops requests.

Percentiles are left to `measurements.Latencies`, from the distribution's buckets, so the
stable revisions (one or several) merge before their p95 is taken, as REDUCE_PERCENTILE_95
cannot over a group the filter language has no OR for.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime

from google.api.distribution_pb2 import Distribution
from google.api_core import exceptions
from google.cloud import monitoring_v3
from google.protobuf.duration_pb2 import Duration

from deployer.config import ServiceConfig
from deployer.pipeline.measurements import Latencies, MetricsUnavailable, RevisionRequests

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
MIN_PERIOD = 60
_TRANSIENT = (
    exceptions.ServiceUnavailable,
    exceptions.DeadlineExceeded,
    exceptions.InternalServerError,
    exceptions.TooManyRequests,
)
_RETRY_PAUSE = 0.5

Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer


class CloudMonitoringMetrics:
    """`Metrics` over Cloud Monitoring v3."""

    def __init__(
        self, client: monitoring_v3.MetricServiceClient, min_interval: float = MIN_PERIOD
    ) -> None:
        self._client = client
        # Google's grain; the sandbox's Monitoring (scaled-down time) is built with less.
        self.min_interval = min_interval

    def requests(
        self, service: ServiceConfig, start: float, end: float, timeout: float
    ) -> Mapping[str, RevisionRequests]:
        period = max(MIN_PERIOD, math.ceil(end - start))
        interval = monitoring_v3.TimeInterval(start_time=_stamp(start), end_time=_stamp(end))
        give_up = time.monotonic() + timeout
        counts = self._read(
            service,
            REQUEST_COUNT,
            interval,
            period,
            ["resource.labels.revision_name", "metric.labels.response_code_class"],
            give_up,
        )
        latencies = self._read(
            service, REQUEST_LATENCIES, interval, period, ["resource.labels.revision_name"], give_up
        )
        requests: dict[str, int] = {}
        errors: dict[str, int] = {}
        for series in counts:
            revision = series.resource.labels.get("revision_name", "")
            answered = sum(point.value.int64_value for point in series.points)
            requests[revision] = requests.get(revision, 0) + answered
            if series.metric.labels.get("response_code_class") == "5xx":
                errors[revision] = errors.get(revision, 0) + answered
        histograms: dict[str, Latencies] = {}
        for series in latencies:
            revision = series.resource.labels.get("revision_name", "")
            for point in series.points:
                histogram = _latencies(point.value.distribution_value)
                histograms[revision] = histograms.get(revision, Latencies()).merged(histogram)
        return {
            revision: RevisionRequests(
                count, errors.get(revision, 0), histograms.get(revision, Latencies())
            )
            for revision, count in requests.items()
            if count
        }

    def _read(
        self,
        service: ServiceConfig,
        metric: str,
        interval: monitoring_v3.TimeInterval,
        period: int,
        group_by: list[str],
        give_up: float,
    ) -> list[monitoring_v3.TimeSeries]:
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{service.project}",
            filter=(
                f'metric.type = "{metric}" AND resource.type = "cloud_run_revision" '
                f'AND resource.labels.service_name = "{service.service}" '
                f'AND resource.labels.location = "{service.region}"'
            ),
            interval=interval,
            aggregation=monitoring_v3.Aggregation(
                alignment_period=Duration(seconds=period),
                per_series_aligner=Aligner.ALIGN_DELTA,
                cross_series_reducer=Reducer.REDUCE_SUM,
                group_by_fields=group_by,
            ),
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        while True:
            left = give_up - time.monotonic()
            if left <= 0:
                raise MetricsUnavailable(f"Cloud Monitoring did not answer in time ({metric})")
            try:
                # The pager fetches later pages as it is iterated, each within `left`.
                return list(self._client.list_time_series(request=request, timeout=left))
            except _TRANSIENT as error:
                if give_up - time.monotonic() <= _RETRY_PAUSE:
                    raise MetricsUnavailable(_said(error, metric)) from None
                time.sleep(_RETRY_PAUSE)
            except exceptions.GoogleAPICallError as error:
                raise MetricsUnavailable(_said(error, metric)) from None


def _said(error: exceptions.GoogleAPICallError, metric: str) -> str:
    return f"Cloud Monitoring refused to read {metric}: {type(error).__name__}: {error.message}"


def _stamp(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _latencies(distribution: Distribution) -> Latencies:
    """A Distribution's histogram as `Latencies` (google/api/distribution.proto: bucket 0
    is the underflow, the last the overflow; trailing empty buckets may be omitted)."""
    bounds = _bounds(distribution.bucket_options)
    counts = list(distribution.bucket_counts)[: len(bounds) + 1]
    if not bounds:
        # No buckets: every request in one, at the mean (the only figure there is).
        return Latencies((distribution.mean,), (0, int(distribution.count)))
    counts += [0] * (len(bounds) + 1 - len(counts))
    return Latencies(bounds, tuple(int(count) for count in counts))


def _bounds(options: Distribution.BucketOptions) -> tuple[float, ...]:
    kind = options.WhichOneof("options")
    if kind == "exponential_buckets":
        exp = options.exponential_buckets
        return tuple(exp.scale * exp.growth_factor**i for i in range(exp.num_finite_buckets + 1))
    if kind == "linear_buckets":
        lin = options.linear_buckets
        return tuple(lin.offset + lin.width * i for i in range(lin.num_finite_buckets + 1))
    if kind == "explicit_buckets":
        return tuple(options.explicit_buckets.bounds)
    return ()
