"""The tables that gate traffic on what the candidate answers for real: `[analysis]`
(request metrics against the stable revision, `deployer/pipeline/analysis.py`) and
`[hooks]` (commands run from the candidate's image as a Cloud Run job,
`deployer/pipeline/hooks.py`)."""

from __future__ import annotations

from pydantic import Field, model_validator

from deployer.config_fields import Duration, Frozen, Seconds

# Cloud Monitoring aligns Cloud Run's metrics on periods of at least 60 s
# (google/monitoring/v3/common.proto, Aggregation.alignment_period: "must be at least 60
# seconds"), and Cloud Run samples them every 60 s: a step judged on less sees nothing.
# Preflight refuses a shorter interval against Google (`Metrics.min_interval`); the
# sandbox, whose time is scaled down for tests and the demo, takes one.
MIN_INTERVAL = 60.0
MAX_WATCH = 1800.0


class Analysis(Frozen):
    """Thresholds each traffic step must meet, measured from Cloud Monitoring.

    Rates are shares (0.01 = 1 %); `max_error_rate_increase` is how many points (as a
    share: 0.01 = 1 point) the candidate's 5xx rate may exceed the stable revision's.
    """

    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_error_rate_increase: float | None = Field(None, ge=0, le=1)
    max_latency_p95_ms: float | None = Field(None, gt=0, le=3_600_000)
    max_latency_p95_ratio: float | None = Field(None, ge=1, le=1000)
    # Requests the candidate must have answered in a step before it is judged.
    min_requests: int = Field(50, ge=1, le=100_000)
    # Seconds each step lasts at least (replaces `rollout.step_wait` when analysis is on).
    interval: Seconds = MIN_INTERVAL
    # Paths of the synthetic requests sent to the candidate's tag URL when real traffic
    # is too thin; None: the health check's path; []: none are sent.
    synthetic_paths: list[str] | None = None
    # Seconds to keep comparing after verify (0: no watch), against the stable revision's
    # figures from before the rollout.
    watch: float = Field(0, ge=0, le=MAX_WATCH)

    @model_validator(mode="after")
    def _judges_something(self) -> Analysis:
        if not self.thresholds():
            raise ValueError(
                "analysis needs a threshold: max_error_rate, max_error_rate_increase, "
                "max_latency_p95_ms or max_latency_p95_ratio"
            )
        for path in self.synthetic_paths or []:
            if not path.startswith("/") or any(c.isspace() for c in path):
                raise ValueError(f"synthetic path {path!r} must start with / and hold no spaces")
        return self

    def thresholds(self) -> dict[str, float]:
        """The thresholds set, by name."""
        named = {
            "max_error_rate": self.max_error_rate,
            "max_error_rate_increase": self.max_error_rate_increase,
            "max_latency_p95_ms": self.max_latency_p95_ms,
            "max_latency_p95_ratio": self.max_latency_p95_ratio,
        }
        return {name: value for name, value in named.items() if value is not None}

    def relative(self) -> bool:
        """Whether a threshold compares with the stable revision."""
        return self.max_error_rate_increase is not None or self.max_latency_p95_ratio is not None

    def absolute(self) -> bool:
        """Whether a threshold judges the candidate on its own figures."""
        return self.max_error_rate is not None or self.max_latency_p95_ms is not None


class Hook(Frozen):
    """A command run once from the candidate's image, as a Cloud Run job execution."""

    command: list[str] = Field(min_length=1)
    timeout: Duration = 600
    # postdeploy only: whether its failure rolls the deploy back (else it is reported).
    rollback_on_failure: bool = False


class Hooks(Frozen):
    """`predeploy` runs after health (and approval), before the first traffic step: a
    deploy nobody approved changes no schema. `postdeploy` runs after verify."""

    predeploy: Hook | None = None
    postdeploy: Hook | None = None

    @model_validator(mode="after")
    def _rollback_only_after(self) -> Hooks:
        if self.predeploy is not None and self.predeploy.rollback_on_failure:
            raise ValueError(
                "predeploy.rollback_on_failure means nothing: a failed predeploy hook "
                "always stops the deploy before traffic moves"
            )
        return self
