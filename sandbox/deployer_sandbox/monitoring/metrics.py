"""The Cloud Run metrics the sandbox's Monitoring serves, built from the router's RequestLog.

Google's metric list (cloud.google.com/monitoring/api/metrics_gcp, run.googleapis.com):

    metric type                          kind, value type, unit   monitored resource
    run.googleapis.com/request_count     DELTA, INT64, 1          cloud_run_revision
    run.googleapis.com/request_latencies DELTA, DISTRIBUTION, ms  cloud_run_revision

both "sampled every 60 seconds. After sampling, data is not visible for up to 180 seconds",
with the metric labels `response_code` (the HTTP status, "200") and `response_code_class`
("2xx"; the list also has `route_type`, which the sandbox does not set). The monitored
resource `cloud_run_revision` has the labels project_id, service_name, revision_name,
location and configuration_name (a service's configuration bears the service's name).

A request becomes one sample of both metrics, in the time series of its revision and its
status; `RequestLog.between` hides the requests Monitoring would not have ingested yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from deployer_sandbox.cloud_run.request_log import RequestRecord

REQUEST_COUNT = "run.googleapis.com/request_count"
REQUEST_LATENCIES = "run.googleapis.com/request_latencies"
METRIC_TYPES = (REQUEST_COUNT, REQUEST_LATENCIES)
RESOURCE_TYPE = "cloud_run_revision"
RESOURCE_LABELS = ("project_id", "service_name", "revision_name", "location", "configuration_name")
METRIC_LABELS = ("response_code", "response_code_class")
# Cloud Run samples its metrics every 60 s: a raw point covers one such minute.
SAMPLE_SECONDS = 60


@dataclass(frozen=True)
class SeriesKey:
    """A time series' identity: its monitored resource's labels and its metric's labels,
    as sorted (name, value) pairs so that keys compare and sort."""

    resource: tuple[tuple[str, str], ...]
    metric: tuple[tuple[str, str], ...]

    def field(self, name: str) -> str | None:
        """The value of a filter or group-by field (`resource.labels.X`, `metric.labels.X`)."""
        kind, _, label = name.partition(".labels.")
        pairs = {"resource": self.resource, "metric": self.metric}.get(kind, ())
        return dict(pairs).get(label)


@dataclass(frozen=True)
class Sample:
    """One request as a metric sample: when it ended and what it took."""

    at: float
    latency_ms: float


def code_class(status: int) -> str:
    """`response_code_class` of a status: "2xx", "5xx"... A code outside 1xx-5xx counts as
    5xx, as the same label of knative.dev/serving/activator/request_count is defined
    (cloud.google.com/monitoring/api/metrics_knative); Cloud Run's list gives no rule."""
    return f"{status // 100}xx" if 100 <= status < 600 else "5xx"


def series_key(record: RequestRecord) -> SeriesKey:
    resource = {
        "project_id": record.project,
        "service_name": record.service,
        "revision_name": record.revision,
        "location": record.location,
        "configuration_name": record.service,
    }
    metric = {"response_code": str(record.status), "response_code_class": code_class(record.status)}
    return SeriesKey(tuple(sorted(resource.items())), tuple(sorted(metric.items())))


def group_samples(records: Iterable[RequestRecord]) -> dict[SeriesKey, list[Sample]]:
    """The requests as samples of their time series (one series per revision and status)."""
    grouped: dict[SeriesKey, list[Sample]] = {}
    for record in records:
        grouped.setdefault(series_key(record), []).append(Sample(record.at, record.latency_ms))
    return grouped
