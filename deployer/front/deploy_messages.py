"""The deploy thread's words: the parent (headline, details, stage checklist, buttons) and replies.

Failures get a reply with their detail (a build step, the container's key and
last lines, the health answer); successes stay in the parent's checklist, except the
health answer and a rollback done. User text is escaped everywhere.
"""

from __future__ import annotations

import re
from typing import Any

from deployer.front.approval_messages import approval_buttons, approval_line, promote_buttons
from deployer.front.change_messages import changes_text
from deployer.front.mrkdwn import (
    button,
    code,
    context,
    detail_block,
    duration,
    escape,
    image_ref,
    link,
    person,
    plain,
    said,
    says,
    section,
)
from deployer.front.ports import SlackMessage
from deployer.pipeline.record import (
    DEPLOY_STAGES,
    ROLLBACK_STAGES,
    DeployRecord,
    Outcome,
    Stage,
    StageResult,
    State,
)

# Button action ids; each button's value is the deploy id.
CANCEL, ROLLBACK, RETRY = "deploy_cancel", "deploy_rollback", "deploy_retry"

_MARK = {
    Outcome.SUCCEEDED: ("✓", "done in"),
    Outcome.FAILED: ("✗", "failed after"),
    Outcome.TIMED_OUT: ("⏱", "timed out after"),
    Outcome.CANCELLED: ("⊘", "cancelled after"),
}
_FAILED_AT = {
    Outcome.FAILED: "failed at",
    Outcome.TIMED_OUT: "timed out at",
    Outcome.CANCELLED: "was cancelled at",
}


def _stages(record: DeployRecord) -> list[Stage]:
    """The stages the checklist shows, in the order they run: those every deploy has, and
    those this one ran besides (approval, hooks, the watch, a rollback)."""
    stages = set(ROLLBACK_STAGES if record.kind == "rollback" else DEPLOY_STAGES)
    if record.approval_required and record.kind != "rollback":
        stages.add(Stage.APPROVAL)
    stages.update(result.stage for result in record.stages)
    return [stage for stage in Stage if stage in stages]


def _guess_running(record: DeployRecord) -> Stage | None:
    if record.state != State.RUNNING:
        return None
    if any(r.outcome != Outcome.SUCCEEDED for r in record.stages):
        return Stage.ROLLBACK if record.stage(Stage.ROLLBACK) is None else None
    return next((s for s in _stages(record) if record.stage(s) is None), None)


def _checklist(
    record: DeployRecord, now: float, running: Stage | None, since: float | None, activity: str
) -> str:
    running = running or _guess_running(record)
    stages = _stages(record)
    if running is not None and running not in stages:
        stages.append(running)
    if since is None and running is not None:
        last = record.stages[-1] if record.stages else None
        since = last.started_at + last.duration if last else record.created_at
    lines = []
    for stage in stages:
        result = record.stage(stage)
        if stage == Stage.APPROVAL and record.state == State.AWAITING_APPROVAL:
            lines.append(f"⏸ *{stage}* — waiting for people; no worker runs meanwhile")
        elif stage == running and record.state in (State.RUNNING, State.PENDING):
            doing = f" · {escape(activity)}" if activity else ""
            elapsed = duration(max(0.0, now - (since or now)))
            lines.append(f"▶ *{stage}* — running for {elapsed}{doing}")
        elif result is not None:
            mark, words = _MARK[result.outcome]
            reused = ""
            if stage == Stage.BUILD and record.build_reused and record.build_id:
                reused = f" · {_reused_build(record)}"
            lines.append(f"{mark} *{stage}* — {words} {duration(result.duration)}{reused}")
        elif record.state.finished:
            lines.append(f"- *{stage}* — skipped")
        else:
            lines.append(f"○ *{stage}* — pending")
    return "\n".join(lines)


def _failure(record: DeployRecord) -> StageResult | None:
    return next(
        (r for r in record.stages if r.outcome != Outcome.SUCCEEDED and r.stage != Stage.ROLLBACK),
        None,
    )


