"""The watch: after verify, `[analysis] watch` seconds more of judged windows.

The candidate serves everything by then, so the stable revision has no traffic of its
own: each window compares the candidate with what stable answered before the rollout
began (`record.stable_before`), besides the absolute thresholds. The deploy's lock is held
throughout (the run has not ended), and the thread says until when. A window that fails
ends the stage unsuccessfully, so the deploy rolls back to the traffic that served before
it began, verified, as after any failed stage.

A run resumed after its worker was lost keeps the first run's `watch_until`: the watch
is not restarted, and if its time ran out meanwhile, the unwatched time since the last
judged window is judged before the deploy ends.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from deployer.config import Analysis
from deployer.pipeline import failpoints
from deployer.pipeline.analysis import StepAnalysis, Window
from deployer.pipeline.ports import Platform
from deployer.pipeline.preflight import Plan
from deployer.pipeline.stages import Deadline, Done, StageRunner


@dataclass
class Watch:
    """The watch stage of one deploy."""

    platform: Platform
    runner: StageRunner
    plan: Plan
    rules: Analysis

    def _unwatched_since(self) -> float:
        """Where the last judged watch window ended, or the watch's start."""
        record = self.runner.record
        assert record.watch_until is not None
        ends = [m.end for m in record.analysis if m.phase == "watch"]
        return max(ends) if ends else record.watch_until - self.rules.watch

    def watch(self, deadline: Deadline) -> Done:
        record = self.runner.record
        candidate = record.candidate_revision
        # A resumed run keeps the first run's end: the watch is not restarted by a takeover.
        if record.watch_until is None:
            record.watch_until = time.time() + self.rules.watch
            self.runner.save()
        until = datetime.fromtimestamp(record.watch_until, tz=UTC).strftime("%H:%M:%S UTC")
        self.runner.progress(
            f"watching {candidate} until {until}: each {self.rules.interval:.0f} s judged "
            "against stable's figures from before the rollout; the environment stays locked"
        )
        analysis = StepAnalysis(self.platform, self.runner, self.plan, self.rules)
        windows = 0
        while (left := record.watch_until - time.time()) > 0.5 or not windows:
            if left <= 0.5:
                # A run resumed after the watch's end (its worker was lost): the time since
                # the last judged window went unwatched, so it is judged now.
                analysis.judge(Window("watch", 100, self._unwatched_since()), deadline)
                break
            window = Window("watch", 100, time.time())
            end = time.monotonic() + min(self.rules.interval, left, deadline.left())
            while (wait := end - time.monotonic()) > 0:
                time.sleep(min(1.0, wait))
            analysis.judge(window, deadline)
            windows += 1
            failpoints.reached("watch.window", record.attempt)
        return Done(
            f"{candidate} held up for the {self.rules.watch:.0f} s watch ({windows} windows)"
        )


def watch_seconds(rules: Analysis, promote_timeout: float) -> float:
    """The watch stage's timeout: the watch, plus the time its last window may wait for
    Monitoring's data (the same budget a traffic step has)."""
    return rules.watch + promote_timeout
