"""The router's request log and the faults that shift what it records: `error_rate`, `latency`.

Requests go over real HTTP through the router to echo servers standing in for revisions;
the log is read as the sandbox's Cloud Monitoring reads it (`RequestLog.between`).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from deployer_sandbox.cloud_run.request_log import RequestLog, RequestRecord
from deployer_sandbox.cloud_run.router import Router
from deployer_sandbox.common.faults import FaultError, Faults

SERVICE = "projects/p/locations/europe-west1/services/metered"


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"ok"
        # The app's own 404, so the log is seen to keep the app's statuses too.
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def backends() -> Iterator[list[str]]:
    """Two apps standing in for revisions r1 and r2; their URLs."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Ok) for _ in range(2)]
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield [f"http://127.0.0.1:{server.server_address[1]}" for server in servers]
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def router(faults: Faults, backends: list[str]) -> Iterator[Router]:
    """SERVICE split 50/50 over r1 and r2, r2 also at the tag `canary`; anyone may call it."""
    running = Router(faults)
    running.set_public(SERVICE, True)
    running.update(
        SERVICE,
        [("r1", backends[0], 50), ("r2", backends[1], 50)],
        {"canary": ("r2", backends[1])},
    )
    yield running
    running.close()


def _logged(router: Router, expected: int | None = None) -> list[RequestRecord]:
    """The log; with `expected`, once it holds that many (a record is written after the
    answer's last byte, so the client may read an answer before its record lands)."""
    deadline = time.monotonic() + 5
    while True:
        records = router.request_log.between(0, time.time() + 1)
        if expected is None or len(records) >= expected or time.monotonic() > deadline:
            return records
        time.sleep(0.01)


def test_each_request_is_recorded_under_the_revision_that_answered(router: Router) -> None:
    before = time.time()
    with httpx.Client() as client:
        answered = Counter(
            client.get(f"{router.service_url(SERVICE)}/").headers["X-Sandbox-Revision"]
            for _ in range(40)
        )
        client.get(f"{router.tag_url(SERVICE, 'canary')}/missing")
        client.get(f"{router.service_url(SERVICE)}/health")

    records = _logged(router, expected=42)
    assert len(records) == 42
    assert Counter(r.revision for r in records[:40]) == answered
    # The last two went to different listeners, so their records may land in either order.
    tagged, probe = sorted(records[40:], key=lambda r: r.status, reverse=True)
    assert (tagged.revision, tagged.status) == ("r2", 404)
    assert probe.status == 200
    assert {(r.project, r.location, r.service) for r in records} == {
        ("p", "europe-west1", "metered")
    }
    assert all(before <= r.at <= time.time() and 0 < r.latency_ms < 5_000 for r in records)


def test_answers_without_a_revision_are_not_recorded(faults: Faults) -> None:
    router = Router(faults)
    try:
        # Private and with no ready revision: the door's 403, then the route's 503.
        assert httpx.get(router.service_url(SERVICE)).status_code == 403
        router.set_public(SERVICE, True)
        assert httpx.get(router.service_url(SERVICE)).status_code == 503
    finally:
        router.close()

    assert _logged(router) == []


def test_unreachable_revision_is_recorded_as_the_routers_503(faults: Faults) -> None:
    router = Router(faults)
    router.set_public(SERVICE, True)
    router.update(SERVICE, [("gone", "http://127.0.0.1:9", 100)], {})
    try:
        assert httpx.get(router.service_url(SERVICE)).status_code == 503
    finally:
        router.close()

    assert [(r.revision, r.status) for r in _logged(router, expected=1)] == [("gone", 503)]


def test_error_rate_one_fails_every_request_but_health(router: Router, faults: Faults) -> None:
    faults.arm("error_rate", rate=1.0, revision="r2")
    canary = router.tag_url(SERVICE, "canary")

    with httpx.Client() as client:
        failed = client.get(f"{canary}/")
        probes = [client.get(f"{canary}{path}").status_code for path in ("/health", "/healthz")]
        other = [client.get(f"{router.service_url(SERVICE)}/") for _ in range(30)]

    assert failed.status_code == 500
    assert failed.headers["X-Sandbox-Revision"] == "r2"
    assert "error_rate" in failed.text
    # /healthz is a health path for the router: the echo app answers it 200.
    assert probes == [200, 200]
    by_revision = Counter((r.headers["X-Sandbox-Revision"], r.status_code) for r in other)
    assert set(by_revision) <= {("r1", 200), ("r2", 500)}
    logged = Counter((r.revision, r.status) for r in _logged(router, expected=33))
    assert logged[("r2", 500)] == 1 + by_revision[("r2", 500)]