def _headline(record: DeployRecord, dry_run: bool = False) -> str:
    env = f"*{escape(record.environment)}*"
    commit = code(record.commit[:12]) if record.commit else "its commit"
    ref = code(record.ref) if record.ref else "the default branch"
    if record.promoted_from:
        source = f"*{escape(record.promoted_from)}*"
        ref = f"{source}'s {commit}" if record.commit else f"what {source} serves"
    if dry_run and record.kind != "rollback" and record.state.finished:
        # Only preflight ran: a SUCCEEDED dry run deployed nothing, whatever its state says.
        how = "passed preflight" if record.state == State.SUCCEEDED else _why(record)
        return f"Deploy of {ref} to {env} {how}; dry run: nothing was changed"
    if record.kind == "rollback":
        target = f" to {code(record.target_revision)}" if record.target_revision else ""
        if not record.state.finished:
            return f"Rolling back {env}{target}" + ("…" if record.state == State.RUNNING else "")
        if record.state == State.SUCCEEDED:
            runs = f", which runs {commit}" if record.commit else ""
            left = (
                f"; traffic left {code(record.previous_revision)}"
                if record.previous_revision
                else ""
            )
            return f"{env} rolled back{target}{runs}{left}"
        return f"Rollback of {env} {_why(record)}"
    if record.state == State.PENDING:
        return f"Deploy of {ref} to {env} is starting"
    if record.state == State.QUEUED:
        return f"Deploy of {ref} to {env} is queued: it starts when {env} is free"
    if record.state == State.RUNNING:
        return f"Deploying {ref} to {env}…"
    if record.state == State.AWAITING_APPROVAL:
        candidate = code(record.candidate_revision or "the candidate")
        return f"Deploy of {ref} to {env} awaits approval: {candidate} passed health at 0%"
    if record.state == State.SUCCEEDED:
        candidate = record.candidate_revision or "the new revision"
        serving = _serving(record)
        if serving is None or serving == [(candidate, 100)]:
            return f"{env} now runs {commit} on {code(candidate)}"
        return f"{env} was deployed to {code(candidate)}; traffic now {_describe(serving)}"
    return f"Deploy of {ref} to {env} {_why(record)}; {_traffic(record)}"


def _why(record: DeployRecord) -> str:
    failed = _failure(record)
    if record.state == State.ABANDONED:
        return f"was {said(record.error)}" if record.error else "was abandoned"
    if record.state == State.CANCELLED and failed is None:
        return f"was cancelled: {said(record.error or 'before it started')}"
    if record.state == State.CANCELLED:
        by = f" by {person(record.cancelled_by)}" if record.cancelled_by else ""
        during = f" during {failed.stage}" if failed else ""
        return f"was cancelled{by}{during}"
    if failed is None:
        return f"failed: {said(record.error or 'no stage ran')}"
    return f"{_FAILED_AT[failed.outcome]} {failed.stage}: {said(failed.summary)}"


def _serving(record: DeployRecord) -> list[tuple[str, int]] | None:
    """What the service served when the deploy ended, as read back (None: not read)."""
    if record.final_traffic is None:
        return None
    return [(share.revision, share.percent) for share in record.final_traffic if share.percent]


def _describe(serving: list[tuple[str, int]]) -> str:
    return ", ".join(f"{code(revision)} {percent}%" for revision, percent in serving) or "nothing"


def _traffic(record: DeployRecord) -> str:
    """Where traffic is, as read back from the service when the deploy ended."""
    serving = _serving(record)
    status = f"check `/deploy status {escape(record.environment)}` now"
    if record.state == State.QUEUED or (record.baseline_traffic is None and not record.stages):
        return "nothing was changed"
    if serving is None:
        return f"traffic could not be read back: {status}"
    now = _describe(serving)
    rolled = record.stage(Stage.ROLLBACK)
    if rolled is not None and rolled.outcome != Outcome.SUCCEEDED:
        return f"putting traffic back failed ({said(rolled.summary)}); it serves {now}: {status}"
    if rolled is not None:
        return f"rolled back: traffic on {now}"
    if record.baseline_traffic == []:
        if not serving:
            return "no revision was serving before, and none serves now"
        return f"no earlier revision was serving; traffic on {now}"
    return f"traffic stayed on {now}"


