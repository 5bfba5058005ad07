"""Analysis: each traffic step judged on what the candidate answered for real, against
the stable revision, from Cloud Monitoring (`[environments.X.analysis]`).

    before the first step   the stable revision's figures over the `LOOKBACK` before the
                            rollout began, saved once in the record (`stable_before`): what
                            the candidate is compared with when stable is too quiet in a
                            window, and throughout the watch
    each step below 100 %   1. wait `interval` seconds (traffic flows as the step routed it)
                            2. read the window from Monitoring; when the candidate answered
                               fewer than `min_requests`, send the gap as synthetic requests
                               to its tag URL (`synthetic_paths`; in the watch, where it
                               serves everything, the service URL), said in the thread; their
                               answers are the early signal: a breach of an absolute
                               threshold among them fails the step at once
                            3. wait until Monitoring has `min_requests` of the candidate's
                               requests in the window (its data lags, by up to minutes in
                               production), bounded by the stage's deadline
                            4. judge (`analysis_verdict`): pass, or fail with the numbers,
                               which rolls the deploy back as any failed step does
    anything unmeasurable   fails closed with the reason: Monitoring denied or down, no
                            data before the deadline, nothing to compare with

Each judged window is kept in `record.analysis` (the thread's chart and the terminal's
table are drawn from it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from deployer.config import Analysis
from deployer.pipeline.analysis_verdict import judge
from deployer.pipeline.measurements import (
    Figures,
    Latencies,
    Measurement,
    MetricsUnavailable,
    RevisionRequests,
)
from deployer.pipeline.ports import Platform
from deployer.pipeline.preflight import Plan
from deployer.pipeline.stages import Deadline, StageFailed, StageRunner
from deployer.pipeline.traffic import audience

LOOKBACK = 600.0  # seconds before the rollout whose figures stand for the stable revision
DATA_POLL = 2.0  # seconds between two reads while Monitoring's data is still arriving
NEWS_EVERY = 30.0  # seconds between two "still waiting for Monitoring" lines
# Synthetic latencies are kept in Monitoring's own kind of buckets, so their p95 is
# estimated the same way (1 ms to about 10 minutes, x1.4 each).
SYNTHETIC_BOUNDS = tuple(1.4**i for i in range(41))


@dataclass
class Window:
    """One window being measured: where it starts, the candidate's share meanwhile."""

    phase: str  # "step" or "watch"
    percent: int
    start: float  # epoch seconds


