"""Everything the command line prints: live stage progress, summaries, status and history."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TextIO

from deployer.analysis_windows import p95_text, rate_text, verdict_text, window_labels
from deployer.engine import EnvironmentStatus
from deployer.failure_detail import excerpt
from deployer.pipeline.changes import lines as changes_lines
from deployer.pipeline.events import (
    AwaitingApproval,
    DeployFinished,
    Event,
    Noted,
    StageFinished,
    StageProgressed,
    StageStarted,
)
from deployer.pipeline.record import DeployRecord, Lock, Outcome, Share, StageResult, State

_MARK = {
    Outcome.SUCCEEDED: "ok",
    Outcome.FAILED: "FAILED",
    Outcome.TIMED_OUT: "TIMED OUT",
    Outcome.CANCELLED: "CANCELLED",
}
_STATE_WORDS = {
    State.SUCCEEDED: "succeeded",
    State.FAILED: "failed; traffic did not move",
    State.ROLLED_BACK: "failed and was rolled back",
    State.CANCELLED: "was cancelled",
    State.RUNNING: "is still running",
    State.PENDING: "has not started",
    State.QUEUED: "waits for the environment's lock",
    State.ABANDONED: "was abandoned",
    State.AWAITING_APPROVAL: "awaits approval; traffic has not moved",
}


class TerminalProgress:
    """A pipeline listener printing one line per stage event, with elapsed time."""

    def __init__(self, out: TextIO | None = None) -> None:
        # Looked up now, not at import: whoever replaced sys.stdout since (a test) is heard.
        self.out = out if out is not None else sys.stdout
        self.started = time.monotonic()

    def __call__(self, event: Event) -> None:
        elapsed = f"[{time.monotonic() - self.started:6.1f}s]"
        if isinstance(event, StageStarted):
            self._print(f"{elapsed} {event.stage} ...")
        elif isinstance(event, StageProgressed):
            link = f"  {event.link}" if event.link else ""
            self._print(f"{elapsed}   {event.message}{link}")
        elif isinstance(event, StageFinished):
            result = event.result
            self._print(
                f"{elapsed} {result.stage} {_MARK[result.outcome]} in {result.duration:.1f}s: {result.summary}"
            )
            if result.detail and result.outcome != Outcome.SUCCEEDED:
                for line in excerpt(result.detail).lines():
                    self._print(f"           | {line}")
            if result.link:
                self._print(f"           {result.link}")
        elif isinstance(event, Noted):
            self._print(f"{elapsed} note: {event.text}")
        elif isinstance(event, AwaitingApproval):
            record, approval = event.record, event.approval
            self._print(
                f"{elapsed} approval: {record.candidate_revision} passed health at 0% "
                f"({record.candidate_url}); waiting for {record.approval_required} approval(s) "
                f"from {', '.join(approval.approvers)}. Traffic has not moved.\n"
                f"           approve: deployer approve {record.id}   reject: deployer reject "
                f"{record.id} --reason ...   (or the buttons in its Slack thread)"
            )
        elif isinstance(event, DeployFinished):
            if event.plan:
                self._print("plan (dry run):")
                for line in event.plan:
                    self._print(f"  - {line}")
            self._print(summary(event.record, dry_run=event.dry_run))
            if event.record.analysis and not event.dry_run:
                self._print(render_analysis(event.record))

    def _print(self, line: str) -> None:
        print(line, file=self.out, flush=True)


# A dry run that passed ends SUCCEEDED, but only preflight ran: nothing to call a success.
DRY_RUN_END = "dry run: nothing was changed"


def summary(record: DeployRecord, dry_run: bool = False) -> str:
    """One paragraph saying how a deploy or rollback ended; a dry run's ends saying that
    nothing was changed."""
    what = "rollback" if record.kind == "rollback" else "deploy"
    words = _STATE_WORDS[record.state]
    if dry_run and record.state == State.SUCCEEDED:
        words = "passed preflight"
    head = f"{what} {record.id} of {record.environment} {words}"
    lines = [head]
    if record.kind == "rollback" and record.target_revision:
        lines.append(f"  traffic: {record.previous_revision} -> {record.target_revision}")
    elif record.candidate_revision:
        lines.append(
            f"  revision: {record.candidate_revision} (previous {record.previous_revision})"
        )
    if record.commit:
        lines.append(f"  commit: {record.commit}")
    if record.final_traffic is not None:
        serving = ", ".join(f"{s.revision} {s.percent}%" for s in record.final_traffic)
        lines.append(f"  traffic now (read back): {serving or 'nothing'}")
    if record.image:
        lines.append(f"  image: {record.image}")
    if record.build_reused:
        of = f" of deploy {record.reused_from}" if record.reused_from else ""
        lines.append(f"  build: reused build {record.build_id}{of}, not built again")
    if record.build_log_url:
        lines.append(f"  build log: {record.build_log_url}")
    if record.error and record.state != State.SUCCEEDED:
        lines.append(f"  error: {record.error}")
    if dry_run:
        lines.append(DRY_RUN_END)
    return "\n".join(lines)


_ANALYSIS_HEAD = (
    "window",
    "requests",
    "5xx",
    "p95",
    "stable 5xx",
    "stable p95",
    "stable from",
    "synthetic",
    "verdict",
)


def render_analysis(record: DeployRecord) -> str:
    """The analysis as a compact table, one row per judged window (the chart in Slack, in text).

    The candidate's requests, 5xx rate and p95; stable's 5xx rate and p95 and where they
    came from (the same window, or before the rollout during the watch); how many of the
    candidate's requests were the deployer's own synthetic ones; the verdict.
    """
    rows = [_ANALYSIS_HEAD]
    for label, window in zip(window_labels(record.analysis), record.analysis, strict=True):
        stable = window.stable
        rows.append(
            (
                label,
                str(window.candidate.requests),
                rate_text(window.candidate),
                p95_text(window.candidate),
                rate_text(stable),
                p95_text(stable),
                window.stable_source or "-",
                str(window.synthetic.requests),
                verdict_text(window),
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(_ANALYSIS_HEAD) - 1)]
    lines = ["analysis (candidate against stable, per window):"]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  " + "  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _lock_line(lock: Lock) -> str:
    what = "locked by" if lock.kind == "manual" else "deploy running:"
    reason = f" ({lock.reason})" if lock.reason and lock.kind == "manual" else ""
    lost = ""
    if lock.expired(time.time()):
        ago = time.time() - lock.lease_until
        lost = f"; its worker was lost (lease ran out {ago:.0f}s ago): `deployer sweep` resumes it"
    return f"  {what} {lock.holder}{reason} since {_when(lock.created_at)}{lost}"


def render_status(statuses: list[EnvironmentStatus]) -> str:
    """What runs where, environment by environment."""
    blocks = []
    for status in statuses:
        lines = [f"{status.environment}: {status.service} in {status.location}"]
        if status.problem:
            lines.append(f"  {status.problem}")
        else:
            lines.append(f"  url: {status.uri}")
            for row in status.serving:
                commit = row.commit[:12] if row.commit else "unknown commit"
                lines.append(
                    f"  {row.percent:3d}% {row.name}  {commit}  {row.image or ''}".rstrip()
                )
                if row.deployed_by and row.deployed_at is not None:
                    lines.append(
                        f"       deployed by {row.deployed_by} at {_when(row.deployed_at)}"
                        f" ({row.deploy_id})"
                        + (f", promoted from {row.promoted_from}" if row.promoted_from else "")
                    )
            for row in status.tagged:
                lines.append(f"    0% {row.name} (tag {row.tag})")
            if status.health is not None:
                health = "healthy" if status.health.ok else f"UNHEALTHY: {status.health.message}"
                lines.append(f"  health now: {health}")
        if status.last is not None:
            last = status.last
            lines.append(
                f"  last {last.kind}: {last.id} by {last.requester} at {_when(last.created_at)}, {last.state}"
            )
        lines.extend(_lock_line(lock) for lock in status.locks)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def render_history(environment: str, records: list[DeployRecord]) -> str:
    """The environment's deploys and rollbacks, newest first."""
    if not records:
        return f"{environment}: no deploys yet"
    lines = [f"{environment}: last {len(records)}"]
    for record in records:
        target = record.target_revision if record.kind == "rollback" else record.candidate_revision
        commit = (record.commit or "")[:12]
        lines.append(
            f"  {_when(record.created_at)}  {record.id}  {record.kind:8}  {record.state:11}  "
            f"{commit:12}  {target or '-'}  {record.requester}"
        )
    return "\n".join(lines)