def _details(record: DeployRecord) -> str:
    service = record.cloud_run_service or record.service
    parts = [f"Environment *{escape(record.environment)}*", f"service {code(service)}"]
    if record.kind == "rollback":
        if record.previous_revision:
            parts.append(f"from {code(record.previous_revision)}")
    elif record.promoted_from:
        parts.append(f"promoted from *{escape(record.promoted_from)}*")
        if record.promoted_revision:
            parts.append(f"where {code(record.promoted_revision)} served it")
    else:
        parts.append(f"ref {code(record.ref)}" if record.ref else "default branch")
    if record.commit:
        parts.append(f"commit {code(record.commit[:12])}")
    second = [f"Requested by {person(record.requester)}"]
    if record.build_reused and record.build_id:
        second.append(_reused_build(record))
    elif record.build_log_url:
        second.append(link(record.build_log_url, "build log"))
    if record.kind != "rollback" and record.candidate_revision:
        second.append(f"revision {code(record.candidate_revision)}")
    if record.kind != "rollback" and record.image:
        second.append(f"image {image_ref(record.image)}")
    if record.cancel_requested and not record.state.finished:
        by = f" by {person(record.cancelled_by)}" if record.cancelled_by else ""
        second.append(f"*cancel requested*{by}")
    return " · ".join(parts) + "\n" + " · ".join(second)


def _reused_build(record: DeployRecord) -> str:
    """ "reused build <1234abcd> of deploy `d-…`": the build whose image this deploy runs,
    linked to its log, instead of a build of its own."""
    build_id = record.build_id or ""
    name = link(record.build_log_url, build_id[:8]) if record.build_log_url else code(build_id[:8])
    of = f" of {code(record.reused_from)}" if record.reused_from else ""
    return f"reused build {name}{of}"


def _buttons(record: DeployRecord, dry_run: bool = False) -> list[dict[str, Any]]:
    if record.kind == "rollback" or (dry_run and record.state.finished):
        return []  # a dry run has nothing to roll back, and a retry would deploy for real
    env = escape(record.environment)
    if record.state == State.AWAITING_APPROVAL:
        return approval_buttons(record)
    if record.state == State.QUEUED:
        ask = ("Stop waiting?", f"Take this deploy out of *{env}*'s queue?", "Stop waiting", "Wait")
        return [button("Cancel", CANCEL, record.id, "danger", ask)]
    if not record.state.finished:
        if record.cancel_requested:
            return []
        ask = (
            "Cancel this deploy?",
            f"Stop deploying to *{env}*? Traffic stays where it is.",
            "Cancel it",
            "Keep going",
        )
        return [button("Cancel", CANCEL, record.id, "danger", ask)]
    if record.state == State.SUCCEEDED:
        back = f" to {code(record.previous_revision)}" if record.previous_revision else ""
        ask = ("Roll back?", f"Move *{env}* traffic back{back}?", "Roll back", "No")
        return [*promote_buttons(record), button("Roll back", ROLLBACK, record.id, "danger", ask)]
    return [button("Retry", RETRY, record.id, "primary")]


def deploy_parent(
    record: DeployRecord,
    now: float,
    *,
    running: Stage | None = None,
    since: float | None = None,
    activity: str = "",
    dry_run: bool = False,
) -> SlackMessage:
    """The thread's parent: headline, details, stage checklist and the button that fits.

    `running`/`since` name the stage in progress and its wall-clock start (guessed from
    the record when omitted); `activity` is its latest progress line; `dry_run`: the
    record is a finished dry run's (only preflight ran, whatever its state says).
    """
    headline = _headline(record, dry_run)
    blocks = [
        section(headline),
        section(_details(record)),
        section(_checklist(record, now, running, since, activity)),
    ]
    if record.changes is not None and record.kind != "rollback":
        blocks.insert(2, section(changes_text(record.changes)))
    if approved := approval_line(record):
        blocks.insert(2, section(approved))
    if record.break_glass is not None:
        blocks.insert(1, section(break_glass_line(record)))
    if buttons := _buttons(record, dry_run):
        blocks.append({"type": "actions", "block_id": "deploy_actions", "elements": buttons})
    blocks.append(context(f"{escape(record.kind)} {code(record.id)}"))
    return SlackMessage(plain(headline), blocks)


