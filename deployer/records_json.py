"""Deploy records, locks and environment statuses as plain JSON for scripts and audits.

The shapes are a contract (the README's "Records for scripts" documents every
field): fields are only ever added, never renamed or removed. Times are epoch
seconds (floats); a value that is not known or does not apply is null, never "".
Records hold no secret value, and nothing here adds one: no env values, no
message bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from deployer.engine import EnvironmentStatus, RevisionStatus
from deployer.front.thread_box import ThreadBox
from deployer.pipeline.changes import Changes
from deployer.pipeline.lease import DEPLOY
from deployer.pipeline.measurements import Figures
from deployer.pipeline.ports import HealthOutcome
from deployer.pipeline.record import (
    BreakGlass,
    DeployRecord,
    Lock,
    Note,
    Share,
    StageResult,
)

Json = dict[str, Any]

SOURCES = ("slack", "github", "cli")


def _text(value: str | None) -> str | None:
    return value or None


def source(record: DeployRecord) -> Json:
    """Where the request came from: the requester's prefix, and the ref it asked for."""
    prefix = record.requester.split(":", 1)[0]
    return {"kind": prefix if prefix in SOURCES else "other", "ref": record.ref}


def traffic(shares: list[Share] | None) -> list[Json] | None:
    if shares is None:
        return None
    return [
        {"revision": share.revision, "percent": share.percent, "tag": _text(share.tag)}
        for share in shares
    ]


def stage(result: StageResult) -> Json:
    return {
        "stage": str(result.stage),
        "outcome": str(result.outcome),
        "summary": result.summary,
        "detail": _text(result.detail),
        "started_at": result.started_at,
        "duration": result.duration,
        "link": _text(result.link),
    }


def note(item: Note) -> Json:
    return {"at": item.at, "text": item.text}


def lock(held: Lock, now: float) -> Json:
    """An environment lock: a person's (`manual`) or a deploy's (`deploy`, leased)."""
    return {
        "environment": held.environment,
        "kind": held.kind,
        "holder": held.holder,
        "reason": _text(held.reason),
        "created_at": held.created_at,
        "owner": _text(held.owner),
        "lease_until": held.lease_until or None,
        "expired": held.expired(now),
    }


def deploy_lock(record: DeployRecord, locks: Iterable[Lock], now: float) -> Json | None:
    """The environment's deploy lock when `record` holds it: its run (owner) and lease."""
    for held in locks:
        if held.kind == DEPLOY and held.holder == record.id:
            return {
                "owner": _text(held.owner),
                "lease_until": held.lease_until or None,
                "expired": held.expired(now),
            }
    return None


def record(
    found: DeployRecord,
    now: float,
    thread: ThreadBox | None = None,
    locks: Iterable[Lock] = (),
    cancel_asked_by: str | None = None,
) -> Json:
    """The whole record; `thread` (its outbox box) fills in the Slack ts and the link.

    `locks` are the environment's (the record's own deploy lock is picked out of them);
    `cancel_asked_by` is who asked the store to stop a deploy whose run has not seen it yet.
    """
    asked = found.cancel_requested or cancel_asked_by is not None
    return {
        "id": found.id,
        "kind": found.kind,
        "environment": found.environment,
        "service": found.service,
        "state": str(found.state),
        "requester": found.requester,
        "source": source(found),
        "commit": found.commit,
        "build_id": found.build_id,
        "build_log_url": found.build_log_url,
        "image": found.image,
        "rebuild": found.rebuild,
        "build_reused": found.build_reused,
        "reused_from": found.reused_from,
        "candidate_revision": found.candidate_revision,
        "target_revision": found.target_revision,
        "previous_revision": found.previous_revision,
        "baseline_traffic": traffic(found.baseline_traffic),
        "final_traffic": traffic(found.final_traffic),
        "stages": [stage(result) for result in found.stages],
        "error": _text(found.error),
        "attempt": found.attempt,
        "running_stage": str(found.running_stage) if found.running_stage else None,
        "cancel_requested": asked,
        "cancelled_by": found.cancelled_by or cancel_asked_by,
        "abandoned_by": found.abandoned_by,
        "queued_at": found.queued_at,
        "notes": [note(item) for item in found.notes],
        "slack_channel": found.slack_channel or (thread.channel if thread else None),
        "slack_ts": found.slack_ts or (thread.ts if thread else None),
        "thread_url": _text(thread.permalink) if thread else None,
        "created_at": found.created_at,
        "updated_at": found.updated_at,
        "lock": deploy_lock(found, locks, now),
        "break_glass": break_glass(found.break_glass),
        "changes": changes(found.changes),
        "cloud_run_service": found.cloud_run_service,
        "promoted_from": found.promoted_from,
        "promoted_revision": found.promoted_revision,
        "approval": approval(found),
        "analysis": analysis(found),
    }


