"""Cloud Monitoring v3 in the sandbox: ListTimeSeries over Cloud Run's request metrics.

    google.monitoring.v3.MetricService/ListTimeSeries
        name "projects/P"               -> the requests the router answered for P's revisions
                                           (RequestLog.between, which hides those Monitoring
                                           would not have ingested yet)
        filter                          -> `monitoring.filters` (metric.type required)
        interval (start, end]           -> both required, start before end (TimeInterval:
                                           "The start time must be specified, must be
                                           earlier than the end time")
        aggregation                     -> `monitoring.aggregation`
        view FULL | HEADERS             -> HEADERS: the series without their points
        order_by                        -> must be blank ("Unsupported: must be left blank")
    every other MetricService method    -> UNIMPLEMENTED (the generic handler's default)
    fault `monitoring_denied`           -> PERMISSION_DENIED on every read, until cleared

Metric types: run.googleapis.com/request_count and request_latencies (`monitoring.metrics`);
another type is NOT_FOUND, as Monitoring answers "Cannot find metric(s) that match type"
for a type it does not know. Series come sorted by their labels; every series is answered
in one page (page_token must be blank, secondary_aggregation is not served).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.api.distribution_pb2 import Distribution as DistributionProto
from google.api.metric_pb2 import Metric
from google.api.monitored_resource_pb2 import MonitoredResource
from google.cloud.monitoring_v3 import (
    ListTimeSeriesRequest,
    ListTimeSeriesResponse,
    Point,
    TimeInterval,
    TimeSeries,
    TypedValue,
)
from google.protobuf.timestamp_pb2 import Timestamp

from deployer_sandbox.cloud_run.request_log import RequestLog, RequestRecord
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.common.rpc import invalid, not_found, permission_denied, service, unary
from deployer_sandbox.monitoring import aggregation as agg
from deployer_sandbox.monitoring.filters import Selection, parse_filter
from deployer_sandbox.monitoring.metrics import (
    METRIC_TYPES,
    RESOURCE_TYPE,
    SeriesKey,
    group_samples,
)

SERVICE = "google.monitoring.v3.MetricService"

# Latency histograms: exponential buckets, 1 ms to about 10 minutes. The bounds Cloud Run
# uses are not documented; these are the sandbox's, in the form Distribution allows
# (google/api/distribution.proto, BucketOptions.Exponential).
FINITE_BUCKETS, GROWTH_FACTOR, SCALE_MS = 40, 1.4, 1.0
BUCKETS = DistributionProto.BucketOptions.Exponential(
    num_finite_buckets=FINITE_BUCKETS, growth_factor=GROWTH_FACTOR, scale=SCALE_MS
)


class CloudMonitoring:
    """`google.monitoring.v3.MetricService` over the router's request log. Thread-safe."""

    def __init__(self, requests: RequestLog, faults: Faults | None = None) -> None:
        self._requests = requests
        self._faults = faults or Faults()

    def handler(self) -> Any:
        return service(
            SERVICE,
            {"ListTimeSeries": unary(self._list, ListTimeSeriesRequest, ListTimeSeriesResponse)},
        )

    def _list(self, request: ListTimeSeriesRequest) -> ListTimeSeriesResponse:
        project = _project(request.name)
        if self._faults.armed("monitoring_denied"):
            # Monitoring's answer to a caller without monitoring.timeSeries.list (a role
            # such as roles/monitoring.viewer grants it).
            raise permission_denied(
                f"Permission monitoring.timeSeries.list denied (or the resource may not "
                f"exist) on projects/{project}."
            )
        selection = parse_filter(request.filter)
        if selection.metric_type not in METRIC_TYPES:
            raise not_found(
                f'Cannot find metric(s) that match type = "{selection.metric_type}". The '
                f"sandbox's Cloud Monitoring serves {' and '.join(METRIC_TYPES)}."
            )
        start, end = _interval(request)
        if request.order_by:
            raise invalid("order_by: unsupported, must be left blank.")
        if request.page_token:
            raise invalid(f"Invalid page token [{request.page_token}].")
        if request.page_size < 0:
            raise invalid("page_size: must not be negative.")
        if "secondary_aggregation" in request:
            raise invalid("secondary_aggregation: not supported by the sandbox's Cloud Monitoring.")
        grouped = {
            key: samples
            for key, samples in group_samples(self._visible(project, start, end)).items()
            if _selected(key, selection)
        }
        series = agg.aggregate(selection.metric_type, grouped, request.aggregation, end, start)
        series.sort(key=lambda s: (s.key.resource, s.key.metric))
        headers_only = request.view == ListTimeSeriesRequest.TimeSeriesView.HEADERS
        return ListTimeSeriesResponse(
            time_series=[_shape(selection.metric_type, s, headers_only) for s in series]
        )

    def _visible(self, project: str, start: float, end: float) -> list[RequestRecord]:
        # The read interval is (start, end]; the log's is [start, end).
        found = self._requests.between(start, end + 1e-6, project=project)
        return [record for record in found if start < record.at <= end]


