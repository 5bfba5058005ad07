"""`POST /_sandbox/traffic`: loopback requests to a real service's URL, split as its traffic says.

Over the wire end to end: the service is created and split through Cloud Run's API, faults
are armed and traffic sent through the control endpoint, and what the router recorded is
read from the sandbox's request log.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from tests.conftest import PROJECT
from tests.run_world import OP_TIMEOUT, create, short, template, unique

REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


def _pinned(revision: str, percent: int) -> run_v2.TrafficTarget:
    return run_v2.TrafficTarget(type_=REVISION, revision=revision, percent=percent)


def test_traffic_is_split_and_a_faulty_candidate_answers_500(
    gcp: Sandbox, services: run_v2.ServicesClient, image: str
) -> None:
    control = f"{gcp.http.url}/_sandbox"
    stable = create(services, unique("tf"), image)
    current = short(stable.latest_ready_revision)
    candidate = f"{short(stable.name)}-cand"
    # Bound to the next created revision: the candidate, not the stable one.
    armed = httpx.post(f"{control}/faults", json={"kind": "error_rate", "rate": 1})
    assert armed.status_code == 201
    canary = run_v2.Service(stable)
    canary.template = template(image, revision=candidate, APP_COMMIT="new")
    canary.traffic = [_pinned(current, 50), _pinned(candidate, 50)]
    services.update_service(service=canary).result(timeout=OP_TIMEOUT)
    started = time.time()

    answer = httpx.post(
        f"{control}/traffic",
        json={"service": stable.name, "rps": 50, "seconds": 2, "path": "/"},
        timeout=60,
    )

    assert answer.status_code == 200, answer.text
    sent = answer.json()
    assert (sent["sent"], sent["errors"], sent["url"]) == (100, 0, stable.uri)
    by_revision = sent["revisions"]
    assert set(by_revision) == {current, candidate}
    assert 25 <= by_revision[current] <= 75
    assert sent["statuses"] == {"200": by_revision[current], "500": by_revision[candidate]}
    logged = [
        record
        for record in gcp.run.request_log.between(started, time.time() + 1, project=PROJECT)
        if record.service == short(stable.name)
    ]
    assert Counter((r.revision, r.status) for r in logged) == Counter(
        {(current, 200): by_revision[current], (candidate, 500): by_revision[candidate]}
    )


def test_latency_fault_shows_in_the_recorded_latencies(
    gcp: Sandbox, services: run_v2.ServicesClient, image: str
) -> None:
    control = f"{gcp.http.url}/_sandbox"
    service = create(services, unique("tl"), image)
    revision = short(service.latest_ready_revision)
    armed = httpx.post(
        f"{control}/faults", json={"kind": "latency", "ms": 120, "revision": revision}
    )
    assert armed.status_code == 201
    started = time.time()

    answer = httpx.post(
        f"{control}/traffic",
        json={"service": service.name, "rps": 20, "seconds": 1},
        timeout=60,
    )

    assert answer.status_code == 200, answer.text
    assert answer.json()["statuses"] == {"200": 20}
    logged = [
        record
        for record in gcp.run.request_log.between(started, time.time() + 1)
        if record.service == short(service.name)
    ]
    assert len(logged) == 20
    assert all(record.latency_ms >= 120 for record in logged)


def test_traffic_to_an_unknown_service_is_404(gcp: Sandbox) -> None:
    answer = httpx.post(
        f"{gcp.http.url}/_sandbox/traffic",
        json={"service": f"projects/{PROJECT}/locations/x/services/nope", "rps": 1, "seconds": 1},
    )

    assert answer.status_code == 404
    assert "no service" in answer.json()["error"]


def test_traffic_is_bounded(gcp: Sandbox) -> None:
    url = f"{gcp.http.url}/_sandbox/traffic"
    service = f"projects/{PROJECT}/locations/x/services/s"

    too_fast = httpx.post(url, json={"service": service, "rps": 201, "seconds": 1})
    too_long = httpx.post(url, json={"service": service, "rps": 1, "seconds": 121})
    unnamed = httpx.post(url, json={"service": "s", "rps": 1, "seconds": 1})

    assert [r.status_code for r in (too_fast, too_long, unnamed)] == [400, 400, 400]
    assert "rps must be a whole number from 1 to 200" in too_fast.json()["error"]
    assert "at most 120" in too_long.json()["error"]
    assert "projects/P/locations/L/services/S" in unnamed.json()["error"]
    assert httpx.get(url).status_code == 405
