"""Cloud Monitoring in the sandbox: Cloud Run's request metrics, read through the real
MetricServiceClient over gRPC, as a dashboard or a canary check reads them."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from deployer_sandbox.cloud_run.request_log import RequestRecord
from deployer_sandbox.harness.sandbox import Sandbox
from google.api.metric_pb2 import MetricDescriptor
from google.api_core import exceptions
from google.cloud import monitoring_v3, run_v2

from deployer.adapters.google_clients import google_client
from tests.conftest import PROJECT, REGION
from tests.run_world import create, invoker, short, unique

MetricClient = monitoring_v3.MetricServiceClient
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
Kind = MetricDescriptor.MetricKind
ValueType = MetricDescriptor.ValueType
HEADERS = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
COUNT = "run.googleapis.com/request_count"
LATENCIES = "run.googleapis.com/request_latencies"


@pytest.fixture(scope="module")
def client(sandbox: Sandbox) -> Iterator[MetricClient]:
    made = google_client(MetricClient, sandbox.grpc_address)
    yield made
    made.transport.close()


@pytest.fixture
def world(sandbox: Sandbox) -> Iterator[World]:
    """A project of its own in the sandbox's request log, which is shared by the session."""
    yield World(sandbox, f"mon-{uuid.uuid4().hex[:8]}", time.time())
    sandbox.run.request_log.set_delay(0)


@dataclass
class World:
    sandbox: Sandbox
    project: str
    now: float

    def served(
        self,
        revision: str,
        status: int,
        latencies: list[float],
        ago: float = 5.0,
        service: str = "notes",
    ) -> None:
        """Requests the router answered `ago` seconds before `now`, one per latency."""
        for latency in latencies:
            self.sandbox.run.request_log.record(
                RequestRecord(
                    self.project, REGION, service, revision, self.now - ago, status, latency
                )
            )

    def read(
        self,
        client: MetricClient,
        where: str,
        minutes: float = 10,
        aggregation: monitoring_v3.Aggregation | None = None,
        **extra: object,
    ) -> list[monitoring_v3.TimeSeries]:
        interval = monitoring_v3.TimeInterval(
            start_time={"seconds": int(self.now - minutes * 60)},
            end_time={"seconds": int(self.now) + 1},
        )
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{self.project}",
            filter=where,
            interval=interval,
            aggregation=aggregation,
            **extra,
        )
        return list(client.list_time_series(request=request))


def service_filter(metric: str, service: str = "notes", *more: str) -> str:
    return " AND ".join(
        [
            f'metric.type = "{metric}"',
            'resource.type = "cloud_run_revision"',
            f'resource.labels.service_name = "{service}"',
            *more,
        ]
    )


def per(
    period: int,
    aligner: Aligner,
    reducer: Reducer = Reducer.REDUCE_NONE,
    *group_by: str,
) -> monitoring_v3.Aggregation:
    return monitoring_v3.Aggregation(
        alignment_period={"seconds": period},
        per_series_aligner=aligner,
        cross_series_reducer=reducer,
        group_by_fields=list(group_by),
    )


def test_request_counts_by_code_class(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [10.0] * 7)
    world.served("notes-00001-abc", 503, [5.0] * 2)
    world.served("notes-00001-abc", 500, [5.0] * 1)

    series = world.read(
        client,
        service_filter(COUNT),
        aggregation=per(
            600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM, "metric.labels.response_code_class"
        ),
    )

    totals = {s.metric.labels["response_code_class"]: s.points[0].value.int64_value for s in series}
    assert totals == {"2xx": 7, "5xx": 3}
    assert all(s.metric_kind == Kind.DELTA and s.value_type == ValueType.INT64 for s in series)
    # Labels not grouped by are aggregated away.
    assert all(dict(s.metric.labels).keys() == {"response_code_class"} for s in series)
    assert all(s.resource.type == "cloud_run_revision" and not s.resource.labels for s in series)


def test_error_filter_keeps_only_the_5xx_series(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [10.0] * 4)
    world.served("notes-00001-abc", 502, [1.0] * 2)

    series = world.read(
        client,
        service_filter(COUNT, "notes", 'metric.labels.response_code_class = "5xx"'),
        aggregation=per(60, Aligner.ALIGN_DELTA),
    )

    assert [(s.metric.labels["response_code"], s.points[0].value.int64_value) for s in series] == [
        ("502", 2)
    ]
    labels = dict(series[0].resource.labels)
    assert labels == {
        "project_id": world.project,
        "service_name": "notes",
        "revision_name": "notes-00001-abc",
        "location": REGION,
        "configuration_name": "notes",
    }


def test_rate_is_requests_per_second_over_the_period(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [10.0] * 30, ago=10)

    series = world.read(client, service_filter(COUNT), aggregation=per(60, Aligner.ALIGN_RATE))

    (only,) = series
    assert (only.metric_kind, only.value_type) == (Kind.GAUGE, ValueType.DOUBLE)
    assert only.points[0].value.double_value == pytest.approx(0.5)
    # A GAUGE point is a point in time.
    assert only.points[0].interval.start_time == only.points[0].interval.end_time