def approval(found: DeployRecord) -> Json | None:
    """How many approvals traffic waited for, the votes read back and until when it
    waits; null for a deploy that needs none."""
    if not found.approval_required:
        return None
    return {
        "required": found.approval_required,
        "due_at": found.approval_due_at,
        "votes": [
            {"who": vote.who, "verdict": vote.verdict, "at": vote.at, "reason": _text(vote.reason)}
            for vote in found.votes
        ],
    }


def _figures(found: Figures | None) -> Json | None:
    if found is None:
        return None
    return {
        "requests": found.requests,
        "errors": found.errors,
        "error_rate": found.error_rate,
        "p95_ms": found.p95_ms,
    }


def analysis(found: DeployRecord) -> Json | None:
    """Each window analysis judged, the stable revision's figures from before the rollout,
    and the watch's end; null for a deploy without analysis."""
    if not found.analysis and found.stable_before is None:
        return None
    return {
        "stable_before": _figures(found.stable_before),
        "watch_until": found.watch_until,
        "windows": [
            {
                "phase": window.phase,
                "percent": window.percent,
                "start": window.start,
                "end": window.end,
                "candidate": _figures(window.candidate),
                "stable": _figures(window.stable),
                "stable_source": _text(window.stable_source),
                "synthetic": _figures(window.synthetic),
                "passed": window.passed,
                "reasons": list(window.reasons),
            }
            for window in found.analysis
        ],
    }


def changes(found: Changes | None) -> Json | None:
    """What the candidate changed against what served, read before traffic moved: names
    and versions only, never a value; null until the candidate passed health."""
    if found is None:
        return None
    return {
        "serving_revision": _text(found.serving_revision),
        "serving_commit": _text(found.serving_commit),
        "commit": found.commit,
        "commits": found.commits,
        "commits_complete": found.commits_complete,
        "commits_behind": found.commits_behind,
        "subjects": list(found.subjects),
        "commits_unknown": _text(found.commits_unknown),
        "compare_url": _text(found.compare_url),
        "image": {"from": found.image_from, "to": found.image_to} if found.image_to else None,
        "env": {
            "added": found.env_added,
            "removed": found.env_removed,
            "changed": found.env_changed,
        },
        "secret_env": {
            "added": found.secret_env_added,
            "removed": found.secret_env_removed,
            "changed": found.secret_env_changed,
        },
        "secret_versions": {
            secret: {"from": was, "to": now} for secret, (was, now) in found.secret_versions.items()
        },
        "settings": {name: {"from": was, "to": now} for name, (was, now) in found.settings.items()},
    }


def break_glass(glass: BreakGlass | None) -> Json | None:
    """A deploy window overridden: who, why, when, and the rule it broke (null while open)."""
    if glass is None:
        return None
    return {"by": glass.by, "reason": glass.reason, "at": glass.at, "window": _text(glass.window)}


def summary(found: DeployRecord) -> Json:
    """The few fields of a record that `status` names as an environment's last one."""
    return {
        "id": found.id,
        "kind": found.kind,
        "state": str(found.state),
        "requester": found.requester,
        "created_at": found.created_at,
    }


def revision(row: RevisionStatus) -> Json:
    return {
        "revision": row.name,
        "percent": row.percent,
        "tag": _text(row.tag),
        "commit": _text(row.commit),
        "image": _text(row.image),
        "deploy_id": _text(row.deploy_id),
        "deployed_by": _text(row.deployed_by),
        "deployed_at": row.deployed_at,
        "promoted_from": row.promoted_from or None,
    }


def health(outcome: HealthOutcome | None) -> Json | None:
    if outcome is None:
        return None
    return {"ok": outcome.ok, "status": outcome.status, "message": _text(outcome.message)}


def environment_status(status: EnvironmentStatus, now: float) -> Json:
    """What runs where in one environment, as `deployer status` found it."""
    return {
        "environment": status.environment,
        "service": status.service,
        "location": status.location,
        "uri": _text(status.uri),
        "serving": [revision(row) for row in status.serving],
        "tagged": [revision(row) for row in status.tagged],
        "health": health(status.health),
        "locks": [lock(held, now) for held in status.locks],
        "last": summary(status.last) if status.last is not None else None,
        "problem": _text(status.problem),
    }
