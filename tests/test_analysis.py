"""Analysis: traffic steps judged on request metrics read through the real Cloud Monitoring
client from the sandbox's Monitoring, which counts what its router answered.

Real traffic is the sandbox's loopback traffic (`POST /_sandbox/traffic`) to the service's
URL, split as the service's traffic says; faults make the candidate fail real routes
(`error_rate`, never /health) or answer slowly (`latency`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from google.cloud import monitoring_v3

from deployer.adapters.cloud_monitoring import CloudMonitoringMetrics
from deployer.adapters.google_clients import google_client
from deployer.engine import Engine
from deployer.pipeline.events import Event, StageProgressed, StageStarted
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import World, world_fixture  # noqa: F401

INTERVAL = 2.0


def analysed(world: World, steps: list[int], **rules: Any) -> None:
    """Reconfigure `world` with analysis on and these traffic steps."""
    analysis = {"interval": INTERVAL, "min_requests": 30, **rules}
    world.reconfigure(
        environment={
            "rollout": {"steps": steps, "step_wait": 0},
            "analysis": analysis,
            "timeouts": {"promote": 40, "verify": 15},
        }
    )


class Traffic:
    """Loopback traffic to the world's service, started when promotion starts."""

    def __init__(self, world: World, rps: int, seconds: float) -> None:
        self.world, self.rps, self.seconds = world, rps, seconds
        self.answer: dict[str, Any] = {}
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, StageStarted) and event.stage == Stage.PROMOTE and not self._thread:
            self._thread = threading.Thread(target=self._send, daemon=True)
            self._thread.start()

    def _send(self) -> None:
        body = {"rps": self.rps, "seconds": self.seconds, "service": self.world.service_name}
        answer = httpx.post(
            f"{self.world.sandbox.http.url}/_sandbox/traffic", json=body, timeout=120
        )
        self.answer = answer.json()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=130)


@pytest.fixture
def monitoring_delay(world: World) -> Iterator[None]:
    yield
    world.sandbox.run.request_log.set_delay(0)


def promote_lines(events: list[Event]) -> list[str]:
    return [
        e.message for e in events if isinstance(e, StageProgressed) and e.stage == Stage.PROMOTE
    ]


def test_a_candidate_failing_a_tenth_of_real_requests_is_rolled_back_at_its_first_step(
    world: World,
) -> None:
    old = world.first.candidate_revision
    analysed(world, [50, 100], max_error_rate=0.02)
    world.commit("fails one request in ten")
    world.sandbox.faults.arm("error_rate", rate=0.1)  # the next revision: the candidate
    traffic = Traffic(world, rps=100, seconds=7)

    record, events = world.deploy(listener=traffic)
    traffic.join()

    assert record.state == State.ROLLED_BACK, record.error
    assert world.serving() == [(old, 100)]
    judged = record.analysis[-1]
    assert (judged.phase, judged.percent, judged.passed) == ("step", 50, False)
    assert judged.candidate.errors >= 2 and judged.candidate.requests >= 30
    assert judged.stable is not None and judged.stable.errors == 0
    # The measured rate, as the thread and the record say it.
    measured = f"{judged.candidate.errors / judged.candidate.requests * 100:.1f}".rstrip("0")
    assert f"5xx rate {measured.rstrip('.')}% is above the maximum 2%" in record.error
    promote = record.stage(Stage.PROMOTE)
    assert promote is not None and promote.outcome == Outcome.FAILED
    assert any(
        line.startswith("analysis at 50%: candidate ") for line in promote_lines(events.events)
    )


def test_a_candidate_300_ms_slower_is_rolled_back_on_latency(world: World) -> None:
    old = world.first.candidate_revision
    analysed(world, [50, 100], max_latency_p95_ratio=3, max_latency_p95_ms=250)
    world.commit("slow")
    world.sandbox.faults.arm("latency", ms=300)
    traffic = Traffic(world, rps=60, seconds=7)

    record, _ = world.deploy(listener=traffic)
    traffic.join()

    assert record.state == State.ROLLED_BACK, record.error
    assert world.serving() == [(old, 100)]
    judged = record.analysis[-1]
    assert judged.candidate.p95_ms is not None and judged.candidate.p95_ms >= 250
    assert judged.stable is not None and judged.stable.p95_ms is not None
    assert judged.stable.p95_ms < 100
    assert "p95 latency" in record.error and "above the maximum 250 ms" in record.error