def test_p95_latency_of_a_service(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [float(ms) for ms in range(1, 101)])

    series = world.read(
        client,
        service_filter(LATENCIES),
        aggregation=per(600, Aligner.ALIGN_DELTA, Reducer.REDUCE_PERCENTILE_95),
    )

    (only,) = series
    assert only.points[0].value.double_value == pytest.approx(95.05)


def test_raw_latencies_are_distributions_per_minute(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [10.0, 20.0, 30.0], ago=5)
    world.served("notes-00001-abc", 200, [40.0], ago=185)

    (only,) = world.read(client, service_filter(LATENCIES))

    assert (only.metric_kind, only.value_type) == (Kind.DELTA, ValueType.DISTRIBUTION)
    newest, oldest = only.points
    assert newest.interval.end_time > oldest.interval.end_time  # newest first, as the API
    assert (newest.value.distribution_value.count, newest.value.distribution_value.mean) == (
        3,
        20.0,
    )
    assert oldest.value.distribution_value.count == 1
    assert sum(newest.value.distribution_value.bucket_counts) == 3


def test_group_by_revision_during_a_split(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [10.0] * 9)
    world.served("notes-00002-def", 200, [300.0] * 1)
    world.served("notes-00002-def", 500, [300.0] * 2)

    counts = world.read(
        client,
        service_filter(COUNT),
        aggregation=per(
            600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM, "resource.labels.revision_name"
        ),
    )
    p95 = world.read(
        client,
        service_filter(LATENCIES),
        aggregation=per(
            600, Aligner.ALIGN_PERCENTILE_95, Reducer.REDUCE_MAX, "resource.labels.revision_name"
        ),
    )

    assert {s.resource.labels["revision_name"]: s.points[0].value.int64_value for s in counts} == {
        "notes-00001-abc": 9,
        "notes-00002-def": 3,
    }
    assert {s.resource.labels["revision_name"]: s.points[0].value.double_value for s in p95} == {
        "notes-00001-abc": 10.0,
        "notes-00002-def": 300.0,
    }


def test_periods_step_back_from_the_end_newest_first(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [1.0] * 2, ago=30)
    world.served("notes-00001-abc", 200, [1.0] * 5, ago=90)

    (only,) = world.read(client, service_filter(COUNT), aggregation=per(60, Aligner.ALIGN_DELTA))

    assert [p.value.int64_value for p in only.points] == [2, 5]
    first, second = only.points
    assert first.interval.start_time == second.interval.end_time


def test_other_services_and_revisions_are_filtered_out(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [1.0] * 2)
    world.served("notes-00002-def", 200, [1.0] * 3)
    world.served("api-00001-xyz", 200, [1.0] * 4, service="api")

    series = world.read(
        client,
        service_filter(COUNT, "notes", 'resource.labels.revision_name = "notes-00002-def"'),
        aggregation=per(600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM),
    )

    assert [s.points[0].value.int64_value for s in series] == [3]


def test_headers_view_has_no_points(client: MetricClient, world: World) -> None:
    world.served("notes-00001-abc", 200, [1.0])
    world.served("notes-00001-abc", 404, [1.0])

    series = world.read(client, service_filter(COUNT), view=HEADERS)

    assert sorted(s.metric.labels["response_code"] for s in series) == ["200", "404"]
    assert all(not s.points for s in series)


def test_ingestion_delay_hides_fresh_points(client: MetricClient, world: World) -> None:
    world.sandbox.run.request_log.set_delay(180)
    world.served("notes-00001-abc", 200, [1.0] * 4, ago=5)
    world.served("notes-00001-abc", 200, [1.0] * 3, ago=240)
    aggregation = per(600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM)

    delayed = world.read(client, service_filter(COUNT), aggregation=aggregation)
    world.sandbox.run.request_log.set_delay(0)
    ingested = world.read(client, service_filter(COUNT), aggregation=aggregation)

    assert [s.points[0].value.int64_value for s in delayed] == [3]
    assert [s.points[0].value.int64_value for s in ingested] == [7]


def test_no_requests_no_series(client: MetricClient, world: World) -> None:
    assert world.read(client, service_filter(COUNT), aggregation=per(60, Aligner.ALIGN_RATE)) == []


# --- what the API refuses ----------------------------------------------------------------


def test_alignment_period_under_a_minute_is_invalid(client: MetricClient, world: World) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="at least 60 seconds"):
        world.read(client, service_filter(COUNT), aggregation=per(30, Aligner.ALIGN_DELTA))


def test_reducer_without_aligner_is_invalid(client: MetricClient, world: World) -> None:
    aggregation = monitoring_v3.Aggregation(cross_series_reducer=Reducer.REDUCE_SUM)
    with pytest.raises(exceptions.InvalidArgument, match="per_series_aligner"):
        world.read(client, service_filter(COUNT), aggregation=aggregation)