def _selected(key: SeriesKey, selection: Selection) -> bool:
    if selection.resource_type not in (None, RESOURCE_TYPE):
        return False
    return all(key.field(field) == value for field, value in selection.labels.items())


# --- request fields --------------------------------------------------------------------


def _project(name: str) -> str:
    parts = name.split("/")
    if len(parts) != 2 or parts[0] != "projects" or not parts[1]:
        raise invalid(
            f"name: '{name}' is not supported by the sandbox's Cloud Monitoring; use "
            "projects/[PROJECT_ID] (organizations and folders are not modelled)."
        )
    return parts[1]


def _interval(request: ListTimeSeriesRequest) -> tuple[float, float]:
    if "interval" not in request or "end_time" not in request.interval:
        raise invalid("interval.end_time: required.")
    if "start_time" not in request.interval:
        raise invalid("interval.start_time: required for reads.")
    start = _epoch(request.interval.start_time)
    end = _epoch(request.interval.end_time)
    if start >= end:
        raise invalid("interval: the start time must be earlier than the end time.")
    return start, end


# --- the answer ------------------------------------------------------------------------


def _shape(metric_type: str, series: agg.Series, headers_only: bool) -> TimeSeries:
    return TimeSeries(
        metric=Metric(type=metric_type, labels=dict(series.key.metric)),
        resource=MonitoredResource(type=RESOURCE_TYPE, labels=dict(series.key.resource)),
        metric_kind=series.kind,
        value_type=series.value_type,
        points=[] if headers_only else [_point(point) for point in series.points],
    )


def _point(point: agg.Point) -> Point:
    interval = TimeInterval(end_time=_stamp(point.end), start_time=_stamp(point.start))
    return Point(interval=interval, value=_value(point.value))


def _value(value: agg.Value) -> TypedValue:
    if isinstance(value, agg.Distribution):
        return TypedValue(distribution_value=_distribution(value.samples))
    if isinstance(value, int):
        return TypedValue(int64_value=value)
    return TypedValue(double_value=value)


def _distribution(samples: tuple[float, ...]) -> DistributionProto:
    count = len(samples)
    mean = sum(samples) / count if count else 0.0
    counts = [0] * (FINITE_BUCKETS + 2)
    for sample in samples:
        counts[_bucket(sample)] += 1
    while counts and counts[-1] == 0:
        counts.pop()  # trailing empty buckets may be left out (distribution.proto)
    return DistributionProto(
        count=count,
        mean=mean,
        sum_of_squared_deviation=sum((s - mean) ** 2 for s in samples),
        bucket_options=DistributionProto.BucketOptions(exponential_buckets=BUCKETS),
        bucket_counts=counts,
    )


def _bucket(sample: float) -> int:
    """Bucket 0 is (-inf, scale); bucket i is [scale * g^(i-1), scale * g^i); the last
    catches the overflow (distribution.proto, Exponential)."""
    bound = SCALE_MS
    for index in range(1, FINITE_BUCKETS + 1):
        if sample < bound:
            return index - 1
        bound *= GROWTH_FACTOR
    return FINITE_BUCKETS + 1 if sample >= bound else FINITE_BUCKETS


def _epoch(stamp: object) -> float:
    # proto-plus hands a Timestamp field over as a datetime (DatetimeWithNanoseconds).
    assert isinstance(stamp, datetime)
    return stamp.timestamp()


def _stamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