def test_a_good_candidate_under_thin_traffic_passes_on_synthetic_requests(
    world: World, monitoring_delay: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # Monitoring's data arrives late: the step waits for it, bounded by the stage timeout.
    world.sandbox.run.request_log.set_delay(1.0)
    analysed(world, [50, 100], max_error_rate=0.01, min_requests=25)
    world.commit("good")

    record, events = world.deploy()

    assert record.state == State.SUCCEEDED, record.error
    assert world.serving() == [(record.candidate_revision, 100)]
    judged = record.analysis[0]
    assert judged.passed and judged.candidate.requests >= 25
    assert 0 < judged.synthetic.requests <= 25 and judged.synthetic.errors == 0
    lines = promote_lines(events.events)
    assert any("synthetic to /health" in line for line in lines)
    # No real traffic, none before: nothing for stable to be compared on, and none needed.
    assert judged.stable is None
    # What scripts read: the same window, as `show --json` gives it.
    code, out, _ = world.cli(capsys, "show", record.id, "--json")
    assert code == 0
    windows = json.loads(out)["analysis"]["windows"]
    assert [(w["phase"], w["percent"], w["passed"]) for w in windows] == [("step", 50, True)]
    assert windows[0]["synthetic"]["requests"] == judged.synthetic.requests
    assert windows[0]["candidate"]["error_rate"] == 0


def test_monitoring_denied_fails_closed_before_traffic_moves(world: World) -> None:
    old = world.first.candidate_revision
    analysed(world, [50, 100], max_error_rate=0.01)
    world.commit("unmeasurable")
    world.sandbox.faults.arm("monitoring_denied")
    try:
        record, _ = world.deploy()
    finally:
        world.sandbox.faults.clear()

    assert record.state == State.FAILED, record.error
    assert world.serving() == [(old, 100)]
    assert "could not read Cloud Monitoring" in record.error
    assert "PermissionDenied" in record.error and "monitoring.timeSeries.list" in record.error


def test_only_relative_thresholds_and_no_stable_sample_fails_closed(world: World) -> None:
    old = world.first.candidate_revision
    analysed(world, [50, 100], max_latency_p95_ratio=2, min_requests=10)
    world.commit("nothing to compare with")

    record, _ = world.deploy()

    assert record.state == State.ROLLED_BACK, record.error
    assert world.serving() == [(old, 100)]
    assert "nothing to compare with: stable answered" in record.error


def test_a_regression_in_the_watch_window_rolls_back(world: World) -> None:
    old = world.first.candidate_revision
    analysed(
        world,
        [100],
        max_error_rate=0.05,
        min_requests=10,
        watch=3 * INTERVAL,
        synthetic_paths=["/"],
    )
    world.commit("breaks after a while")

    def regress(event: Event) -> None:
        if isinstance(event, StageStarted) and event.stage == Stage.WATCH:
            world.sandbox.faults.arm(
                "error_rate", rate=1.0, revision=event.record.candidate_revision
            )

    try:
        record, events = world.deploy(listener=regress)
    finally:
        world.sandbox.faults.clear()

    assert record.state == State.ROLLED_BACK, record.error
    assert world.serving() == [(old, 100)]
    watch = record.stage(Stage.WATCH)
    assert watch is not None and watch.outcome == Outcome.FAILED
    assert record.watch_until is not None
    assert record.analysis[-1].phase == "watch" and not record.analysis[-1].passed
    said = [
        e.message
        for e in events.events
        if isinstance(e, StageProgressed) and e.stage == Stage.WATCH
    ]
    assert any(line.startswith(f"watching {record.candidate_revision} until ") for line in said)


def test_an_interval_shorter_than_monitorings_grain_is_refused_at_preflight(world: World) -> None:
    old = world.first.candidate_revision
    analysed(world, [50, 100], max_error_rate=0.01)
    world.commit("too quick to judge")
    # The Monitoring Google runs: a 60 s grain (the sandbox's default platform allows 1 s).
    client = google_client(monitoring_v3.MetricServiceClient, world.sandbox.grpc_address)
    platform = replace(world.platform, metrics=CloudMonitoringMetrics(client, min_interval=60))
    engine = Engine(world.config, platform, world.store())

    record, _ = world.deploy(engine=engine)

    assert record.state == State.FAILED
    assert record.error == (
        "preflight: environments.prod.analysis interval is 2 s; Cloud Monitoring counts "
        "Cloud Run's requests per 60 s"
    )
    assert world.serving() == [(old, 100)] and record.build_id is None