def break_glass_line(record: DeployRecord) -> str:
    """The loud line of a deploy that overrode its deploy window: who, why, which rule."""
    glass = record.break_glass
    if glass is None:
        return ""
    broke = f"overrides {escape(glass.window)}" if glass.window else "the window was open"
    return (
        f"🚨 *Break-glass* by {person(glass.by)}: “{escape(glass.reason)}” "
        f"({escape(record.environment)} deploy window {broke})"
    )


def break_glass_reply(record: DeployRecord) -> SlackMessage:
    """The thread's first reply of a break-glass deploy, so the override is in its story."""
    return says(break_glass_line(record))


_VERB = {
    Outcome.FAILED: "failed",
    Outcome.TIMED_OUT: "timed out",
    Outcome.CANCELLED: "was cancelled",
}


def stage_reply(record: DeployRecord, result: StageResult) -> SlackMessage | None:
    """The thread reply a finished stage deserves, if any: failures in full, a few successes."""
    summary = said(result.summary)
    if result.outcome == Outcome.SUCCEEDED:
        if result.stage == Stage.HEALTH:
            return says(f"Health check passed: {summary}")
        if result.stage == Stage.ROLLBACK:
            return says(f"Rolled back: {summary}")
        return None
    took = duration(result.duration)
    if result.stage == Stage.ROLLBACK:
        env = escape(record.environment)
        text = (
            f"*Rollback failed* after {took}: {summary}\n"
            f"Traffic may be split: check `/deploy status {env}`."
        )
    else:
        text = f"*{result.stage} {_VERB[result.outcome]}* after {took}: {summary}"
        if result.stage == Stage.WATCH:
            # The deploy looked done: whoever asked for it hears that it is being undone.
            text = f"{person(record.requester)} {text}"
    if result.detail.strip():
        text += "\n" + detail_block(result.detail)
    if result.link:
        text += "\n" + link(result.link, "build log" if result.stage == Stage.BUILD else "link")
    return says(text)


_STEPS = re.compile(r"\((\d+)/(\d+)\)$")
_ANALYSIS_NEWS = ("analysis at ", "watch: ", "watching ", "real traffic gave ", "stable ")


def progress_reply(
    record: DeployRecord, stage: Stage, message: str, link: str
) -> SlackMessage | None:
    """A reply for progress worth keeping: preflight warnings, traffic steps, a build cancel,
    the candidate's tag removed after a rejection."""
    if stage == Stage.PREFLIGHT:
        return says(f"Warning: {escape(message)}")
    if stage == Stage.PROMOTE and message.startswith("traffic "):
        steps = _STEPS.search(message)
        if steps is None or int(steps.group(2)) > 1:
            return says(f"Traffic: {escape(message.removeprefix('traffic '))}")
        return None
    if stage in (Stage.PROMOTE, Stage.WATCH) and message.startswith(_ANALYSIS_NEWS):
        # What analysis measured, as it measured it: the early signal of synthetic
        # requests, Monitoring's figures, the verdict, the watch's end.
        return says(escape(message[:1].upper() + message[1:]))
    if stage == Stage.APPROVAL:
        return says(escape(message[:1].upper() + message[1:]))  # the candidate's tag, read back
    if stage == Stage.BUILD and message == "cancelling the build":
        return says("Cancelling the build.")
    return None


def note_reply(text: str) -> SlackMessage:
    """Something that happened between stages (a lost worker resumed, an abandonment)."""
    return says(said(text[:1].upper() + text[1:]))


def plan_reply(plan: tuple[str, ...]) -> SlackMessage:
    """A dry run's plan, one line a step."""
    return says("*Plan* (dry run):\n" + "\n".join(f"• {escape(p)}" for p in plan))