@dataclass
class StepAnalysis:
    """Measures and judges windows of one deploy's candidate."""

    platform: Platform
    runner: StageRunner
    plan: Plan
    rules: Analysis

    @property
    def _stable(self) -> tuple[str, ...]:
        return tuple(share.revision for share in self.plan.keep)

    def measure_stable_before(self, deadline: Deadline) -> None:
        """The stable revision's figures before the rollout, saved once (a resumed run keeps
        the first run's, read before any traffic moved)."""
        record = self.runner.record
        if record.stable_before is not None or not self._stable:
            return
        end = time.time()
        by_revision = self._read(end - LOOKBACK, end, deadline)
        record.stable_before = Figures.of(by_revision, self._stable)
        self.runner.save()
        self.runner.progress(
            f"stable {', '.join(self._stable)} before the rollout (last "
            f"{LOOKBACK / 60:.0f} min, from Cloud Monitoring): {record.stable_before.describe()}"
        )

    def judge_step(self, percent: int, deadline: Deadline) -> None:
        """Wait out the step's interval, measure it, judge it; StageFailed when it fails."""
        window = Window("step", percent, time.time())
        self._wait(self.rules.interval, deadline)
        self.judge(window, deadline)

    def judge(self, window: Window, deadline: Deadline) -> Measurement:
        """Measure `window` up to now (filling it with synthetic requests when thin), judge
        it, keep it in the record; StageFailed when it fails or cannot be measured."""
        first = self._read(window.start, time.time(), deadline)
        seen = Figures.of(first, [self._candidate])
        synthetic = self._fill(window, seen.requests, deadline)
        if not synthetic.requests and seen.requests >= self.rules.min_requests:
            candidate, by_revision = seen, first  # enough already: no second read
        else:
            candidate, by_revision = self._ingested(window, synthetic, deadline)
        stable, source = self._stable_figures(window, by_revision)
        verdict = judge(candidate, stable, source, self.rules)
        reasons = verdict.reasons or ((verdict.caveat,) if verdict.caveat else ())
        measurement = self._keep(
            window, candidate, stable, source, synthetic, reasons, verdict.passed
        )
        line = self._line(measurement)
        if verdict.caveat:
            line += f" ({verdict.caveat})"
        self.runner.progress(line)
        if not verdict.passed:
            raise StageFailed(f"{self._where(window)}: {'; '.join(verdict.reasons)}", line)
        return measurement

    # --- measuring ----------------------------------------------------------------------

    @property
    def _candidate(self) -> str:
        candidate = self.runner.record.candidate_revision
        assert candidate is not None
        return candidate

    def _read(self, start: float, end: float, deadline: Deadline) -> Mapping[str, RevisionRequests]:
        try:
            return self.platform.metrics.requests(
                self.plan.service, start, end, max(0.1, deadline.left())
            )
        except MetricsUnavailable as error:
            raise StageFailed(f"analysis could not read Cloud Monitoring: {error}") from None

    def _fill(self, window: Window, seen: int, deadline: Deadline) -> Figures:
        """Synthetic requests for the candidate's missing `min_requests`; what they got.
        Their answers are judged at once on the absolute thresholds: the early signal."""
        missing = self.rules.min_requests - seen
        paths = self.rules.synthetic_paths
        if paths is None:
            paths = [self.plan.service.health.path]
        record = self.runner.record
        # During the watch the candidate serves everything and its tag is gone: the
        # service's own URL reaches it. Before, only its tag URL does.
        base = record.service_url if window.phase == "watch" else record.candidate_url
        if missing <= 0 or not paths or not base:
            return Figures(0, 0, None)
        public = self.plan.settings.run.allow_unauthenticated
        answers = self.platform.health.sample(
            [base + path for path in paths],
            missing,
            audience(public, record.service_url or ""),
            max(0.1, deadline.left()),
        )
        failed = sum(1 for status, _ in answers if status is None or status >= 500)
        latencies = Latencies.of(SYNTHETIC_BOUNDS, (latency for _, latency in answers))
        figures = Figures(len(answers), failed, latencies.percentile(0.95))
        self.runner.progress(
            f"real traffic gave {self._candidate} {seen} of {self.rules.min_requests} requests "
            f"so far: sent {len(answers)} synthetic to {', '.join(paths)} "
            f"({figures.describe()})"
        )
        early = judge(figures, None, "", self.rules.model_copy(update=_RELATIVE_OFF))
        if figures.requests and not early.passed:
            reasons = tuple(f"synthetic requests: {reason}" for reason in early.reasons)
            self._keep(window, Figures(seen, 0, None), None, "", figures, reasons)
            raise StageFailed(f"{self._where(window)}: {'; '.join(reasons)}", figures.describe())
        return figures

    def _keep(
        self,
        window: Window,
        candidate: Figures,
        stable: Figures | None,
        source: str,
        synthetic: Figures,
        reasons: tuple[str, ...],
        passed: bool = False,
    ) -> Measurement:
        """Keep a judged window in the record, saved."""
        measurement = Measurement(
            phase=window.phase,
            percent=window.percent,
            start=window.start,
            end=time.time(),
            candidate=candidate,
            stable=stable,
            stable_source=source if stable is not None else "",
            synthetic=synthetic,
            passed=passed,
            reasons=reasons,
        )
        self.runner.record.analysis.append(measurement)
        self.runner.save()
        return measurement

    def _ingested(
        self, window: Window, synthetic: Figures, deadline: Deadline
    ) -> tuple[Figures, Mapping[str, RevisionRequests]]:
        """The window's figures once Monitoring has `min_requests` of the candidate's (and
        every synthetic one sent); StageFailed when the deadline comes first."""
        wanted = max(self.rules.min_requests, synthetic.requests)
        waited_since = time.monotonic()
        said = waited_since
        while True:
            by_revision = self._read(window.start, time.time(), deadline)
            candidate = Figures.of(by_revision, [self._candidate])
            if candidate.requests >= wanted:
                return candidate, by_revision
            if deadline.left() <= DATA_POLL:
                raise StageFailed(
                    f"{self._where(window)}: not judged: Cloud Monitoring had "
                    f"{candidate.requests} of the {wanted} requests {self._candidate} needs "
                    f"after waiting {time.monotonic() - waited_since:.0f} s",
                    "Cloud Run's metrics reach Monitoring minutes late; a longer "
                    "timeouts.promote gives them time, a lower min_requests needs fewer",
                )
            if time.monotonic() - said >= NEWS_EVERY:
                said = time.monotonic()
                self.runner.progress(
                    f"waiting for Cloud Monitoring: {candidate.requests} of {wanted} "
                    f"requests of {self._candidate} arrived"
                )
            time.sleep(min(DATA_POLL, deadline.left()))

    def _stable_figures(
        self, window: Window, by_revision: Mapping[str, RevisionRequests]
    ) -> tuple[Figures | None, str]:
        """What the candidate is compared with, and where it comes from (or why nothing)."""
        minimum = self.rules.min_requests
        if window.phase == "step" and self._stable:
            same = Figures.of(by_revision, self._stable)
            if same.requests >= minimum:
                return same, "same window"
            quiet = f"stable answered {same.requests} requests in the window"
        else:
            quiet = "stable serves nothing now"
        before = self.runner.record.stable_before
        if before is not None and before.requests >= minimum:
            return before, "before the rollout"
        seen = before.requests if before is not None else 0
        return None, f"{quiet} and {seen} before the rollout (fewer than {minimum})"

    def _wait(self, seconds: float, deadline: Deadline) -> None:
        end = time.monotonic() + min(seconds, deadline.left())
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(1.0, left))

    # --- saying it ----------------------------------------------------------------------

    def _where(self, window: Window) -> str:
        return f"analysis at {window.percent}%" if window.phase == "step" else "watch"

    def _line(self, measurement: Measurement) -> str:
        """ "analysis at 10%: candidate 64 requests, 0% 5xx, p95 12 ms; stable ... : pass"."""
        parts = [f"candidate {measurement.candidate.describe()}"]
        if measurement.stable is not None:
            parts.append(f"stable {measurement.stable.describe()} ({measurement.stable_source})")
        if measurement.synthetic.requests:
            parts.append(f"{measurement.synthetic.requests} of them synthetic")
        verdict = "pass" if measurement.passed else "FAIL"
        window = Window(measurement.phase, measurement.percent, measurement.start)
        return f"{self._where(window)}: {'; '.join(parts)}: {verdict}"


# The early signal judges synthetic answers on their own: no stable revision to compare.
_RELATIVE_OFF = {"max_error_rate_increase": None, "max_latency_p95_ratio": None}
