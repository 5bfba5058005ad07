"""Moving traffic to a healthy candidate: the traffic steps, the gate between them, verify.

promote   for each configured step: route it, read it back, then gate it; a resumed
          run starts from the step the candidate already reached
gate      between steps, the candidate itself (its tag URL) must answer well
          `consecutive` times in a row, and keep answering well for `step_wait`
          seconds: a randomly routed request to the service URL proves nothing
          about the candidate at 10 %. With `[analysis]`, the step is judged on
          request metrics instead of the `step_wait` probes (`analysis.py`)
verify    100 % on the candidate, read back; the service URL healthy on its commit
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from deployer.pipeline import failpoints, traffic
from deployer.pipeline.analysis import StepAnalysis
from deployer.pipeline.ports import Platform, TrafficShare
from deployer.pipeline.preflight import Plan
from deployer.pipeline.probes import probe_once, verify_serving
from deployer.pipeline.stages import Deadline, Done, StageFailed, StageRunner


@dataclass
class Rollout:
    """Promote and verify stages of one deploy."""

    platform: Platform
    runner: StageRunner
    plan: Plan

    def promote(self, deadline: Deadline) -> Done:
        record, services = self.runner.record, self.platform.services
        candidate = record.candidate_revision
        assert candidate is not None and record.commit is not None
        steps = self.plan.settings.rollout.steps
        if not self.plan.keep:
            return self._whole(candidate, steps, deadline)
        reached = self._reached(candidate)
        if reached:
            self.runner.progress(f"resumed with {reached}% already on {candidate}")
        analysis = self._analysis()
        if analysis is not None:
            analysis.measure_stable_before(deadline)
        for number, percent in enumerate(steps, start=1):
            if percent < reached:
                continue
            split = traffic.split_towards(candidate, percent, self.plan.keep)
            if percent == 100:
                split = [TrafficShare(candidate, 100, "")]
            outcome = services.route(self.plan.service, split, deadline.left())
            if not outcome.ok:
                raise StageFailed(f"traffic step {percent}% failed", outcome.message)
            # Said as read back: the candidate first, then what else serves.
            served = sorted(traffic.serving(outcome.state), key=lambda pair: pair[0] != candidate)
            split_text = ", ".join(f"{pct}% on {revision}" for revision, pct in served)
            self.runner.progress(f"traffic {split_text} ({number}/{len(steps)})")
            failpoints.reached(f"promote.step{number}", record.attempt)
            if percent < 100:
                self._gate(percent, deadline, analysis)
        return Done(f"100% on {candidate}")

    def _analysis(self) -> StepAnalysis | None:
        rules = self.plan.settings.analysis
        if rules is None:
            return None
        return StepAnalysis(self.platform, self.runner, self.plan, rules)

    def _whole(self, candidate: str, steps: list[int], deadline: Deadline) -> Done:
        """Nothing served before this deploy: the candidate took all traffic when it became
        ready (Cloud Run's traffic adds up to 100%, and no other revision could hold a
        share), so steps have nothing to step from. Only its candidate tag goes."""
        outcome = self.platform.services.route(
            self.plan.service, [TrafficShare(candidate, 100, "")], deadline.left()
        )
        if not outcome.ok:
            raise StageFailed("could not clear the candidate tag", outcome.message)
        if len(steps) > 1:
            # Said as read back, as every traffic step is.
            served = traffic.serving(outcome.state)
            split_text = ", ".join(f"{pct}% on {revision}" for revision, pct in served)
            plan = " -> ".join(f"{step}%" for step in steps)
            self.runner.progress(
                f"traffic {split_text}: nothing else serves, so the first of the steps "
                f"{plan} gives {candidate} all of it"
            )
        if self.plan.current is None:
            return Done(f"first revision {candidate} takes 100%")
        return Done(f"{candidate} takes 100%: nothing served before")

    def _reached(self, candidate: str) -> int:
        """The percent the candidate serves now (a resumed run's earlier steps), read back."""
        state = self.platform.services.current(self.plan.service)
        return sum(percent for revision, percent in traffic.serving(state) if revision == candidate)

    def _service_url(self) -> str:
        """The service's own URL (saved at ready; read again for a record saved before)."""
        record = self.runner.record
        if not record.service_url:
            state = self.platform.services.current(self.plan.service)
            record.service_url = state.uri if state else None
        return record.service_url or ""

    def _gate(self, percent: int, deadline: Deadline, analysis: StepAnalysis | None) -> None:
        """The candidate's own URL answers well `consecutive` times, then for `step_wait` s,
        or, with analysis, through the step's judged window."""
        record = self.runner.record
        assert record.candidate_url is not None and record.commit is not None
        check = self.plan.service.health
        audience = traffic.audience(
            self.plan.settings.run.allow_unauthenticated, self._service_url()
        )
        url = record.candidate_url + check.path
        soak_end = time.monotonic() + min(self.plan.settings.rollout.step_wait, deadline.left())
        outcome = self.platform.health.check(
            url, check, record.commit, deadline.left(), audience, self.runner.progress
        )
        if not outcome.ok:
            raise StageFailed(f"candidate unhealthy at {percent}%: {outcome.message}", outcome.body)
        if analysis is not None:
            analysis.judge_step(percent, deadline)
            failpoints.reached(f"analysis.step{percent}", self.runner.record.attempt)
            return
        while (left := soak_end - time.monotonic()) > 0:
            time.sleep(min(check.interval, left))
            outcome = probe_once(
                self.platform.health,
                check,
                record.candidate_url,
                commit=record.commit,
                timeout=max(0.1, min(check.request_timeout * check.failures, deadline.left())),
                audience=audience,
                progress=self.runner.progress,
            )
            if not outcome.ok:
                raise StageFailed(
                    f"candidate unhealthy at {percent}%: {outcome.message}", outcome.body
                )

    def verify(self, deadline: Deadline) -> Done:
        record = self.runner.record
        candidate = record.candidate_revision
        assert candidate is not None and record.commit is not None
        uri = verify_serving(
            self.platform,
            self.plan.service,
            candidate,
            record.commit,
            self.plan.settings.run.allow_unauthenticated,
            deadline,
            self.runner.progress,
            unhealthy="service URL unhealthy after promotion",
        )
        return Done(f"{uri} serves {record.commit[:12]} from {candidate}", link=uri)
