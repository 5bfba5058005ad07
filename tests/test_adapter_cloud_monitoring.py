"""The Cloud Monitoring adapter: what each revision answered, read through the real
MetricServiceClient over gRPC from the sandbox's Monitoring, against hand-counted figures."""

from __future__ import annotations

import time
import uuid

import pytest
from deployer_sandbox.cloud_run.request_log import RequestRecord
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import monitoring_v3

from deployer.adapters.cloud_monitoring import CloudMonitoringMetrics
from deployer.adapters.google_clients import google_client
from deployer.config import ServiceConfig
from deployer.pipeline.measurements import Figures, MetricsUnavailable
from tests.conftest import REGION


def target(project: str, service: str = "notes") -> ServiceConfig:
    return ServiceConfig.model_validate(
        {
            "project": project,
            "region": REGION,
            "service": service,
            "image": f"{REGION}-docker.pkg.dev/{project}/deployer/{service}",
            "source": {"git": "/tmp/repo"},
        }
    )


def served(
    gcp: Sandbox, project: str, revision: str, status: int, latencies: list[float], at: float
) -> None:
    for latency in latencies:
        gcp.run.request_log.record(
            RequestRecord(project, REGION, "notes", revision, at, status, latency)
        )


@pytest.fixture
def metrics(gcp: Sandbox) -> CloudMonitoringMetrics:
    return CloudMonitoringMetrics(
        google_client(monitoring_v3.MetricServiceClient, gcp.grpc_address)
    )


def test_requests_errors_and_p95_per_revision(
    gcp: Sandbox, metrics: CloudMonitoringMetrics
) -> None:
    project, now = f"mon-{uuid.uuid4().hex[:8]}", time.time()
    # stable: 90 fast answers; candidate: 18 fast, 2 failed (500, 503), none slow.
    served(gcp, project, "notes-old", 200, [10.0] * 90, now - 5)
    served(gcp, project, "notes-new", 200, [10.0] * 18, now - 4)
    served(gcp, project, "notes-new", 500, [400.0], now - 3)
    served(gcp, project, "notes-new", 503, [400.0], now - 3)
    # Another service and a request outside the window are not counted.
    gcp.run.request_log.record(RequestRecord(project, REGION, "other", "other-1", now - 3, 500, 1))
    served(gcp, project, "notes-new", 500, [1.0], now - 600)

    found = metrics.requests(target(project), now - 30, now, timeout=10)

    assert set(found) == {"notes-old", "notes-new"}
    assert (found["notes-old"].requests, found["notes-old"].errors) == (90, 0)
    assert (found["notes-new"].requests, found["notes-new"].errors) == (20, 2)
    candidate = Figures.of(found, ["notes-new"])
    assert candidate.error_rate == pytest.approx(0.1)
    # The 19th of 20 sorted latencies is 400 ms; estimated from Monitoring's buckets, as
    # Monitoring estimates percentiles, it lands inside 400's bucket [1.4^17, 1.4^18).
    assert candidate.p95_ms is not None and 1.4**17 <= candidate.p95_ms <= 1.4**18
    stable = Figures.of(found, ["notes-old"])
    assert stable.p95_ms is not None and 1.4**6 <= stable.p95_ms <= 1.4**7  # 10 ms's bucket
    both = Figures.of(found, ["notes-old", "notes-new"])
    assert (both.requests, both.errors) == (110, 2)


def test_data_not_yet_ingested_is_not_counted(
    gcp: Sandbox, metrics: CloudMonitoringMetrics
) -> None:
    project, now = f"mon-{uuid.uuid4().hex[:8]}", time.time()
    served(gcp, project, "notes-new", 200, [5.0] * 10, now - 1)
    gcp.run.request_log.set_delay(30)
    try:
        assert metrics.requests(target(project), now - 30, now, timeout=10) == {}
    finally:
        gcp.run.request_log.set_delay(0)
    assert metrics.requests(target(project), now - 30, now, timeout=10)["notes-new"].requests == 10


def test_monitoring_denied_is_unavailable_with_the_reason(
    gcp: Sandbox, metrics: CloudMonitoringMetrics
) -> None:
    gcp.faults.arm("monitoring_denied")
    with pytest.raises(MetricsUnavailable) as refused:
        metrics.requests(target("mon-denied"), time.time() - 60, time.time(), timeout=10)
    assert "PermissionDenied" in str(refused.value)
    assert "monitoring.timeSeries.list" in str(refused.value)