def test_rate_of_a_distribution_is_invalid(client: MetricClient, world: World) -> None:
    with pytest.raises(exceptions.InvalidArgument, match="ALIGN_RATE needs numeric"):
        world.read(client, service_filter(LATENCIES), aggregation=per(60, Aligner.ALIGN_RATE))


@pytest.mark.parametrize(
    ("where", "named"),
    [
        ('resource.type = "cloud_run_revision"', "metric type"),
        (f'metric.type = "{COUNT}" OR resource.type = "x"', "OR resource.type"),
        (f'metric.type = "{COUNT}" AND metric.labels.response_code_class != "2xx"', "cannot read"),
        (f'metric.type = "{COUNT}" AND resource.labels.service_name = notes', "cannot read"),
        (f'metric.type = "{COUNT}" AND resource.labels.zone = "a"', "resource.labels.zone"),
    ],
)
def test_filters_beyond_the_subset_are_invalid(
    client: MetricClient, world: World, where: str, named: str
) -> None:
    with pytest.raises(exceptions.InvalidArgument, match=re.escape(named)):
        world.read(client, where)


def test_interval_needs_a_start_before_its_end(client: MetricClient, world: World) -> None:
    name = f"projects/{world.project}"
    end = {"seconds": int(world.now)}
    with pytest.raises(exceptions.InvalidArgument, match="start_time: required"):
        client.list_time_series(
            request={"name": name, "filter": service_filter(COUNT), "interval": {"end_time": end}}
        )
    with pytest.raises(exceptions.InvalidArgument, match="earlier than the end"):
        client.list_time_series(
            request={
                "name": name,
                "filter": service_filter(COUNT),
                "interval": {"start_time": end, "end_time": end},
            }
        )


def test_unknown_metric_type_is_not_found(client: MetricClient, world: World) -> None:
    with pytest.raises(exceptions.NotFound, match="Cannot find metric"):
        world.read(client, 'metric.type = "run.googleapis.com/container/instance_count"')


def test_unknown_group_by_field_is_invalid(client: MetricClient, world: World) -> None:
    aggregation = per(60, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM, "metric.labels.route")
    world.served("notes-00001-abc", 200, [1.0])
    with pytest.raises(exceptions.InvalidArgument, match=re.escape("metric.labels.route")):
        world.read(client, service_filter(COUNT), aggregation=aggregation)


# --- end to end: requests through the router -------------------------------------------


def test_requests_through_the_router_are_counted(
    gcp: Sandbox, client: MetricClient, services: run_v2.ServicesClient, image: str
) -> None:
    service = create(services, unique("metrics"), image)
    headers = invoker(gcp, service.uri)
    for _ in range(3):
        assert httpx.get(f"{service.uri}/health", headers=headers, timeout=10).status_code == 200
    assert httpx.get(f"{service.uri}/no-such-page", headers=headers, timeout=10).status_code == 404

    now = time.time()
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{PROJECT}",
        filter=service_filter(COUNT, short(service.name)),
        interval=monitoring_v3.TimeInterval(
            start_time={"seconds": int(now) - 600}, end_time={"seconds": int(now) + 1}
        ),
        aggregation=per(
            600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM, "metric.labels.response_code_class"
        ),
    )
    series = list(client.list_time_series(request=request))

    totals = {s.metric.labels["response_code_class"]: s.points[0].value.int64_value for s in series}
    # The deploy's own readiness probes may add 2xx requests of their own.
    assert totals["2xx"] >= 3
    assert totals["4xx"] == 1


def test_faults_show_as_errors_and_latency(
    gcp: Sandbox, client: MetricClient, services: run_v2.ServicesClient, image: str
) -> None:
    gcp.faults.arm("error_rate", rate=1.0)
    gcp.faults.arm("latency", ms=150)
    service = create(services, unique("metrics"), image)
    headers = invoker(gcp, service.uri)
    for _ in range(5):
        assert httpx.get(f"{service.uri}/", headers=headers, timeout=10).status_code == 500

    now = time.time()
    interval = monitoring_v3.TimeInterval(
        start_time={"seconds": int(now) - 600}, end_time={"seconds": int(now) + 1}
    )
    errors = list(
        client.list_time_series(
            request=monitoring_v3.ListTimeSeriesRequest(
                name=f"projects/{PROJECT}",
                filter=service_filter(
                    COUNT, short(service.name), 'metric.labels.response_code_class = "5xx"'
                ),
                interval=interval,
                aggregation=per(600, Aligner.ALIGN_DELTA, Reducer.REDUCE_SUM),
            )
        )
    )
    p95 = list(
        client.list_time_series(
            request=monitoring_v3.ListTimeSeriesRequest(
                name=f"projects/{PROJECT}",
                filter=service_filter(LATENCIES, short(service.name)),
                interval=interval,
                aggregation=per(600, Aligner.ALIGN_PERCENTILE_95, Reducer.REDUCE_MAX),
            )
        )
    )

    assert [s.points[0].value.int64_value for s in errors] == [5]
    assert p95[0].points[0].value.double_value >= 150