def _shares(shares: list[Share] | None, empty: str) -> str:
    if shares is None:
        return "not read yet"
    text = ", ".join(
        f"{s.revision} {s.percent}%" + (f" (tag {s.tag})" if s.tag else "") for s in shares
    )
    return text or empty


def _stage_line(result: StageResult) -> list[str]:
    lines = [
        f"  {result.stage:9} {_MARK[result.outcome]:9} {result.duration:6.1f}s  {result.summary}"
    ]
    if result.detail and result.outcome != Outcome.SUCCEEDED:
        lines.extend(f"      | {line}" for line in excerpt(result.detail).lines())
    if result.link:
        lines.append(f"      {result.link}")
    return lines


def render_record(
    record: DeployRecord, thread_url: str = "", lock: Lock | None = None, now: float | None = None
) -> str:
    """One deploy or rollback in full: `deployer show ID`."""
    now = time.time() if now is None else now
    lines = [
        f"{record.kind} {record.id} of {record.environment} ({record.service}): {record.state}"
    ]
    ref = f", ref {record.ref}" if record.ref else ""
    lines.append(f"  requested by {record.requester} at {_when(record.created_at)}{ref}")
    if record.queued_at is not None:
        lines.append(f"  queued at {_when(record.queued_at)}")
    if record.commit:
        lines.append(f"  commit: {record.commit}")
    if record.kind == "rollback":
        lines.append(f"  traffic: {record.previous_revision} -> {record.target_revision}")
    elif record.candidate_revision:
        lines.append(
            f"  revision: {record.candidate_revision} (previous {record.previous_revision})"
        )
    lines.append(f"  attempt {record.attempt}; last saved {_when(record.updated_at)}")
    if record.running_stage is not None:
        lines.append(f"  now in: {record.running_stage}")
    if record.cancel_requested or record.cancelled_by:
        asked = "cancelled" if record.state == State.CANCELLED else "cancel requested"
        lines.append(f"  {asked} by {record.cancelled_by or 'a request'}")
    if record.abandoned_by:
        lines.append(f"  abandoned by {record.abandoned_by}")
    if record.promoted_from:
        lines.append(
            f"  promoted from {record.promoted_from} (its revision {record.promoted_revision})"
        )
    if record.approval_required:
        due = f", waiting until {_when(record.approval_due_at)}" if record.approval_due_at else ""
        lines.append(f"  approval: {record.approval_required} wanted{due}")
        for vote in record.votes:
            why = f": {vote.reason}" if vote.reason else ""
            lines.append(f"    {vote.verdict}d by {vote.who} at {_when(vote.at)}{why}")
    if record.break_glass is not None:
        glass = record.break_glass
        broke = f", overriding {glass.window}" if glass.window else " (the window was open)"
        lines.append(f"  BREAK-GLASS by {glass.by}: {glass.reason}{broke}")
    if record.error:
        lines.append(f"  error: {record.error}")
    if record.changes is not None:
        lines.append("changes (before traffic moved):")
        lines.extend(f"  {line}" for line in changes_lines(record.changes))
    lines.append("stages:" if record.stages else "stages: none yet")
    for result in record.stages:
        lines.extend(_stage_line(result))
    if record.analysis:
        lines.append(render_analysis(record))
    if record.notes:
        lines.append("notes:")
        lines.extend(f"  {_when(item.at)}  {item.text}" for item in record.notes)
    lines.append(f"traffic before: {_shares(record.baseline_traffic, 'none (no service yet)')}")
    lines.append(f"traffic after (read back): {_shares(record.final_traffic, 'none')}")
    if record.build_id:
        reused = ""
        if record.build_reused:
            reused = f" (reused from deploy {record.reused_from or 'unknown'})"
        lines.append(f"build: {record.build_id}{reused}")
    if record.rebuild:
        lines.append("rebuild: asked (--rebuild), no earlier build reused")
    if record.build_log_url:
        lines.append(f"build log: {record.build_log_url}")
    if record.image:
        lines.append(f"image: {record.image}")
    if thread_url:
        lines.append(f"thread: {thread_url}")
    elif record.slack_channel:
        lines.append(
            f"thread: channel {record.slack_channel}, ts {record.slack_ts or 'not posted yet'}"
        )
    lines.append(f"lock: {_lease(lock, now)}")
    return "\n".join(lines)


def _lease(lock: Lock | None, now: float) -> str:
    if lock is None:
        return "not held"
    owner = lock.owner or "nobody yet (handed over)"
    if not lock.lease_until:
        return f"held by {owner}, no lease"
    expired = " (expired: the run is presumed dead)" if lock.expired(now) else ""
    return f"held by {owner}, lease until {_when(lock.lease_until)}{expired}"
