"""Hand-made deploy records with an analysis: what the pipeline keeps after judging a
candidate's traffic steps and its watch, for tests of what people are shown of them."""

from __future__ import annotations

from deployer.pipeline.measurements import Figures, Measurement
from deployer.pipeline.record import DeployRecord, State

THRESHOLDS = {
    "max_error_rate": 0.01,
    "max_error_rate_increase": 0.02,
    "max_latency_p95_ms": 250.0,
    "max_latency_p95_ratio": 1.5,
}
START = 1_796_000_000.0


def window(
    phase: str,
    percent: int,
    candidate: Figures,
    stable: Figures | None,
    *,
    source: str = "same window",
    synthetic: int = 0,
    reasons: tuple[str, ...] = (),
    at: int = 0,
) -> Measurement:
    return Measurement(
        phase=phase,
        percent=percent,
        start=START + 60 * at,
        end=START + 60 * (at + 1),
        candidate=candidate,
        stable=stable,
        stable_source=source,
        synthetic=Figures(synthetic, 0, None),
        passed=not reasons,
        reasons=reasons,
    )


def judged_record(deploy_id: str = "d-chart-1") -> DeployRecord:
    """A deploy whose steps at 10 % and 50 % passed and whose first watch look failed."""
    record = DeployRecord(
        id=deploy_id,
        kind="deploy",
        environment="prod",
        service="app",
        requester="cli:ada",
        state=State.ROLLED_BACK,
        candidate_revision="app-00002-new",
        previous_revision="app-00001-old",
    )
    record.analysis = [
        window("step", 10, Figures(80, 0, 41.0), Figures(720, 1, 38.0), synthetic=30, at=0),
        window("step", 50, Figures(400, 2, 44.0), Figures(410, 1, 39.0), at=1),
        window(
            "watch",
            100,
            Figures(600, 60, 310.0),
            Figures(1130, 2, 38.5),
            source="before the rollout",
            reasons=("5xx 10% above 1%", "p95 310 ms above 250 ms"),
            at=2,
        ),
    ]
    return record