def test_error_rate_fails_about_its_share(router: Router, faults: Faults) -> None:
    # Bound to no revision (none was created since): every revision meets it.
    faults.arm("error_rate", rate=0.3)

    with httpx.Client() as client:
        statuses = Counter(
            client.get(f"{router.service_url(SERVICE)}/").status_code for _ in range(300)
        )

    # 300 draws at 0.3: the mean is 90, the standard deviation about 8.
    assert 50 <= statuses[500] <= 130
    assert statuses[500] + statuses[200] == 300


def test_latency_slows_every_request_of_its_revision(router: Router, faults: Faults) -> None:
    faults.arm("latency", ms=400, revision="r2")
    canary = router.tag_url(SERVICE, "canary")

    with httpx.Client() as client:
        started = time.monotonic()
        assert client.get(f"{canary}/health").status_code == 200
        waited = time.monotonic() - started
        fast = [client.get(f"{router.service_url(SERVICE)}/") for _ in range(20)]

    assert waited >= 0.4
    slow, *rest = _logged(router, expected=21)
    assert (slow.revision, slow.status) == ("r2", 200)
    assert slow.latency_ms >= 400
    for record, response in zip(rest, fast, strict=True):
        assert (record.latency_ms >= 400) == (response.headers["X-Sandbox-Revision"] == "r2")


def test_revision_faults_bind_to_the_next_created_revision(faults: Faults) -> None:
    faults.arm("error_rate", rate=1)
    faults.arm("latency", ms=10)
    faults.bind_new_revision("svc-00002-new")

    assert [(f["kind"], f["revision"]) for f in faults.snapshot()] == [
        ("error_rate", "svc-00002-new"),
        ("latency", "svc-00002-new"),
    ]
    assert faults.take("error_rate", "svc-00001-old") is None
    assert faults.take("error_rate", "svc-00002-new") is not None
    # Until cleared: a take consumes nothing.
    assert len(faults.snapshot()) == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rate": 1.5}, "rate, the share of requests answered 500, from 0 to 1"),
        ({"rate": "half"}, "from 0 to 1"),
        ({}, "error_rate needs rate"),
    ],
)
def test_error_rate_needs_a_share(faults: Faults, params: dict[str, object], message: str) -> None:
    with pytest.raises(FaultError, match=message):
        faults.arm("error_rate", **params)


@pytest.mark.parametrize("ms", [0, -5, 60_001, 1.5, True, None])
def test_latency_needs_whole_milliseconds(faults: Faults, ms: object) -> None:
    with pytest.raises(FaultError, match="latency needs ms"):
        faults.arm("latency", ms=ms)


def test_the_log_hides_what_monitoring_has_not_ingested_yet() -> None:
    now = [1_000.0]
    log = RequestLog(clock=lambda: now[0])
    for at in (900.0, 990.0, 999.0):
        log.record(RequestRecord("p", "r", "s", "s-1", at, 200, 1.0))
    log.record(RequestRecord("other", "r", "s", "s-1", 900.5, 200, 1.0))

    assert [r.at for r in log.between(0, 2_000)] == [900.0, 990.0, 999.0, 900.5]
    assert [r.at for r in log.between(900, 999, project="p")] == [900.0, 990.0]
    log.set_delay(60)
    assert [r.at for r in log.between(0, 2_000, project="p")] == [900.0]
    now[0] = 1_059.0
    assert [r.at for r in log.between(0, 2_000, project="p")] == [900.0, 990.0, 999.0]
    log.clear()
    assert log.between(0, 2_000) == []


def test_the_log_keeps_only_the_newest_records() -> None:
    log = RequestLog(capacity=3)
    for at in range(5):
        log.record(RequestRecord("p", "r", "s", "s-1", float(at), 200, 1.0))

    assert [r.at for r in log.between(0, 10)] == [2.0, 3.0, 4.0]
